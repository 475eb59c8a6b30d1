"""An s3cmd configuration that reaches the repo's S3 store, written privately."""

from __future__ import annotations

import configparser
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import repo
from repo.s3cmd import render_s3cmd_config, write_s3cmd_config

if TYPE_CHECKING:
    from collections.abc import Iterator

    from harness.s3servers import S3Server

ACCESS = "AKIDEXAMPLE0123"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzzSECRET"
S3CMD_TIMEOUT = 60


def make_config(tmp_path: Path, **overrides: Any) -> repo.Config:
    data: dict[str, Any] = {
        "store": "s3://bucket/prefix",
        "database": f"sqlite:///{tmp_path}/catalog.db",
        "local_root": str(tmp_path / "local"),
        "host_name": "test-host",
        "s3_access_key": ACCESS,
        "s3_secret_key": SECRET,
    }
    data.update(overrides)
    return repo.load_config({k: v for k, v in data.items() if v is not None})


def parse(text: str) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    assert parser.sections() == ["default"]
    return dict(parser["default"])


@pytest.fixture
def s3cmd() -> str:
    """The real s3cmd; missing is a failure unless REPO_TEST_ALLOW_MISSING_TOOLS=1."""
    found = shutil.which("s3cmd")
    if found is None:
        if os.environ.get("REPO_TEST_ALLOW_MISSING_TOOLS") == "1":
            pytest.skip("s3cmd is not installed (REPO_TEST_ALLOW_MISSING_TOOLS=1)")
        pytest.fail(
            "s3cmd is not on PATH: run scripts/ensure-tools (or apt-get install s3cmd), "
            "or set REPO_TEST_ALLOW_MISSING_TOOLS=1 to skip",
            pytrace=False,
        )
    return found


