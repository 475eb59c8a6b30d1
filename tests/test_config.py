"""Configuration: the seed's format, where it comes from, and how it fails (src/repo/config.py)."""

from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

import repo
from conftest import CliRun, write_config
from repo.cli.output import table
from repo.config import Config, embedded_default, load_config, repo_home
from repo.errors import ConfigError
from repo.settings import BY_KEY, SETTINGS, markdown_rows

#: The seed's ~/.repo_cfg, exactly as written there (spacing included).
SEED_CFG = """\
{
    "local_root" : "/mnt/repo",
    "default_s3_bucket" : "s3repo-test-bucket",
    "backup_s3_bucket"  : "s3repo-test-bucket",
    "s3_access_key" : "some-key",
    "s3_secret_key" : "some-secret",
    "database" : {
        "host"     : "localhost",
        "port"     : 5432,
        "user"     : "repo",
        "password" : "411B107B-A7ED-48AE-AE19-5BD427865041",
        "database" : "repo"
    }
}
"""
SEED_PASSWORD = "411B107B-A7ED-48AE-AE19-5BD427865041"
#: A value that must never show up in an error message or a repr.
SECRET = "Sup3rSecret-7f1c9e"


def _write(path: Path, data: dict[str, Any] | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def _minimal(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "store": (tmp_path / "store").as_uri(),
        "database": f"sqlite:///{tmp_path}/catalog.db",
    }
    config.update(extra)
    return config


def _error_text(exc: ConfigError) -> str:
    return f"{exc}\n{exc.hint or ''}"


def _assert_seed(config: Config, source: Path) -> None:
    assert config.source == str(source)
    assert config.local_root == Path("/mnt/repo")
    assert config.store_url == "s3://s3repo-test-bucket"
    assert config.backup_store_url == "s3://s3repo-test-bucket"
    assert config.s3_access_key == "some-key"
    assert config.s3_secret_key == "some-secret"
    url = make_url(config.database_url)
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.port, url.username, url.database) == ("localhost", 5432, "repo", "repo")
    assert url.password == SEED_PASSWORD
    assert not config.is_embedded


# ------------------------------------------------------------ seed format


def test_seed_config_loads_from_an_explicit_path(tmp_path: Path) -> None:
    path = _write(tmp_path / "cfg.json", SEED_CFG)
    _assert_seed(load_config(path), path)
    _assert_seed(load_config(str(path)), path)


def test_seed_config_loads_from_repo_cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "elsewhere" / "cfg.json", SEED_CFG)
    monkeypatch.setenv("REPO_CFG", str(path))
    _assert_seed(load_config(), path)


def test_seed_config_loads_from_home_repo_cfg() -> None:
    path = _write(Path.home() / ".repo_cfg", SEED_CFG)
    _assert_seed(load_config(), path)


def test_seed_config_as_a_dict_loads() -> None:
    config = load_config(json.loads(SEED_CFG))
    assert config.source == "<config dict>"
    assert config.store_url == "s3://s3repo-test-bucket"


# -------------------------------------------------------------- precedence


def _tagged(tmp_path: Path, name: str) -> dict[str, Any]:
    return _minimal(tmp_path, host_name=name)


def test_explicit_path_wins_over_repo_cfg_and_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    explicit = _write(tmp_path / "explicit.json", _tagged(tmp_path, "explicit"))
    env = _write(tmp_path / "env.json", _tagged(tmp_path, "env"))
    _write(Path.home() / ".repo_cfg", _tagged(tmp_path, "home"))
    monkeypatch.setenv("REPO_CFG", str(env))
    assert load_config(explicit).host_name == "explicit"


def test_explicit_dict_wins_over_repo_cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPO_CFG", str(_write(tmp_path / "env.json", _tagged(tmp_path, "env"))))
    assert load_config(_tagged(tmp_path, "dict")).host_name == "dict"


def test_repo_cfg_wins_over_home_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = _write(tmp_path / "env.json", _tagged(tmp_path, "env"))
    _write(Path.home() / ".repo_cfg", _tagged(tmp_path, "home"))
    monkeypatch.setenv("REPO_CFG", str(env))
    assert load_config().host_name == "env"


def test_home_config_wins_over_embedded_default(tmp_path: Path) -> None:
    _write(Path.home() / ".repo_cfg", _tagged(tmp_path, "home"))
    config = load_config()
    assert config.host_name == "home"
    assert not config.is_embedded


