"""Long-lived readers on PostgreSQL (issue 15): a `Repo` that only reads holds no
transaction open, so it never keeps `destroy`, `restore` or a migration waiting, and
holds back no VACUUM; a writer's transaction keeps its guarantees."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import create_engine, text

import repo

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.usefixtures("postgres_server")

#: How long an admin command may take beside an idle reader before we call it stuck.
PROMPTLY = 30.0


@pytest.fixture
def config(tmp_path: Path, pg_url: str) -> dict[str, Any]:
    store = tmp_path / "store"
    store.mkdir()
    return {
        "local_root": str(tmp_path / "local"),
        "store": store.as_uri(),
        "database": pg_url,
        "host_name": "reader-host",
    }


def _state_of(url: str, pid: int) -> str:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            query = text("SELECT state FROM pg_stat_activity WHERE pid = :pid")
            return str(conn.execute(query, {"pid": pid}).scalar_one())
    finally:
        engine.dispose()


def _backend_pid(r: repo.Repo) -> int:
    return int(r.catalog.db.conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _stock(config: dict[str, Any]) -> None:
    with repo.Repo(config) as r:
        rf = r.add("a/b.txt", io.BytesIO(b"content"), tags=["t"], publish=True)
        rf.tag_path("p")


def test_reads_leave_no_transaction_open_and_writes_still_commit_whole(
    config: dict[str, Any],
) -> None:
    _stock(config)
    r = repo.Repo(config)
    try:
        pid = _backend_pid(r)
        rf = r.current("a/b.txt")
        reads = [
            lambda: r.find(all=["t"]),
            lambda: r.get_file("a/b.txt"),
            lambda: r.list("a/*"),
            lambda: r.history("a/b.txt"),
            lambda: r.tags_of([rf]),
            lambda: rf.tags,
            lambda: rf.hosts,
            lambda: rf.refresh(),
            lambda: r.status(),
            lambda: r.hosts(),
            rf.read_bytes,
        ]
        for read in reads:
            read()
            assert _state_of(config["database"], pid) == "idle"
        # A write opens the transaction, and it stays open (and uncommitted) until commit.
        r.add_file("a/new.txt").touch("n")
        assert _state_of(config["database"], pid) == "idle in transaction"
        with repo.Repo(config) as other:
            assert other.history("a/new.txt") == []
        r.rollback()
        assert _state_of(config["database"], pid) == "idle"
        with repo.Repo(config) as other:
            assert other.history("a/new.txt") == []
    finally:
        r.close()


READER = """
import json, sys
import repo
with repo.Repo(json.loads(sys.argv[1])) as r:
    r.find(all=["t"])
    r.current("a/b.txt").read_bytes()
    print("ready", flush=True)
    sys.stdin.read()  # hold the Repo open until the test closes our stdin
"""


@pytest.fixture
def idle_reader(config: dict[str, Any]) -> Iterator[subprocess.Popen[str]]:
    """Another process with a `Repo` open that has read, and then sits idle."""
    yield from _other_process(READER, config)


def _other_process(script: str, config: dict[str, Any]) -> Iterator[subprocess.Popen[str]]:
    """`script` run with `config` in another process, once it says "ready"; it ends when
    its standard input is closed (by the test, or here after it)."""
    _stock(config)
    proc = subprocess.Popen(
        [sys.executable, "-c", script, json.dumps(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        yield proc
    finally:
        if not proc.stdin.closed:
            proc.stdin.close()
        proc.wait(timeout=60)
        proc.stdout.close()
        proc.stderr.close()


def _finishes_promptly(work: Any) -> Any:
    """Run `work` in a thread; fail (rather than hang the suite) if it is stuck."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = work()
        except BaseException as exc:  # reported below, in the test's thread
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(PROMPTLY)
    assert not thread.is_alive(), f"still waiting after {PROMPTLY} s beside an idle reader"
    if "error" in out:
        raise out["error"]
    return out.get("value")


