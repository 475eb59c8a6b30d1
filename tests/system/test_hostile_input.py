"""Hostile and bad input: paths, tags and glob patterns from property-based fuzzing, SQL
injection strings, and broken configurations.

The property: an input is either accepted and round-trips exactly (found, listed and read
back as the same NFC-normalised name, its cached copy inside the cache directory) or
rejected with a `RepoError` carrying a one-line message, and the catalog's tables are
intact afterwards (row counts unchanged by a rejection). Glob characters that are SQL
wildcards (``%``, ``_``) match only themselves.
"""

from __future__ import annotations

import fnmatch
import json
import os
import socket
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, func, select
from sqlalchemy.pool import NullPool

import repo
from conftest import CliRun, write_config
from repo.catalog.schema import metadata
from soak import trials

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from harness.s3servers import RcloneS3Server

INJECTIONS = [
    "'; DROP TABLE files; --",
    "x' OR '1'='1",
    '"; DELETE FROM tags; --',
    "%",
    "_",
    "\\",
    "*",
    "[",
    "'",
    '"',
    "a%b",
    "a_b",
    "Robert'); DROP TABLE paths;--",
]


def _fuzz(normal: int, soak: int) -> Callable[[Any], Any]:
    return settings(
        max_examples=trials(normal, soak),
        deadline=None,
        derandomize=True,  # the same examples on every run: CI is reproducible
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
        ],
    )


# -- the repositories under attack --------------------------------------------------------


@dataclass
class Target:
    r: repo.Repo
    url: str
    tmp: Path

    @property
    def cache_root(self) -> Path:
        return (self.tmp / "local" / "cache").resolve()

    def counts(self) -> dict[str, int]:
        engine = create_engine(self.url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                return {
                    name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                    for name, t in metadata.tables.items()
                }
        finally:
            engine.dispose()

    def assert_contained(self) -> None:
        """Every cached file resolves inside the cache root; nothing appeared beside the
        test's own directories."""
        for entry in self.r.cache.entries():
            assert entry.path.resolve().is_relative_to(self.cache_root), entry.path
        for root, _dirs, names in os.walk(self.tmp / "local"):
            for name in names:
                assert Path(root, name).resolve().is_relative_to(self.tmp / "local")
        assert {p.name for p in self.tmp.iterdir()} <= {
            "local", "store", "catalog.db", "catalog.db-wal", "catalog.db-shm", "userhome",
            "home", "cfg.json", "src.txt",
        }  # fmt: skip


def _config(tmp: Path, database: str, **store: str) -> dict[str, str]:
    return {
        "database": database,
        "local_root": str(tmp / "local"),
        "host_name": "fuzz-host",
        **store,
    }


@pytest.fixture
def sqlite_target(tmp_path: Path, sqlite_url: str) -> Iterator[Target]:
    (tmp_path / "store").mkdir()
    r = repo.Repo(_config(tmp_path, sqlite_url, store=(tmp_path / "store").as_uri()))
    yield Target(r, sqlite_url, tmp_path)
    r.close()


@pytest.fixture
def pg_target(tmp_path: Path, pg_url: str, rclone_server: RcloneS3Server) -> Iterator[Target]:
    bucket = rclone_server.create_bucket("fuzz-" + os.urandom(6).hex())
    cfg = _config(
        tmp_path,
        pg_url,
        store=f"s3://{bucket}/p",
        s3_endpoint_url=rclone_server.endpoint_url,
        s3_access_key=rclone_server.access_key,
        s3_secret_key=rclone_server.secret_key,
        s3_region=rclone_server.region,
    )
    r = repo.Repo(cfg)
    yield Target(r, pg_url, tmp_path)
    r.close()


def _one_line(err: repo.RepoError) -> None:
    assert err.message
    assert "\n" not in err.message
    assert "\r" not in err.message
    assert len(err.message) < 500
    assert err.hint is None or "\n" not in err.hint


def _glob_escape(path: str) -> str:
    return "".join(f"[{ch}]" if ch in "*?[" else ch for ch in path)


# -- paths --------------------------------------------------------------------------------

_SEGMENTS = st.one_of(
    st.sampled_from(
        ["..", ".", "", "a", "A", "é", "e\u0301", "Å", "A\u030a", "ﬁ", "İ", "ß", "~", " ",
         "\x00", "\x1f", "\x7f", "\u2028", "\u202e", "\U0001f600", *INJECTIONS]
    ),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=12),
    st.text(alphabet="aé中", min_size=60, max_size=110),  # 60-330 bytes: some too long
)  # fmt: skip
PATHS = st.one_of(
    st.lists(_SEGMENTS, min_size=1, max_size=5).map("/".join),
    st.lists(_SEGMENTS, min_size=1, max_size=3).map(lambda s: "/" + "/".join(s)),
    st.lists(st.text(alphabet="ab", min_size=49, max_size=49), min_size=20, max_size=21).map(
        "/".join
    ),  # 999 or 1049 bytes: around S3's key limit
    st.text(max_size=40),
)