def test_no_config_anywhere_gives_the_embedded_default() -> None:
    assert load_config().is_embedded


def test_repo_cfg_naming_a_missing_file_is_an_error_not_a_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(Path.home() / ".repo_cfg", _tagged(tmp_path, "home"))
    monkeypatch.setenv("REPO_CFG", str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match=r"missing\.json"):
        load_config()


def test_missing_explicit_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found") as info:
        load_config(tmp_path / "nope.json")
    assert str(tmp_path / "nope.json") in str(info.value)


def test_directory_as_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)


# ---------------------------------------------------------------- embedded


def test_embedded_default_lives_under_repo_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "repo-home"
    monkeypatch.setenv("REPO_HOME", str(home))
    config = load_config()
    assert config.is_embedded
    assert repo_home() == home
    assert config.local_root == home / "local"
    assert config.store_url == (home / "store").as_uri()
    url = make_url(config.database_url)
    assert url.get_backend_name() == "sqlite"
    assert url.database == str(home / "catalog.db")


def test_embedded_default_without_repo_home_uses_the_user_data_dir(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("REPO_HOME")
    expected = Path.home() / ".local" / "share" / "repo"
    assert repo_home() == expected
    assert embedded_default().store_url == (expected / "store").as_uri()


def test_host_name_defaults_to_the_machines_hostname(tmp_path: Path) -> None:
    assert embedded_default().host_name == socket.gethostname()
    assert load_config(_minimal(tmp_path)).host_name == socket.gethostname()


def test_config_host_name_overrides_the_hostname(tmp_path: Path) -> None:
    assert load_config(_minimal(tmp_path, host_name="batch-07")).host_name == "batch-07"


@pytest.mark.parametrize("name", ["", "   ", "a\nb", "a\x7fb", "a\x85b"], ids=repr)
def test_empty_or_unprintable_host_name_is_rejected(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="'host_name'"):
        load_config(_minimal(tmp_path, host_name=name))


def test_local_root_defaults_to_a_folder_of_its_store_under_repo_home(tmp_path: Path) -> None:
    one = load_config(_minimal(tmp_path, store="s3://bucket/team-a"))
    other = load_config(_minimal(tmp_path, store="s3://bucket/team-b"))
    assert one.local_root.parent == other.local_root.parent == repo_home() / "local"
    assert one.local_root.name.startswith("s3-bucket-team-a-")
    assert one.local_root != other.local_root  # two repositories never share a cache
    assert load_config(_minimal(tmp_path, store="s3://bucket/team-a")).local_root == one.local_root
    assert embedded_default().local_root == repo_home() / "local"  # as before


def test_relative_local_root_resolves_against_the_config_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "conf" / "cfg.json", _minimal(tmp_path, local_root="cache"))
    assert load_config(path).local_root == tmp_path / "conf" / "cache"


# ---------------------------------------------------------------- database


def test_database_object_becomes_a_psycopg_url(tmp_path: Path) -> None:
    db = {"host": "db.example", "port": 6543, "user": "u", "password": "pw", "database": "cat"}
    url = make_url(load_config(_minimal(tmp_path, database=db)).database_url)
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.port, url.username, url.password, url.database) == (
        "db.example",
        6543,
        "u",
        "pw",
        "cat",
    )


def test_database_object_password_with_url_characters_round_trips(tmp_path: Path) -> None:
    password = "p@ss:w/rd%?#&="
    db = {"user": "u", "password": password, "database": "cat"}
    url = make_url(load_config(_minimal(tmp_path, database=db)).database_url)
    assert url.password == password
    assert url.host == "localhost"
    assert url.database == "cat"


def test_database_object_without_a_database_name_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'database\.database'"):
        load_config(_minimal(tmp_path, database={"host": "h", "user": "u"}))


def test_postgresql_url_string_uses_psycopg(tmp_path: Path) -> None:
    config = load_config(_minimal(tmp_path, database="postgresql://u:pw@db.example:5433/cat"))
    url = make_url(config.database_url)
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.port, url.username, url.password, url.database) == (
        "db.example",
        5433,
        "u",
        "pw",
        "cat",
    )


def test_absolute_sqlite_url_is_kept(tmp_path: Path) -> None:
    config = load_config(_minimal(tmp_path, database=f"sqlite:///{tmp_path}/c.db"))
    assert make_url(config.database_url).database == str(tmp_path / "c.db")


