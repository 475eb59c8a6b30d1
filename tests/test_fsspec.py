"""repo:// through fsspec (src/repo/fs.py): pandas, pyarrow and DuckDB reading and writing
on the embedded default and on PostgreSQL + moto, and fsspec's own abstract suite."""

from __future__ import annotations

import hashlib
import posixpath
import threading
from typing import TYPE_CHECKING, Any

import duckdb
import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from fsspec.tests.abstract import (
    AbstractCopyTests,
    AbstractFixtures,
    AbstractGetTests,
    AbstractOpenTests,
    AbstractPipeTests,
    AbstractPutTests,
)
from fsspec.tests.abstract.common import GLOB_EDGE_CASES_TESTS

from repo import Repo
from repo.errors import UsageError
from repo.fs import RepoFileSystem
from repo.fs_names import is_file_id, parse_url_path, url_path
from repo.permissions import current_umask

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conftest import StoreTarget


@pytest.fixture(params=["embedded", "postgresql-moto"])
def setup(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[dict[str, Any]]:
    """storage_options for repo:// and the config a `Repo` opens the same repository
    with: the embedded default (no config at all: $REPO_HOME, set per test), or
    PostgreSQL with a moto bucket."""
    RepoFileSystem.clear_instance_cache()
    if request.param == "embedded":
        options: dict[str, Any] = {}
        config: Any = None
    else:
        from conftest import make_store_target

        store: StoreTarget = make_store_target(request, "moto", tmp_path)
        config = {
            "local_root": str(tmp_path / "local"),
            "store": store.url,
            "database": request.getfixturevalue("pg_url"),
            "host_name": "test-host",
            "s3_endpoint_url": store.endpoint_url,
            "s3_access_key": store.access_key,
            "s3_secret_key": store.secret_key,
            "s3_region": store.region,
        }
        options = {"config": config}
    yield {"options": options, "config": config}
    fs: RepoFileSystem = fsspec.filesystem("repo", **options)
    fs.close_sessions()
    RepoFileSystem.clear_instance_cache()


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_pandas_csv_and_parquet_round_trip(setup: dict[str, Any]) -> None:
    opts = setup["options"]
    frame = pd.DataFrame({"day": ["2026-12-01", "2026-12-02"], "n": [3, 4]})
    frame.to_csv("repo://reports/daily.csv", index=False, storage_options=opts)
    frame.to_parquet("repo://reports/daily.parquet", storage_options=opts)
    assert pd.read_csv("repo://reports/daily.csv", storage_options=opts).equals(frame)
    assert pd.read_parquet("repo://reports/daily.parquet", storage_options=opts).equals(frame)

    # Writing again is a new version; the first stays readable pinned by its file id.
    with Repo(setup["config"]) as r:
        first = r.current("reports/daily.csv")
        assert first.state == "published"
        assert r.current("reports/daily.parquet").size > 0
    frame.assign(n=[5, 6]).to_csv("repo://reports/daily.csv", index=False, storage_options=opts)
    assert list(pd.read_csv("repo://reports/daily.csv", storage_options=opts)["n"]) == [5, 6]
    pinned = f"repo://reports/daily.csv@{first.file_id}"
    assert list(pd.read_csv(pinned, storage_options=opts)["n"]) == [3, 4]
    with Repo(setup["config"]) as r:
        assert [v.state for v in r.history("reports/daily.csv")] == ["published", "expired"]


def test_info_ls_glob_and_pins(setup: dict[str, Any]) -> None:
    fs = fsspec.filesystem("repo", **setup["options"])
    fs.pipe("reports/a.csv", b"a,b\n1,2\n")
    fs.pipe("reports/2026/x.csv", b"x\n")
    fs.pipe("mail/user@@host.txt", b"at sign")  # '@@': an '@' of the path
    info = fs.info("repo://reports/a.csv")
    assert (info["type"], info["size"], info["state"]) == ("file", 8, "published")
    assert info["md5"] == _md5(b"a,b\n1,2\n")
    assert fs.checksum("reports/a.csv") == int(_md5(b"a,b\n1,2\n"), 16)
    assert fs.ls("reports", detail=False) == ["reports/2026", "reports/a.csv"]
    assert fs.info("reports")["type"] == "directory"
    assert fs.glob("repo://reports/**/*.csv") == ["reports/2026/x.csv", "reports/a.csv"]
    assert fs.find("", withdirs=True) == [
        "mail", "mail/user@@host.txt", "reports", "reports/2026", "reports/2026/x.csv",
        "reports/a.csv",
    ]  # fmt: skip
    # A name the filesystem gives back opens the same file.
    (name,) = fs.ls("mail", detail=False)
    assert fs.cat(name) == b"at sign"

    # A tag pins every path's tagged version: files and directories.
    with Repo(setup["config"]) as r:
        r.current("reports/a.csv").tag("release-1")
        r.current("reports/2026/x.csv").tag("release-1")
    fs.pipe("reports/a.csv", b"new")
    assert fs.cat("reports/a.csv") == b"new"
    assert fs.cat("reports/a.csv@release-1") == b"a,b\n1,2\n"
    assert fs.find("reports@release-1") == [
        "reports@release-1/2026/x.csv",
        "reports@release-1/a.csv",
    ]
    assert fs.cat("reports@release-1/a.csv") == b"a,b\n1,2\n"
    assert fs.info("reports/a.csv@release-1")["state"] == "expired"
    with pytest.raises(UsageError, match="pinned version"):
        fs.pipe("reports/a.csv@release-1", b"no")
    with pytest.raises(FileNotFoundError):
        fs.cat("reports/a.csv@release-2")
    with pytest.raises(FileNotFoundError):
        fs.info("reports/nothing.csv")

    fs.cp("reports/a.csv@release-1", "reports/copy.csv")
    with Repo(setup["config"]) as r:
        copied, original = r.current("reports/copy.csv"), r.file(info["file_id"])
        assert (copied.md5, copied.mode) == (original.md5, original.mode)
        assert original.mode == 0o666 & ~current_umask()  # as a new file here would get

    fs.rm("reports/2026", recursive=True)
    assert not fs.exists("reports/2026/x.csv")
    assert fs.cat("reports/2026/x.csv@release-1") == b"x\n"


def test_pyarrow_dataset_over_a_directory(setup: dict[str, Any]) -> None:
    fs = fsspec.filesystem("repo", **setup["options"])
    for part in range(3):
        table = pa.table({"part": [part] * 4, "value": list(range(4))})
        pq.write_table(table, f"lake/part-{part}.parquet", filesystem=fs)
    with Repo(setup["config"]) as r:
        for f in r.list("lake/*"):
            f.tag("v1")
    pq.write_table(pa.table({"part": [9], "value": [100]}), "lake/part-0.parquet", filesystem=fs)

    current = ds.dataset("lake", filesystem=fs, format="parquet").to_table()
    assert current.num_rows == 9
    assert sorted(current.column("part").to_pylist()) == [1] * 4 + [2] * 4 + [9]
    pinned = ds.dataset("lake@v1", filesystem=fs, format="parquet").to_table()
    assert pinned.num_rows == 12
    assert len(fs.glob("repo://lake@v1/*.parquet")) == 3
    con = duckdb.connect()
    con.register_filesystem(fs)
    query = "select count(*), max(value) from 'repo://lake@v1/*.parquet'"
    assert con.execute(query).fetchall() == [(12, 3)]
    con.close()


def test_duckdb_reads_and_writes(setup: dict[str, Any]) -> None:
    fs = fsspec.filesystem("repo", **setup["options"])
    fs.pipe("db/numbers.csv", b"n\n1\n2\n3\n")
    pq.write_table(pa.table({"n": [10, 20]}), "db/more.parquet", filesystem=fs)
    con = duckdb.connect()
    con.register_filesystem(fs)
    assert con.execute("select sum(n) from read_csv('repo://db/numbers.csv')").fetchall() == [(6,)]
    assert con.execute("select sum(n) from 'repo://db/*.parquet'").fetchall() == [(30,)]
    con.execute("copy (select n * 2 as n from 'repo://db/numbers.csv') to 'repo://db/out.csv'")
    assert fs.cat("db/out.csv").split() == [b"n", b"2", b"4", b"6"]
    # A COPY that fails half way over an existing file: DuckDB writes a temporary path
    # (tmp_out.csv) and moves it only on success, so out.csv keeps its version.
    failing = (
        "copy (select case when i < 50000 then i else error('boom') end as n"
        " from range(100000) t(i)) to 'repo://db/out.csv'"
    )
    with pytest.raises(duckdb.Error, match="boom"):
        con.execute(failing)
    assert fs.cat("db/out.csv").split() == [b"n", b"2", b"4", b"6"]
    assert fs.find("db") == ["db/more.parquet", "db/numbers.csv", "db/out.csv"]
    con.close()


def test_a_failed_write_publishes_nothing(setup: dict[str, Any]) -> None:
    fs = fsspec.filesystem("repo", **setup["options"])

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("cannot format")

    frame = pd.DataFrame({"a": ["x"] * 5000 + [Unprintable()]})  # type: ignore[list-item]
    with pytest.raises(RuntimeError, match="cannot format"):
        frame.to_csv("repo://w/broken.csv", storage_options=setup["options"])

    def write_half() -> None:
        with fs.open("w/partial.bin", "wb") as f:
            f.write(b"half")
            raise ValueError("stop")

    with pytest.raises(ValueError, match="stop"):
        write_half()
    f = fs.open("w/dropped.bin", "wb")
    f.write(b"never closed")
    del f
    try:  # a write in an exception handler (started there) still publishes
        raise KeyError("unrelated")
    except KeyError:
        with fs.open("w/report.txt", "wb") as f:
            f.write(b"written while handling")
    with Repo(setup["config"]) as r:
        assert [f.path for f in r.list("w/*", state="all")] == ["w/report.txt"]
        assert not list(r.session.staging.directory.glob(".incoming-*"))


def test_a_transaction_publishes_all_or_nothing(setup: dict[str, Any]) -> None:
    fs = fsspec.filesystem("repo", **setup["options"])

    def abandoned() -> None:
        with fs.transaction:
            fs.pipe("tx/one", b"1")
            fs.pipe("tx/two", b"2")
            raise ValueError("abandon")

    with pytest.raises(ValueError, match="abandon"):
        abandoned()
    assert not fs.exists("tx/one")
    with fs.transaction:
        fs.pipe("tx/one", b"1")
        assert not fs.exists("tx/one")  # published when the transaction completes
        fs.pipe("tx/two", b"2")
    assert fs.cat(["tx/one", "tx/two"]) == {"tx/one": b"1", "tx/two": b"2"}


def test_threads_share_a_filesystem(setup: dict[str, Any]) -> None:
    fs = fsspec.filesystem("repo", **setup["options"])
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(3):
                fs.pipe(f"t/{n}/{i}", f"{n}-{i}".encode())
                assert fs.cat(f"t/{n}/{i}") == f"{n}-{i}".encode()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(fs.find("t")) == 12


def test_the_default_filesystem_follows_the_environment(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fsspec hands out one filesystem per set of options: without a config, its sessions
    follow where the default configuration resolves now."""
    RepoFileSystem.clear_instance_cache()
    fs = fsspec.filesystem("repo")
    fs.pipe("here.txt", b"first home")
    monkeypatch.setenv("REPO_HOME", str(tmp_path / "elsewhere"))
    assert fsspec.filesystem("repo") is fs
    assert not fs.exists("here.txt")
    fs.pipe("here.txt", b"second home")
    with Repo() as r:
        assert r.current("here.txt").read_bytes() == b"second home"
    fs.close_sessions()
    RepoFileSystem.clear_instance_cache()


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("reports/daily.csv", ("reports/daily.csv", None, 17)),
        ("reports/daily.csv@12", ("reports/daily.csv", "12", 17)),
        ("lake@v1/part-0.parquet", ("lake/part-0.parquet", "v1", 4)),
        ("mail/a@@b.txt@release-3", ("mail/a@b.txt", "release-3", 12)),
        ("a@@@@b@t/c@@d", ("a@@b/c@d", "t", 4)),
    ],
)
def test_url_paths_round_trip(text: str, parsed: tuple[str, str | None, int]) -> None:
    assert parse_url_path(text) == parsed
    assert url_path(*parsed) == text


def test_only_ascii_digits_pin_a_file_id() -> None:
    assert is_file_id("12")
    assert not is_file_id("\u0661\u0662")  # Arabic-Indic digits: a tag of that name
    assert not is_file_id("v12")


@pytest.mark.parametrize("text", ["reports/daily.csv@", "a@/b", "a@x/b@y", "@v1", "a/@v1/b"])
def test_a_pin_is_one_not_empty_and_after_a_segment(text: str) -> None:
    with pytest.raises(UsageError, match="one pin, not empty, after a path segment"):
        parse_url_path(text)


# -- fsspec's abstract suite (embedded default) -------------------------------------------
# None of it is skipped: writing over a file is a new current version, which is what these
# tests look at (the old version stays, expired, where they do not look).


class RepoFixtures(AbstractFixtures):  # type: ignore[misc]
    @pytest.fixture
    def fs(self) -> Iterator[RepoFileSystem]:
        RepoFileSystem.clear_instance_cache()
        fs = fsspec.filesystem("repo")
        yield fs
        fs.close_sessions()

    @pytest.fixture
    def fs_path(self) -> str:
        return "abstract"

    @pytest.fixture
    def fs_join(self) -> Any:
        return posixpath.join

    @pytest.fixture
    def supports_empty_directories(self) -> bool:
        return False  # a directory is implied by the paths below it


#: Three of fsspec's 32 glob edge cases per suite ('?' recursive, '**' with a depth, sets
#: in two segments): each makes eleven versions, and all 32 thrice would take a minute.
_EDGE_NAMES = GLOB_EDGE_CASES_TESTS["argnames"]
_EDGE_CASES = [
    case
    for i, case in enumerate(GLOB_EDGE_CASES_TESTS["argvalues"])
    if i in (1, 14, len(GLOB_EDGE_CASES_TESTS["argvalues"]) - 1)
]


class TestRepoCopy(RepoFixtures, AbstractCopyTests):  # type: ignore[misc]
    @pytest.mark.parametrize(_EDGE_NAMES, _EDGE_CASES)
    def test_copy_glob_edge_cases(
        self,
        path: Any,
        recursive: Any,
        maxdepth: Any,
        expected: Any,
        fs: Any,
        fs_join: Any,
        fs_glob_edge_cases_files: Any,
        fs_target: Any,
        fs_sanitize_path: Any,
    ) -> None:
        AbstractCopyTests.test_copy_glob_edge_cases(
            self,
            path,
            recursive,
            maxdepth,
            expected,
            fs,
            fs_join,
            fs_glob_edge_cases_files,
            fs_target,
            fs_sanitize_path,
        )


class TestRepoGet(RepoFixtures, AbstractGetTests):  # type: ignore[misc]
    @pytest.mark.parametrize(_EDGE_NAMES, _EDGE_CASES)
    def test_get_glob_edge_cases(
        self,
        path: Any,
        recursive: Any,
        maxdepth: Any,
        expected: Any,
        fs: Any,
        fs_join: Any,
        fs_glob_edge_cases_files: Any,
        local_fs: Any,
        local_join: Any,
        local_target: Any,
    ) -> None:
        AbstractGetTests.test_get_glob_edge_cases(
            self,
            path,
            recursive,
            maxdepth,
            expected,
            fs,
            fs_join,
            fs_glob_edge_cases_files,
            local_fs,
            local_join,
            local_target,
        )


class TestRepoPut(RepoFixtures, AbstractPutTests):  # type: ignore[misc]
    @pytest.mark.parametrize(_EDGE_NAMES, _EDGE_CASES)
    def test_put_glob_edge_cases(
        self,
        path: Any,
        recursive: Any,
        maxdepth: Any,
        expected: Any,
        fs: Any,
        fs_join: Any,
        fs_target: Any,
        local_glob_edge_cases_files: Any,
        local_join: Any,
        fs_sanitize_path: Any,
    ) -> None:
        AbstractPutTests.test_put_glob_edge_cases(
            self,
            path,
            recursive,
            maxdepth,
            expected,
            fs,
            fs_join,
            fs_target,
            local_glob_edge_cases_files,
            local_join,
            fs_sanitize_path,
        )


class TestRepoOpen(RepoFixtures, AbstractOpenTests):  # type: ignore[misc]
    pass


class TestRepoPipe(RepoFixtures, AbstractPipeTests):  # type: ignore[misc]
    pass