def run_s3cmd(s3cmd: str, cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [s3cmd, "-c", str(cfg), *args],
        capture_output=True,
        text=True,
        timeout=S3CMD_TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def umask_zero() -> Iterator[None]:
    """The most permissive umask, so only the code under test can make a file private."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


# ------------------------------------------------------------------------ render


def test_render_for_aws_is_virtual_hosted_https_in_us_east_1(tmp_path: Path) -> None:
    text = render_s3cmd_config(make_config(tmp_path))
    assert text == (
        "# s3cmd configuration for the repo store s3://bucket/prefix\n"
        "# It holds the secret key: keep it private (mode 0600).\n"
        "[default]\n"
        f"access_key = {ACCESS}\n"
        f"secret_key = {SECRET}\n"
        "host_base = s3.amazonaws.com\n"
        "host_bucket = %(bucket)s.s3.amazonaws.com\n"
        "use_https = True\n"
        "bucket_location = us-east-1\n"
        "signature_v2 = False\n"
    )


def test_render_uses_the_configured_region(tmp_path: Path) -> None:
    values = parse(render_s3cmd_config(make_config(tmp_path, s3_region="eu-west-3")))
    assert values["bucket_location"] == "eu-west-3"


def test_render_for_http_endpoint_is_path_style_without_https(tmp_path: Path) -> None:
    config = make_config(tmp_path, s3_endpoint_url="http://127.0.0.1:9000")
    values = parse(render_s3cmd_config(config))
    assert values == {
        "access_key": ACCESS,
        "secret_key": SECRET,
        "host_base": "127.0.0.1:9000",
        "host_bucket": "127.0.0.1:9000",
        "use_https": "False",
        "bucket_location": "us-east-1",
        "signature_v2": "False",
    }


def test_render_for_https_endpoint_uses_https(tmp_path: Path) -> None:
    config = make_config(tmp_path, s3_endpoint_url="https://minio.example.org/", s3_region="garage")
    values = parse(render_s3cmd_config(config))
    assert values["host_base"] == values["host_bucket"] == "minio.example.org"
    assert values["use_https"] == "True"
    assert values["bucket_location"] == "garage"


def test_render_refuses_an_endpoint_with_a_path(tmp_path: Path) -> None:
    config = make_config(tmp_path, s3_endpoint_url="https://example.org/s3")
    with pytest.raises(repo.ConfigError, match="s3_endpoint_url") as err:
        render_s3cmd_config(config)
    assert err.value.hint


def test_render_refuses_a_local_directory_store(tmp_path: Path) -> None:
    config = make_config(tmp_path, store=(tmp_path / "store").as_uri())
    with pytest.raises(repo.ConfigError) as err:
        render_s3cmd_config(config)
    assert "\n" not in err.value.message
    assert "s3cmd" in err.value.message
    assert err.value.hint is not None
    assert "default_s3_bucket" in err.value.hint


@pytest.mark.parametrize(
    ("access", "secret", "missing"),
    [
        (None, SECRET, "'s3_access_key'"),
        (ACCESS, None, "'s3_secret_key'"),
        (None, None, "'s3_access_key', 's3_secret_key'"),
    ],
)
def test_render_refuses_missing_keys_and_names_them(
    tmp_path: Path, access: str | None, secret: str | None, missing: str
) -> None:
    config = make_config(tmp_path, s3_access_key=access, s3_secret_key=secret)
    with pytest.raises(repo.ConfigError) as err:
        render_s3cmd_config(config)
    assert f"key(s) {missing} not set" in err.value.message
    assert err.value.hint


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        (f"{SECRET}\nhost_base = evil.example", "a control character"),
        (f" {SECRET}", "leading or trailing blanks"),
        (f"${SECRET}", "a leading '$'"),
    ],
    ids=["newline", "blank", "dollar"],
)
def test_render_refuses_a_secret_s3cmd_would_misread_without_showing_it(
    tmp_path: Path, secret: str, problem: str
) -> None:
    config = make_config(tmp_path, s3_secret_key=secret)
    with pytest.raises(repo.ConfigError) as err:
        render_s3cmd_config(config)
    assert problem in err.value.message
    assert "'s3_secret_key'" in err.value.message
    shown = f"{err.value} {err.value.hint} {err.value!r}"
    assert SECRET not in shown


def test_render_keeps_a_strange_store_url_inside_its_comment(tmp_path: Path) -> None:
    config = make_config(tmp_path, store="s3://bucket/a\rhost_base = evil.example")
    text = render_s3cmd_config(config)
    assert (
        text.splitlines()[0]
        == "# s3cmd configuration for the repo store s3://bucket/a?host_base = evil.example"
    )
    assert parse(text)["host_base"] == "s3.amazonaws.com"


def test_no_render_error_shows_the_secret(tmp_path: Path) -> None:
    configs = [
        make_config(tmp_path, store=(tmp_path / "store").as_uri()),
        make_config(tmp_path, s3_access_key=None),
        make_config(tmp_path, s3_endpoint_url="http://127.0.0.1:9000/path"),
        make_config(tmp_path, s3_endpoint_url=f"http://user:{SECRET}@127.0.0.1:9000"),
    ]
    for config in configs:
        with pytest.raises(repo.ConfigError) as err:
            render_s3cmd_config(config)
        assert SECRET not in f"{err.value} {err.value.hint} {err.value!r}"


# ------------------------------------------------------------------------- write


def test_write_creates_the_file_with_mode_0600(tmp_path: Path, umask_zero: None) -> None:
    target = tmp_path / "s3cfg"
    written = write_s3cmd_config(make_config(tmp_path), target)
    assert written == target
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_text(encoding="utf-8") == render_s3cmd_config(make_config(tmp_path))


def test_write_defaults_to_s3cfg_in_the_home_directory(tmp_path: Path) -> None:
    # The autouse fixture points HOME at tmp_path/userhome.
    written = write_s3cmd_config(make_config(tmp_path))
    assert written == Path(os.environ["HOME"]) / ".s3cfg"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600


def test_write_refuses_an_existing_file_and_leaves_it_unchanged(tmp_path: Path) -> None:
    target = tmp_path / "s3cfg"
    target.write_text("[default]\nmine = 1\n", encoding="utf-8")
    target.chmod(0o640)
    with pytest.raises(repo.ConflictError) as err:
        write_s3cmd_config(make_config(tmp_path), target)
    assert err.value.message == f"{target} already exists"
    assert err.value.hint == "use --force to overwrite it"
    assert target.read_text(encoding="utf-8") == "[default]\nmine = 1\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_write_refuses_an_existing_symlink_without_following_it(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    target = tmp_path / "s3cfg"
    target.symlink_to(elsewhere)
    with pytest.raises(repo.ConflictError):
        write_s3cmd_config(make_config(tmp_path), target)
    assert not elsewhere.exists()


def test_write_with_force_replaces_the_file_with_mode_0600(
    tmp_path: Path, umask_zero: None
) -> None:
    (tmp_path / "dir").mkdir()
    target = tmp_path / "dir" / "s3cfg"
    target.write_text("old\n", encoding="utf-8")
    target.chmod(0o644)
    config = make_config(tmp_path, s3_endpoint_url="http://127.0.0.1:9000")
    assert write_s3cmd_config(config, target, force=True) == target
    assert target.read_text(encoding="utf-8") == render_s3cmd_config(config)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["s3cfg"]  # no temp file left


def test_write_with_force_creates_a_missing_file(tmp_path: Path) -> None:
    target = tmp_path / "s3cfg"
    write_s3cmd_config(make_config(tmp_path), target, force=True)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_write_of_a_refused_config_touches_nothing(tmp_path: Path) -> None:
    target = tmp_path / "s3cfg"
    with pytest.raises(repo.ConfigError):
        write_s3cmd_config(make_config(tmp_path, s3_secret_key=None), target)
    assert not target.exists()


@pytest.mark.parametrize("force", [False, True], ids=["create", "force"])
def test_write_into_a_missing_directory_is_a_usage_error(tmp_path: Path, force: bool) -> None:
    target = tmp_path / "no-such-dir" / "s3cfg"
    with pytest.raises(repo.UsageError, match=r"cannot write .*No such file") as err:
        write_s3cmd_config(make_config(tmp_path), target, force=force)
    assert SECRET not in str(err.value)


# --------------------------------------------------------------- the real s3cmd


def test_s3cmd_reads_back_every_value_unchanged(s3cmd: str, tmp_path: Path) -> None:
    # A secret that starts and ends with a double quote: s3cmd would strip a bare pair.
    secret = f'"{SECRET}"'
    config = make_config(
        tmp_path,
        s3_endpoint_url="http://127.0.0.1:9000",
        s3_region="eu-west-3",
        s3_secret_key=secret,
    )
    cfg = write_s3cmd_config(config, tmp_path / "s3cfg")
    result = run_s3cmd(s3cmd, cfg, "--dump-config")
    assert result.returncode == 0, result.stderr
    dumped = dict(line.split(" = ", 1) for line in result.stdout.splitlines() if " = " in line)
    assert dumped["access_key"] == ACCESS
    assert dumped["secret_key"] == secret
    assert dumped["host_base"] == dumped["host_bucket"] == "127.0.0.1:9000"
    assert dumped["use_https"] == "False"
    assert dumped["bucket_location"] == "eu-west-3"
    assert dumped["signature_v2"] == "False"


def test_s3cmd_lists_and_gets_what_the_repo_published(
    s3cmd: str, tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    settings = {
        "store": f"s3://{s3_bucket}/data",
        "database": f"sqlite:///{tmp_path}/catalog.db",
        "local_root": str(tmp_path / "local"),
        "host_name": "test-host",
        "s3_endpoint_url": s3_server.endpoint_url,
        "s3_access_key": s3_server.access_key,
        "s3_secret_key": s3_server.secret_key,
        "s3_region": s3_server.region,
    }
    content = b"published through repo, read through s3cmd\n"
    with repo.Repo(config=settings) as r:
        rf = r.add_file("reports/daily.csv").touch(content).publish()
        r.commit()
        key = rf.key
    cfg = write_s3cmd_config(repo.load_config(settings), tmp_path / "s3cfg")

    listed = run_s3cmd(s3cmd, cfg, "ls", "-r", f"s3://{s3_bucket}")
    assert listed.returncode == 0, listed.stderr
    assert f"s3://{s3_bucket}/{key}" in listed.stdout.split()

    out = tmp_path / "downloaded"
    got = run_s3cmd(s3cmd, cfg, "get", f"s3://{s3_bucket}/{key}", str(out))
    assert got.returncode == 0, got.stderr
    assert out.read_bytes() == content