def test_relative_sqlite_url_resolves_against_the_config_files_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path / "conf" / "cfg.json", _minimal(tmp_path, database="sqlite:///cat.db"))
    url = make_url(load_config(path).database_url)
    assert url.drivername == "sqlite"
    assert url.database == str(tmp_path / "conf" / "cat.db")


@pytest.mark.parametrize(
    "database",
    ["sqlite://", "sqlite:///:memory:", "mysql://u@h/db", "not a url", "postgresql://u@h:54x/db"],
)
def test_unusable_database_url_is_a_config_error(tmp_path: Path, database: str) -> None:
    with pytest.raises(ConfigError, match="'database'"):
        load_config(_minimal(tmp_path, database=database))


def test_missing_database_is_a_config_error(tmp_path: Path) -> None:
    config = _minimal(tmp_path)
    del config["database"]
    with pytest.raises(ConfigError, match="'database' is missing"):
        load_config(config)


def test_masked_database_url_hides_the_password(tmp_path: Path) -> None:
    db = {"user": "u", "password": SECRET, "database": "cat"}
    config = load_config(_minimal(tmp_path, database=db))
    masked = config.masked_database_url()
    assert SECRET not in masked
    assert "***" in masked
    assert make_url(masked).username == "u"


# ------------------------------------------------------------------- store


def test_s3_store_url_keeps_bucket_and_prefix(tmp_path: Path) -> None:
    config = load_config(_minimal(tmp_path, store="s3://bucket/some/prefix/"))
    assert config.store_url == "s3://bucket/some/prefix"


def test_file_store_url_names_an_absolute_directory(tmp_path: Path) -> None:
    config = load_config(_minimal(tmp_path, store=f"file://{tmp_path}/store/"))
    assert config.store_url == (tmp_path / "store").as_uri()


def test_default_s3_bucket_becomes_an_s3_store(tmp_path: Path) -> None:
    config = _minimal(tmp_path, default_s3_bucket="my-bucket")
    del config["store"]
    assert load_config(config).store_url == "s3://my-bucket"


def test_store_and_default_s3_bucket_together_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'store' and 'default_s3_bucket'"):
        load_config(_minimal(tmp_path, store="s3://a/p", default_s3_bucket="b"))


@pytest.mark.parametrize(
    "store", ["s3://", "file://relative/dir", "http://example.com/x", "/abs/path", "bucket"]
)
def test_malformed_store_url_is_rejected(tmp_path: Path, store: str) -> None:
    with pytest.raises(ConfigError, match="'store'"):
        load_config(_minimal(tmp_path, store=store))


def test_no_store_at_all_is_an_error(tmp_path: Path) -> None:
    config = _minimal(tmp_path)
    del config["store"]
    with pytest.raises(ConfigError, match="no store") as info:
        load_config(config)
    assert info.value.hint is not None
    assert "store" in info.value.hint


def test_s3_endpoint_and_region_are_read(tmp_path: Path) -> None:
    config = load_config(
        _minimal(tmp_path, s3_endpoint_url="http://127.0.0.1:9000", s3_region="eu-west-1")
    )
    assert (config.s3_endpoint_url, config.s3_region) == ("http://127.0.0.1:9000", "eu-west-1")


def test_s3_endpoint_that_is_not_http_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'s3_endpoint_url'"):
        load_config(_minimal(tmp_path, s3_endpoint_url="127.0.0.1:9000"))


# ------------------------------------------------------- malformed configs


def test_unknown_top_level_key_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "cfg.json", _minimal(tmp_path, defualt_s3_bucket="typo"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "'defualt_s3_bucket'" in str(info.value)
    assert str(path) in str(info.value)
    assert info.value.hint is not None
    assert "default_s3_bucket" in info.value.hint


def test_unknown_database_key_names_the_key(tmp_path: Path) -> None:
    db = {"host": "h", "database": "d", "passwrd": SECRET}
    with pytest.raises(ConfigError, match="'passwrd'") as info:
        load_config(_minimal(tmp_path, database=db))
    assert SECRET not in _error_text(info.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("local_root", 5),
        ("default_s3_bucket", ["b"]),
        ("s3_region", None),
        ("host_name", 7),
        ("database", 5432),
        ("store", {"url": "s3://b"}),
        ("cache_max_bytes", "1GB"),
        ("cache_max_bytes", 1.5),
    ],
)
def test_wrong_type_names_the_key(tmp_path: Path, key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=f"'{key}' must be") as info:
        load_config(_minimal(tmp_path, **{key: value}))
    assert len(str(info.value).splitlines()) == 1