def _path_round_trips(t: Target, path: str) -> None:
    before = t.counts()
    try:
        rf = t.r.add_file(path)
    except repo.InvalidPathError as exc:
        _one_line(exc)
        assert t.counts() == before
        return
    norm = unicodedata.normalize("NFC", path)
    assert rf.path == norm
    content = norm.encode()
    rf.touch(content).publish()
    t.r.commit()
    current = t.r.get_file(path)  # the un-normalised spelling finds it too
    assert current is not None
    assert (current.file_id, current.path) == (rf.file_id, norm)
    assert [f.path for f in t.r.list(_glob_escape(norm))] == [norm]
    assert t.r.history(norm)[0].file_id == rf.file_id
    t.r.cache.evict(rf.key)  # read back through a download, not the uploaded copy
    assert current.read_bytes() == content
    assert Path(current.local_path).resolve().is_relative_to(t.cache_root)
    after = t.counts()
    assert after["files"] == before["files"] + 1
    t.assert_contained()


def _path_examples(test: Callable[..., None]) -> Callable[..., None]:
    for path in [
        *INJECTIONS,
        "../escape",
        "a/../../etc/passwd",
        "/etc/passwd",
        "./x",
        "a/./b",
        "a//b",
        "nul\x00byte",
        "tab\tname",
        "x" * 201,
        "é" * 100,  # 200 bytes: the longest segment
        "caf\u00e9",
        "cafe\u0301",  # the same path after NFC
        "Case.txt",
        "case.txt",  # a different path
        "data/.repo-meta/x",
        "x~0000000000000000000000000a",
    ]:
        test = example(path=path)(test)
    return test


@_fuzz(40, 1500)
@_path_examples
@given(path=PATHS)
def test_paths_on_sqlite_and_a_directory(sqlite_target: Target, path: str) -> None:
    _path_round_trips(sqlite_target, path)


@_fuzz(12, 300)
@given(path=PATHS)
@example(path="'; DROP TABLE files; --")
@example(path="a%b/c_d\\e")
@example(path="cafe\u0301/\U0001f600")
def test_paths_on_postgresql_and_rclone(pg_target: Target, path: str) -> None:
    _path_round_trips(pg_target, path)


def test_names_differing_only_by_normalisation_are_one_path_and_by_case_two(
    sqlite_target: Target,
) -> None:
    r = sqlite_target.r
    nfc = r.add_file("caf\u00e9.txt").touch("1").publish()
    nfd = r.add_file("cafe\u0301.txt").touch("2").publish()
    upper = r.add_file("CAFÉ.txt").touch("3").publish()
    r.commit()
    assert nfc.path == nfd.path == "caf\u00e9.txt"
    assert [len(r.history(p)) for p in ("café.txt", "CAFÉ.txt")] == [2, 1]
    assert r.current("cafe\u0301.txt").file_id == nfd.file_id
    assert [f.path for f in r.list("caf*")] == ["café.txt"]
    assert [f.file_id for f in r.list("CAF*")] == [upper.file_id]


def test_a_directory_named_like_a_version_token_is_refused(sqlite_target: Target) -> None:
    """Keys end in '~<token>': a directory of that name would collide with a version's
    object in the directory store and the cache, so such paths are refused up front."""
    r = sqlite_target.r
    first = r.add_file("x").touch("first").publish()
    r.commit()
    token = first.key.rsplit("~", 1)[1]
    with pytest.raises(repo.InvalidPathError) as err:
        r.add_file(f"x~{token}/y")
    assert "version token" in str(err.value)
    assert "\n" not in str(err.value)
    assert r.add_file(f"y~{token}").path == f"y~{token}"  # as the last segment: harmless
    assert r.current("x").read_bytes() == b"first"


# -- tags ---------------------------------------------------------------------------------