def test_destroy_and_restore_do_not_wait_for_an_idle_reader_in_another_process(
    config: dict[str, Any], idle_reader: subprocess.Popen[str]
) -> None:
    with repo.Repo(config) as r:
        r.backup()
    assert _finishes_promptly(lambda: repo.destroy_catalog(config)) == 1
    report = _finishes_promptly(lambda: repo.restore_catalog(config))
    assert report.rows["files"] == 1
    with repo.Repo(config) as r:
        assert r.current("a/b.txt").read_bytes() == b"content"
    assert idle_reader.poll() is None  # the reader is still there, holding its Repo


def _connections_to(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            query = text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return int(conn.execute(query).scalar_one())
    finally:
        engine.dispose()


def test_repos_dropped_without_close_give_their_connections_back(
    config: dict[str, Any],
) -> None:
    """A service that opens a `Repo` per request and forgets `close()` must not run out of
    connections: each is given back when its `Repo` (and its files) are dropped."""
    _stock(config)
    for _ in range(12):  # twice the connections one process may hold (pool of 2 + 4)
        r = repo.Repo(config)
        rf = r.current("a/b.txt")
        assert rf.read_bytes() == b"content"
        r.add_file("a/pending.txt").touch("never committed")
        del r, rf
    # The pool keeps at most two idle connections; none is left checked out.
    assert _connections_to(config["database"]) <= 2
    with repo.Repo(config) as r:
        assert r.history("a/pending.txt") == []  # dropped sessions rolled back


WRITER = """
import json, sys
import repo
r = repo.Repo(json.loads(sys.argv[1]))
r.add_file("a/uncommitted.txt").touch("x")  # a write: its transaction stays open
print("ready", flush=True)
sys.stdin.read()
r.commit()
"""


@pytest.fixture
def open_writer(config: dict[str, Any]) -> Iterator[subprocess.Popen[str]]:
    """Another process whose `Repo` wrote and has not committed: it holds table locks."""
    yield from _other_process(WRITER, config)


def test_destroy_beside_an_open_writer_fails_in_bounded_time_naming_it(
    config: dict[str, Any],
    open_writer: subprocess.Popen[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr("repo.session.EXCLUSIVE_WAIT_SECONDS", 1.0)
    with pytest.raises(repo.CatalogError) as caught:
        _finishes_promptly(lambda: repo.destroy_catalog(config))
    # The wait was announced when it began, naming the writer.
    announced = [r.getMessage() for r in caplog.records if r.name == "repo.session"]
    assert len(announced) == 1
    assert announced[0].startswith("destroying the catalog: waiting up to 1 s for repo ")
    assert f"pid {open_writer.pid}" in announced[0]
    message = caught.value.message
    assert message.startswith("destroying the catalog: waited 1 s; the catalog is in use by ")
    assert f"pid {open_writer.pid}" in message
    assert "idle in transaction since " in message
    assert "\n" not in message
    assert caught.value.hint is not None
    assert "--terminate-others" in caught.value.hint
    with repo.Repo(config) as r:  # nothing was dropped
        assert r.current("a/b.txt").read_bytes() == b"content"


def test_destroy_may_end_the_sessions_that_hold_the_catalog(
    config: dict[str, Any], open_writer: subprocess.Popen[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("repo.session.EXCLUSIVE_WAIT_SECONDS", 1.0)
    forgotten = _finishes_promptly(lambda: repo.destroy_catalog(config, terminate_others=True))
    assert forgotten == 1  # the writer's uncommitted version was rolled back, not counted
    assert open_writer.stdin is not None
    open_writer.stdin.close()
    open_writer.wait(timeout=60)
    assert open_writer.stderr is not None
    stderr = open_writer.stderr.read()
    assert open_writer.returncode != 0  # its commit found its session ended
    assert "connection to the catalog was lost" in stderr