@pytest.mark.parametrize("zone", ["Mars/Olympus", "CEST+2", "../etc/passwd", "", "/etc/localtime"])
def test_a_retention_timezone_must_be_an_iana_name(tmp_path: Path, zone: str) -> None:
    with pytest.raises(ConfigError, match="'retention_timezone' must be an IANA time zone such as"):
        load_config(_minimal(tmp_path, retention_timezone=zone))
    assert load_config(_minimal(tmp_path, retention_timezone="Asia/Kolkata")).retention_timezone


def test_wrong_type_in_database_object_names_the_dotted_key(tmp_path: Path) -> None:
    db = {"host": "h", "port": "5432", "database": "d"}
    with pytest.raises(ConfigError, match=r"'database\.port' must be an integer"):
        load_config(_minimal(tmp_path, database=db))


def test_bool_port_is_rejected(tmp_path: Path) -> None:
    db = {"host": "h", "port": True, "database": "d"}
    with pytest.raises(ConfigError, match=r"'database\.port'"):
        load_config(_minimal(tmp_path, database=db))


@pytest.mark.parametrize("value", [True, False, 0, -1])
def test_cache_max_bytes_must_be_a_positive_int(tmp_path: Path, value: Any) -> None:
    with pytest.raises(ConfigError, match="'cache_max_bytes'"):
        load_config(_minimal(tmp_path, cache_max_bytes=value))


def test_positive_cache_max_bytes_is_kept(tmp_path: Path) -> None:
    assert load_config(_minimal(tmp_path, cache_max_bytes=10**12)).cache_max_bytes == 10**12


def test_malformed_json_names_the_file_and_line(tmp_path: Path) -> None:
    text = '{\n  "store": "file:///x",\n  "database": "sqlite:///c.db"\n  "host_name": "h"\n}\n'
    path = _write(tmp_path / "broken.json", text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "line 4" in str(info.value)


def test_json_that_is_not_an_object_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path / "list.json", "[1, 2]")
    with pytest.raises(ConfigError, match="must be a JSON object"):
        load_config(path)


def test_config_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"host_name": "caf\xe9"}')
    with pytest.raises(ConfigError, match=r"latin1\.json"):
        load_config(path)


# ----------------------------------------------------------------- secrets


def _secret_leaks(config: dict[str, Any] | str, tmp_path: Path) -> str:
    """Load `config` from a file, expect a ConfigError, return everything it says."""
    path = _write(tmp_path / "cfg.json", config)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return _error_text(info.value) + repr(info.value)


@pytest.mark.parametrize(
    "config",
    [
        # A secret of the wrong type.
        {"s3_secret_key": [SECRET]},
        {"database": {"host": "h", "database": "d", "password": [SECRET]}},
        {"database": {"host": "h", "database": "d", "password": {"v": SECRET}}},
        # A valid secret in a config broken elsewhere.
        {"s3_secret_key": SECRET, "bogus_key": 1},
        {"s3_secret_key": SECRET, "store": "ftp://x"},
        {"database": {"password": SECRET, "host": "h"}},
        {"database": {"password": SECRET, "database": "d", "port": "x"}},
        {"database": {"password": SECRET, "database": "d", "extra": 1}},
        # A password inside a database URL.
        {"database": f"postgresql://u:{SECRET}@h:bad/db"},
        {"database": f"postgresql://u@h:{SECRET}/db"},
        {"database": f"mysql://u:{SECRET}@h/db"},
        {"database": [f"postgresql://u:{SECRET}@h/db"]},
    ],
    ids=lambda c: next(iter(c)) + ":" + json.dumps(c)[:40],
)
def test_config_error_never_echoes_a_secret(tmp_path: Path, config: dict[str, Any]) -> None:
    full = _minimal(tmp_path)
    full.update(config)
    assert SECRET not in _secret_leaks(full, tmp_path)


def test_malformed_json_with_a_secret_does_not_echo_it(tmp_path: Path) -> None:
    text = '{"s3_secret_key": "' + SECRET + '" "store": 1}'
    assert SECRET not in _secret_leaks(text, tmp_path)