OTHER_TAGS = ["ab", "a_b", "a%b", "A", "a\\b", "x", "'; DROP TABLE tags; --"]
TAGS = st.one_of(
    st.sampled_from([*INJECTIONS, "", " ", " padded", "padded ", "a" * 255, "a" * 256]),
    st.text(st.characters(codec="utf-8"), min_size=0, max_size=20),
    st.text(alphabet="a%_\\*[]'\"é\u0301AB= ", min_size=1, max_size=6),
    st.text(st.characters(codec="utf-8"), min_size=250, max_size=260),
)


@pytest.fixture
def tag_target(request: pytest.FixtureRequest) -> tuple[Target, int, int]:
    """A target with a file to tag and another holding OTHER_TAGS."""
    t: Target = request.getfixturevalue(request.param)
    target = t.r.add_file("target.txt").touch("t").publish()
    other = t.r.add_file("other.txt").touch("o").publish()
    other.tag(*OTHER_TAGS)
    t.r.commit()
    return t, target.file_id, other.file_id


def _tag_round_trips(t: Target, target_id: int, other_id: int, tag: str) -> None:
    r = t.r
    rf = r.file(target_id)
    before = t.counts()
    try:
        rf.tag(tag)
    except repo.InvalidTagError as exc:
        _one_line(exc)
        queries: list[dict[str, Any]] = [{"all": [tag]}, {"any": [tag]}, {"exclude": [tag]}]
        for query in queries:
            with pytest.raises(repo.InvalidTagError):
                r.find(**query)
        r.rollback()
        assert t.counts() == before
        return
    r.commit()
    norm = unicodedata.normalize("NFC", tag)
    assert norm in r.file(target_id).tags
    expected = {target_id} | ({other_id} if norm in OTHER_TAGS else set())
    assert {f.file_id for f in r.find(all=[tag])} == expected
    assert {f.file_id for f in r.find(any=[tag, "no-such-tag"])} == expected
    assert target_id not in {f.file_id for f in r.find(exclude=[tag])}
    rf.untag(tag)
    r.commit()
    assert r.file(target_id).tags == []
    assert set(r.file(other_id).tags) == set(OTHER_TAGS)
    after = t.counts()
    assert after["files"] == before["files"]
    assert after["file_tags"] == before["file_tags"]


def _tag_examples(test: Callable[..., None]) -> Callable[..., None]:
    for tag in [*INJECTIONS, "a%", "%b", "a_", "A", "a", "é", "e\u0301", "t\x00", "\u2028"]:
        test = example(tag=tag)(test)
    return test


@pytest.mark.parametrize("tag_target", ["sqlite_target"], indirect=True)
@_fuzz(40, 1500)
@_tag_examples
@given(tag=TAGS)
def test_tags_on_sqlite(tag_target: tuple[Target, int, int], tag: str) -> None:
    _tag_round_trips(*tag_target, tag)


@pytest.mark.parametrize("tag_target", ["pg_target"], indirect=True)
@_fuzz(12, 300)
@example(tag="'; DROP TABLE files; --")
@example(tag="a%")
@example(tag="a_")
@given(tag=TAGS)
def test_tags_on_postgresql(tag_target: tuple[Target, int, int], tag: str) -> None:
    _tag_round_trips(*tag_target, tag)


# -- glob patterns ------------------------------------------------------------------------

GLOB_PATHS = sorted(
    ["a%b", "a_b", "axb", "a\\b", "A_B", "a[b", "a]b", "a*b", "a?b", "100%", "x/y_z", "é",
     "'; DROP TABLE files; --", "ab", "a/b"]
)  # fmt: skip
PATTERNS = st.text(alphabet="a%_\\*?[]!-bxAB'é/ ;", min_size=1, max_size=8)


@pytest.fixture
def glob_target(request: pytest.FixtureRequest) -> Target:
    t: Target = request.getfixturevalue(request.param)
    for path in GLOB_PATHS:
        t.r.add_file(path).touch(path).publish()
    t.r.commit()
    return t


def _glob_matches_model(t: Target, pattern: str) -> None:
    got = [f.path for f in t.r.list(pattern)]
    assert got == [p for p in GLOB_PATHS if fnmatch.fnmatchcase(p, pattern)]


def _glob_examples(test: Callable[..., None]) -> Callable[..., None]:
    for pattern in ["%", "_", "a%b", "a_b", "a\\b", "a\\%b", "%%", "a[%]b", "a[_]b", "[", "[!",
                    "a[", "*", "?", "a?b", "[]]", "[]]b", "'*", "*--", "\\", "*\\*"]:  # fmt: skip
        test = example(pattern=pattern)(test)
    return test