def test_repr_of_config_hides_both_secrets(tmp_path: Path) -> None:
    db = {"host": "h", "user": "u", "password": SECRET + "-db", "database": "d"}
    config = load_config(_minimal(tmp_path, database=db, s3_secret_key=SECRET + "-s3"))
    assert SECRET not in repr(config)
    assert SECRET not in str(config)
    assert "'u'" in repr(config) or "u:***@h" in repr(config)


def test_repr_of_config_from_a_database_url_hides_the_password(tmp_path: Path) -> None:
    config = load_config(_minimal(tmp_path, database=f"postgresql://u:{SECRET}@h/d"))
    assert SECRET not in repr(config)


def test_repr_of_seed_config_hides_its_secrets(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path / "cfg.json", SEED_CFG))
    assert SEED_PASSWORD not in repr(config)
    assert "some-secret" not in repr(config)


# -------------------------------------------------------------------- Repo


def test_repo_accepts_a_config_dict(tmp_path: Path) -> None:
    config = {
        "local_root": str(tmp_path / "local"),
        "store": (tmp_path / "store").as_uri(),
        "database": f"sqlite:///{tmp_path}/catalog.db",
        "host_name": "dict-host",
    }
    r = repo.Repo(config=config)
    try:
        assert r.config.host_name == "dict-host"
        assert r.config.source == "<config dict>"
        assert r.config.local_root == tmp_path / "local"
    finally:
        r.close()


def test_repo_with_an_invalid_config_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'nonsense'"):
        repo.Repo(config=_minimal(tmp_path, nonsense=1))


def test_postgres_short_scheme_is_accepted(tmp_path: Path) -> None:
    from repo.config import load_config

    cfg = load_config({"store": "file:///tmp/s", "database": "postgres://u:pw@db.example:5433/r"})
    assert cfg.database_url.startswith("postgresql+psycopg://u:")
    assert cfg.database_url.endswith("@db.example:5433/r")


def test_config_file_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    from repo.config import load_config

    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"store": "file:///tmp/s", "database": "sqlite:///c.db"}')
    assert load_config(path).store_url == "file:///tmp/s"


def test_home_config_that_is_a_directory_is_an_error_not_a_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from repo.config import load_config
    from repo.errors import ConfigError

    (Path.home() / ".repo_cfg").mkdir()
    with pytest.raises(ConfigError) as err:
        load_config()
    assert ".repo_cfg" in str(err.value)


def test_a_config_file_with_secrets_readable_by_others_draws_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = tmp_path / "cfg.json"
    cfg.write_text(
        '{"store": "s3://b", "database": "sqlite:///c.db", "s3_access_key": "AKIAEXAMPLE1",'
        ' "s3_secret_key": "not-to-be-shown-anywhere"}'
    )
    cfg.chmod(0o644)
    with caplog.at_level("WARNING", logger="repo.config"):
        repo.load_config(cfg)
    assert [r.getMessage() for r in caplog.records] == [
        f"{cfg} holds secrets but can be read by other users (mode 644); run: chmod 600 {cfg}"
    ]
    caplog.clear()
    cfg.chmod(0o600)
    with caplog.at_level("WARNING", logger="repo.config"):
        repo.load_config(cfg)
    assert caplog.records == []
    # No secret in it: nothing to warn about.
    plain = tmp_path / "plain.json"
    plain.write_text('{"store": "file:///tmp/x", "database": "sqlite:///c.db"}')
    plain.chmod(0o644)
    with caplog.at_level("WARNING", logger="repo.config"):
        repo.load_config(plain)
    assert caplog.records == []


# --------------------------------------------------------- the settings table


def _readme_configuration_rows() -> tuple[list[str], list[tuple[str, ...]]]:
    """The header and rows of the table in the README's "## Configuration" section."""
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    cells = [tuple(c.strip() for c in line.strip("|").split(" | ")) for line in lines]
    return list(cells[0]), cells[2:]


def test_readme_configuration_table_is_the_settings_table() -> None:
    header, rows = _readme_configuration_rows()
    assert header == ["key", "type", "default", "environment", "meaning"]
    expected = markdown_rows()
    assert [r[0] for r in rows] == [r[0] for r in expected], "README keys differ from SETTINGS"
    # Keyed by setting, so a failure names the row that drifted.
    assert {r[0]: r[1:] for r in rows} == {r[0]: r[1:] for r in expected}