@pytest.mark.parametrize("glob_target", ["sqlite_target"], indirect=True)
@_fuzz(80, 2000)
@_glob_examples
@given(pattern=PATTERNS)
def test_glob_patterns_on_sqlite(glob_target: Target, pattern: str) -> None:
    _glob_matches_model(glob_target, pattern)


@pytest.mark.parametrize("glob_target", ["pg_target"], indirect=True)
@_fuzz(20, 500)
@example(pattern="%")
@example(pattern="a_b")
@example(pattern="a\\%b")
@given(pattern=PATTERNS)
def test_glob_patterns_on_postgresql(glob_target: Target, pattern: str) -> None:
    _glob_matches_model(glob_target, pattern)


@pytest.mark.parametrize("glob_target", ["sqlite_target"], indirect=True)
@pytest.mark.parametrize("pattern", ["[!]]b", "a[!]x]"])
def test_a_negated_set_starting_with_a_bracket_matches_as_fnmatch_does(
    glob_target: Target, pattern: str
) -> None:
    _glob_matches_model(glob_target, pattern)


def test_an_empty_pattern_is_a_usage_error(sqlite_target: Target) -> None:
    with pytest.raises(repo.UsageError) as err:
        sqlite_target.r.list("")
    _one_line(err.value)


# -- the command line ---------------------------------------------------------------------


@pytest.fixture
def sqlite_cli(tmp_path: Path, sqlite_url: str) -> tuple[CliRun, Target]:
    (tmp_path / "store").mkdir()
    cfg = _config(tmp_path, sqlite_url, store=(tmp_path / "store").as_uri())
    run = CliRun(write_config(tmp_path / "cfg.json", cfg), tmp_path)
    assert run("create").exit_code == 0
    return run, Target(None, sqlite_url, tmp_path)  # type: ignore[arg-type]


def test_cli_round_trips_injection_strings(sqlite_cli: tuple[CliRun, Target]) -> None:
    run, t = sqlite_cli
    src = t.tmp / "src.txt"
    src.write_text("payload")
    evil = "'; DROP TABLE files; --"
    added = run("add", evil, str(src), "-t", "%", "-t", "_", "-t", evil, "--publish")
    assert added.exit_code == 0, added.output
    assert t.counts()["files"] == 1

    def paths(*argv: str) -> list[str]:
        result = run(*argv, "--json")
        assert result.exit_code == 0, result.output
        doc: dict[str, list[dict[str, str]]] = json.loads(result.stdout)
        return [f["path"] for f in doc["files"]]

    assert paths("list", "%") == paths("list", "_") == paths("find", "--all", "%%") == []
    assert paths("list", "'*") == paths("find", "--all", "%", "--all", "_") == [evil]
    assert paths("find", "--all", evil) == paths("find", "--any", "_", "--any", "x") == [evil]
    got = run("cat", "--path", evil)
    assert (got.exit_code, got.stdout) == (0, "payload")
    assert t.counts()["files"] == 1
    assert t.counts()["tags"] == 3


@pytest.mark.parametrize(
    ("argv", "stderr"),
    [
        (
            ["add", "../escape", "SRC"],
            "Error: path '../escape' has a '..' segment\n"
            "Try: repository paths are plain names from the top, such as 'reports/a.csv'\n",
        ),
        (
            # No local file: the seed's spelling, repository path first, which is absolute.
            # (`repo add /etc/passwd SRC` adds two local files, as `cp` would read them.)
            ["add", "/no/such/abs/path", "SRC"],
            "Error: path '/no/such/abs/path' is absolute\n"
            "Try: repository paths are relative: drop the leading '/'\n",
        ),
        (
            ["add", "SRC", "--as", "/etc/passwd"],
            "Error: path '/etc/passwd' is absolute\n"
            "Try: repository paths are relative: drop the leading '/'\n",
        ),
        (["add", "a\x01b", "SRC"], "Error: path 'a\\x01b' contains control character U+0001\n"),
        (
            ["add", "ok.txt", "SRC", "-t", " padded"],
            "Error: tag ' padded' has leading or trailing whitespace\n",
        ),
        (["find", "--all", "t\x00"], "Error: tag 't\\x00' contains control character U+0000\n"),
        (["list", "--state", "'; DROP TABLE files; --", "*"], None),
    ],
)
def test_cli_rejects_bad_names_in_one_line(
    sqlite_cli: tuple[CliRun, Target], argv: list[str], stderr: str | None
) -> None:
    run, t = sqlite_cli
    src = t.tmp / "src.txt"
    src.write_text("x")
    before = t.counts()
    result = run(*[str(src) if a == "SRC" else a for a in argv])
    assert result.stdout == ""
    if stderr is None:
        assert result.exit_code == 2
        assert "Invalid value for '--state'" in result.stderr
    else:
        assert (result.exit_code, result.stderr) == (1, stderr)
    assert t.counts() == before