def test_every_setting_has_one_line_of_readme_text_and_a_valid_default() -> None:
    for s in SETTINGS:
        for text in (s.description, s.default_text):
            assert "|" not in text, s.key
            assert "\n" not in text, s.key
        assert s.description, s.key
        if s.default is not None:
            assert s.check is None or s.check.ok(s.default), s.key
            assert not s.default_text, f"{s.key}: a fixed default needs no text"
        if s.env is not None:
            assert s.env.startswith("REPO_"), s.key
            assert not s.secret, s.key


def test_settings_and_config_attributes_agree() -> None:
    attributes = {f.name: f for f in dataclasses.fields(Config)}
    assert {s.attribute for s in SETTINGS} == set(attributes) - {"source", "origins"}
    for s in SETTINGS:
        if s.default is not None:
            assert attributes[s.attribute].default == s.default, s.key


def test_every_default_is_reported_as_a_default(tmp_path: Path) -> None:
    origins = load_config(_minimal(tmp_path)).origins
    for s in SETTINGS:
        if s.default is not None:
            assert origins[s.attribute] == "default", s.key
    assert origins["local_root"] == (
        "default: local/<store> under $REPO_HOME or the user data directory: one per repository"
    )
    assert origins["host_name"] == "default: this machine's host name"
    assert "cache_max_bytes" not in origins  # not set: no limit


# --------------------------------------------------- environment overrides


def test_environment_overrides_win_over_the_file_and_say_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REPO_HOST_NAME", "pod-3")
    monkeypatch.setenv("REPO_LOCAL_ROOT", "scratch")  # relative: to the working directory
    monkeypatch.setenv("REPO_CACHE_MAX_BYTES", "1000")
    path = _write(
        tmp_path / "conf" / "cfg.json",
        _minimal(tmp_path, host_name="file-host", local_root="cache", cache_max_bytes=5),
    )
    config = load_config(path)
    assert (config.host_name, config.local_root, config.cache_max_bytes) == (
        "pod-3",
        tmp_path / "scratch",
        1000,
    )
    assert {k: config.origins[k] for k in ("host_name", "local_root", "cache_max_bytes")} == {
        "host_name": "$REPO_HOST_NAME",
        "local_root": "$REPO_LOCAL_ROOT",
        "cache_max_bytes": "$REPO_CACHE_MAX_BYTES",
    }


def test_environment_overrides_apply_to_the_embedded_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REPO_HOST_NAME", "laptop")
    config = load_config()
    assert config.is_embedded
    assert config.host_name == "laptop"


def test_an_empty_environment_variable_counts_as_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPO_HOST_NAME", "")
    assert load_config(_minimal(tmp_path, host_name="file-host")).host_name == "file-host"


@pytest.mark.parametrize(
    ("var", "text", "message"),
    [
        ("REPO_CACHE_MAX_BYTES", "1GB", "$REPO_CACHE_MAX_BYTES must be an integer, got '1GB'"),
        ("REPO_CACHE_MAX_BYTES", "0", "$REPO_CACHE_MAX_BYTES must be a positive integer"),
        ("REPO_HOST_NAME", "a\tb", "$REPO_HOST_NAME must be a non-empty printable name"),
    ],
)
def test_a_bad_environment_override_is_a_one_line_error_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, var: str, text: str, message: str
) -> None:
    monkeypatch.setenv(var, text)
    with pytest.raises(ConfigError) as info:
        load_config(_minimal(tmp_path))
    assert str(info.value) == message
    assert info.value.hint == f"fix or unset ${var}"


# ------------------------------------------------------------ config --show