# -- broken configuration and unreachable services ---------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli_error(tmp_path: Path, text: str, *argv: str) -> list[str]:
    cfg = tmp_path / "cfg.json"
    cfg.write_text(text)
    cfg.chmod(0o600)
    result = CliRun(cfg, tmp_path)(*(argv or ("list",)))
    assert result.exit_code == 1
    assert result.stdout == ""
    lines: list[str] = str(result.stderr).splitlines()
    assert 1 <= len(lines) <= 2
    assert lines[0].startswith("Error: ")
    assert len(lines) == 1 or lines[1].startswith("Try: ")
    return lines


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ('{"store": "file:///x", "database": ', "not valid JSON (line 1, column 36"),
        ("[1, 2]", "must be a JSON object"),
        ('{"store": 5, "database": "sqlite:///c.db"}', "key 'store' must be a string, got 5"),
        ('{"store": "file:///x", "database": "sqlite:///c.db", "cache_max_bytes": "1"}',
         "key 'cache_max_bytes' must be an integer"),
        ('{"store": "file:///x", "database": "sqlite:///c.db", "colour": 1}', "'colour'"),
        ('{"store": "file:///x", "database": {"host": "h", "pasword": "p", "database": "d"}}',
         "unknown key(s) in 'database': 'pasword'"),
        ('{"store": "ftp://x/y", "database": "sqlite:///c.db"}', "key 'store' must start with"),
        ('{"store": "file:///x", "database": "mysql://u@h/d"}', "unsupported backend 'mysql'"),
        ('{"store": "file:///x", "database": "postgresql://u@h:port/d"}',
         "key 'database' is not a database URL"),
        ('{"store": "s3://b", "s3_endpoint_url": "127.0.0.1:9000", "database": "sqlite:///c.db"}',
         "key 's3_endpoint_url' must be an http:// or https:// URL"),
        ('{"store": "file:///x", "database": "sqlite:///c.db", "host_name": "a\\nb"}',
         "key 'host_name' must be a non-empty printable name"),
    ],
)  # fmt: skip
def test_malformed_configuration_is_one_line_naming_the_key(
    tmp_path: Path, text: str, names: str
) -> None:
    lines = _cli_error(tmp_path, text)
    assert names in lines[0]
    assert str(tmp_path / "cfg.json") in lines[0]


def test_unreachable_catalog_and_store_and_wrong_credentials_name_the_fix(
    tmp_path: Path, postgres_server: Any, rclone_server: RcloneS3Server
) -> None:
    store = (tmp_path / "store").as_uri()
    down = f"postgresql://repo:pw@127.0.0.1:{_free_port()}/repo"
    lines = _cli_error(tmp_path, json.dumps({"store": store, "database": down}))
    assert "catalog database unavailable" in lines[0]
    assert lines[1] == "Try: check the 'database' settings and that the server is running"
    assert "pw@" not in "\n".join(lines)

    nobody = f"postgresql://no_such_user@127.0.0.1:{postgres_server.port}/postgres"
    lines = _cli_error(tmp_path, json.dumps({"store": store, "database": nobody}))
    assert 'role "no_such_user" does not exist' in lines[0]
    assert "'database'" in lines[1]

    # (An unreachable S3 endpoint is tests/system/test_failures.py's; it takes seconds of retries.)
    bucket = rclone_server.create_bucket("creds-" + os.urandom(4).hex())
    s3 = {
        "store": f"s3://{bucket}/p",
        "database": f"sqlite:///{tmp_path}/catalog.db",
        "s3_endpoint_url": rclone_server.endpoint_url,
        "s3_access_key": rclone_server.access_key,
        "s3_secret_key": "wrong-secret-9c1e",
    }
    lines = _cli_error(tmp_path, json.dumps(s3), "create")
    assert "s3_secret_key" in lines[1]
    assert "wrong-secret-9c1e" not in "\n".join(lines)