def test_config_show_lists_every_setting_with_secrets_masked(tmp_path: Path) -> None:
    every = {
        "default_s3_bucket": "my-bucket",
        "database": {"host": "db.example", "user": "u", "password": SECRET, "database": "repo"},
        "local_root": "cache",
        "host_name": "batch-07",
        "backup_s3_bucket": "my-backups",
        "s3_endpoint_url": "http://127.0.0.1:9000",
        "s3_region": "eu-west-1",
        "s3_access_key": "AKIAEXAMPLEKEY",
        "s3_secret_key": SECRET + "-s3",
        "cache_max_bytes": 10**9,
        "unpublished_ttl_seconds": 1,
        "expired_ttl_seconds": 2,
        "orphan_grace_seconds": 3,
        "backups_before_purge": 4,
        "backup_keep": 5,
        "s3_timeout_seconds": 6,
        "s3_sse": "aws:kms",
        "s3_sse_kms_key_id": "alias/repo",
        "backup_key": SECRET + "-backup-key-of-32-characters-at-least",
        "s3_upload_check": "server",
        "archive_class": "DEEP_ARCHIVE",
        "archive_early_deletion": "refuse",
        "ssh_key_file": "keys/id_ed25519",
        "ssh_known_hosts": "/etc/ssh/ssh_known_hosts",
        "retention_timezone": "Europe/Berlin",
        "store_name": "eu",
        "stores": {
            "us": "s3://other-bucket/x",
            "r2": {
                "url": "s3://r2-bucket",
                "s3_endpoint_url": "http://127.0.0.1:9001",
                "s3_access_key": "AKIAOTHERKEY",
                "s3_secret_key": SECRET + "-r2",
            },
        },
        "numcopies": 3,
        "mincopies": 2,
        "replicate_on_publish": "now",
        "placement": {"raw/": "us"},
    }
    # `store` is the other spelling of `default_s3_bucket`; a new setting must join `every`.
    assert set(every) | {"store"} == set(BY_KEY)
    cfg = write_config(tmp_path / "cfg.json", every)
    run = CliRun(cfg, tmp_path)
    at = f"{cfg}: "
    expected = [
        ("source", str(cfg), "how the configuration was found"),
        ("store_url", "s3://my-bucket", at + "default_s3_bucket"),
        ("database_url", "postgresql+psycopg://u:***@db.example/repo", at + "database"),
        ("local_root", str(tmp_path / "cache"), at + "local_root"),
        ("host_name", "batch-07", at + "host_name"),
        ("backup_store_url", "s3://my-backups", at + "backup_s3_bucket"),
        ("s3_endpoint_url", "http://127.0.0.1:9000", at + "s3_endpoint_url"),
        ("s3_region", "eu-west-1", at + "s3_region"),
        ("s3_access_key", "AKIA****", at + "s3_access_key"),
        ("s3_secret_key", "****", at + "s3_secret_key"),
        ("cache_max_bytes", 10**9, at + "cache_max_bytes"),
        ("unpublished_ttl_seconds", 1, at + "unpublished_ttl_seconds"),
        ("expired_ttl_seconds", 2, at + "expired_ttl_seconds"),
        ("orphan_grace_seconds", 3, at + "orphan_grace_seconds"),
        ("backups_before_purge", 4, at + "backups_before_purge"),
        ("backup_keep", 5, at + "backup_keep"),
        ("s3_timeout_seconds", 6, at + "s3_timeout_seconds"),
        ("s3_sse", "aws:kms", at + "s3_sse"),
        ("s3_sse_kms_key_id", "alias/repo", at + "s3_sse_kms_key_id"),
        ("backup_key", "****", at + "backup_key"),
        ("s3_upload_check", "server", at + "s3_upload_check"),
        ("archive_class", "DEEP_ARCHIVE", at + "archive_class"),
        ("archive_early_deletion", "refuse", at + "archive_early_deletion"),
        ("ssh_key_file", str(tmp_path / "keys" / "id_ed25519"), at + "ssh_key_file"),
        ("ssh_known_hosts", "/etc/ssh/ssh_known_hosts", at + "ssh_known_hosts"),
        ("retention_timezone", "Europe/Berlin", at + "retention_timezone"),
        ("store_name", "eu", at + "store_name"),
        ("stores", "us=s3://other-bucket/x, r2=s3://r2-bucket", at + "stores"),
        ("numcopies", 3, at + "numcopies"),
        ("mincopies", 2, at + "mincopies"),
        ("replicate_on_publish", "now", at + "replicate_on_publish"),
        ("placement", "raw/=us", at + "placement"),
    ]
    assert [e[0] for e in expected] == ["source", *dict.fromkeys(s.attribute for s in SETTINGS)]

    shown = run("config", "--show", "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == {
        "settings": {n: {"value": v, "origin": o} for n, v, o in expected}
    }
    text = run("config", "--show")
    assert text.exit_code == 0, text.output
    assert text.stdout == table(["SETTING", "VALUE", "FROM"], expected) + "\n"
    for result in (shown, text):
        assert SECRET not in result.output


@pytest.mark.parametrize(
    ("value", "kind"), [(5, "a number"), ([], "a list"), (True, "true or false"), (None, "null")]
)
def test_a_secret_of_the_wrong_type_names_the_type_but_never_the_value(
    tmp_path: Path, value: Any, kind: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_minimal(tmp_path, database=value))
    assert caught.value.message.endswith(
        f"key 'database' must be a string or an object, got {kind}"
    )
