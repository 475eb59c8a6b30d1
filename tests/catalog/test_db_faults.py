"""Catalog database faults: lost connections, restarts, deadlocks, an unreachable server.

These tests stop and restart PostgreSQL, so they run on a private cluster of their own
(the session's server is never touched).

The contract (see `repo.catalog.connection`):

- A session with no uncommitted writes notices, before its next statement, that the
  server closed its connection (a restart, a terminated backend) and carries on, on a
  new connection: a restart between operations is invisible. If the connection dies
  while a statement runs, that statement fails with a one-line `CatalogError`; the next
  one reconnects, no rollback needed.
- A session with uncommitted writes that loses its connection has lost its transaction:
  the failing call, and every catalog call after it, raise `CatalogError` (hint: roll
  back and run it again) until `rollback()`; `commit()` never commits half of it.
  Objects it uploaded stay in the store unreferenced: orphans for `gc --orphans`.
- Deadlocks and serialization failures raise `ConflictError` (hint "roll back and try
  again"); the transaction is aborted, so `commit()` then raises instead of silently
  rolling back. Nothing is replayed behind the caller's back: a transaction is the
  caller's code.
- An unreachable server is a `CatalogError` naming the catalog (URL without password).
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from sqlalchemy import create_engine, select, update

import repo
from harness.postgres import PostgresServer
from repo.catalog.schema import files
from repo.catalog.translate import translate_errors

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

pytestmark = pytest.mark.postgres

SECRET = "hunter2-never-printed"
#: Deadlocks are found after this wait (PostgreSQL's default is a second).
DEADLOCK_TIMEOUT = "100ms"
WAIT_S = 20.0


@pytest.fixture(scope="module")
def private_server() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    try:
        with psycopg.connect(server.conninfo(), autocommit=True) as admin:
            admin.execute(f"ALTER SYSTEM SET deadlock_timeout = '{DEADLOCK_TIMEOUT}'")
            # The harness turns it off for speed; a simulated crash would then lose
            # commits the clients were told about (the OS never crashes: fsync may stay off).
            admin.execute("ALTER SYSTEM SET synchronous_commit = on")
            admin.execute("SELECT pg_reload_conf()")
        yield server
    finally:
        server.stop()


class Cluster:
    """One database on the private server, with the means to hurt it."""

    def __init__(self, server: PostgresServer, name: str) -> None:
        self.server = server
        self.name = name
        # Trust authentication ignores the password: it is there to be never shown.
        self.url = f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:{server.port}/{name}"

    def admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.server.conninfo(self.name), autocommit=True)

    def backends(self, condition: str) -> list[int]:
        """Pids of this database's `repo` sessions matching an SQL condition."""
        with self.admin() as admin:
            # `condition` is SQL the tests write, not data.
            rows = admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name LIKE "  # noqa: S608
                f"'repo %%' AND pid <> pg_backend_pid() AND ({condition})",
                (self.name,),
            ).fetchall()
        return [int(r[0]) for r in rows]

    def wait_for_backend(self, condition: str) -> int:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            found = self.backends(condition)
            if len(found) == 1:
                return found[0]
            time.sleep(0.02)
        raise AssertionError(f"no single backend with {condition}: {self.backends(condition)}")

    def terminate(self, pid: int) -> None:
        with self.admin() as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        deadline = time.monotonic() + WAIT_S
        while pid in self.backends("true") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pid not in self.backends("true")

    def started_at(self) -> datetime:
        with self.admin() as admin:
            row = admin.execute("SELECT pg_postmaster_start_time()").fetchone()
        assert row is not None
        started: datetime = row[0]
        return started


@pytest.fixture
def cluster(private_server: PostgresServer) -> Iterator[Cluster]:
    name = "f_" + uuid.uuid4().hex[:12]
    private_server.start_again()  # in case an earlier test left it stopped
    private_server.create_database(name)
    try:
        yield Cluster(private_server, name)
    finally:
        private_server.start_again()
        private_server.drop_database(name)


@pytest.fixture
def config(cluster: Cluster, tmp_path: Path) -> dict[str, Any]:
    store = tmp_path / "store"
    store.mkdir()
    return {
        "database": cluster.url,
        "store": store.as_uri(),
        "local_root": str(tmp_path / "local"),
        "host_name": "faulty-host",
        "orphan_grace_seconds": 0,
    }


def one_line(err: repo.RepoError) -> str:
    text_ = str(err)
    assert "\n" not in text_, text_
    assert len(text_) < 500, text_
    assert err.hint
    assert "\n" not in err.hint
    assert SECRET not in text_ + err.hint
    return text_


# ----------------------------------------- (a) connection killed mid-transaction


@pytest.mark.parametrize("next_call", ["commit", "tag"])
def test_connection_killed_mid_transaction_fails_cleanly_and_writes_nothing(
    config: dict[str, Any], cluster: Cluster, next_call: str
) -> None:
    with repo.Repo(config) as r:
        v1 = r.add_file("doc.txt").touch("v1").publish().tag("kept")
        r.commit()
        # A transaction with uploads, a publish (which expired v1) and tags pending:
        v2 = r.add_file("doc.txt").touch("v2").publish().tag("new")
        v2.tag_path("team=ops")
        other = r.add_file("other.txt").touch("other").upload()
        assert r.get_file("doc.txt") == v2
        cluster.terminate(cluster.wait_for_backend("state = 'idle in transaction'"))

        call = r.commit if next_call == "commit" else lambda: v2.tag("more")
        with pytest.raises(repo.CatalogError) as err:
            call()
        message = one_line(err.value)
        assert "connection to the catalog was lost" in message
        if next_call == "commit":
            assert "nothing was committed" in message
        else:
            # The transaction is gone: nothing may carry on in it, least of all a commit
            # that would make its second half visible without its first.
            with pytest.raises(repo.CatalogError, match="was lost"):
                r.add_file("third.txt")
            with pytest.raises(repo.CatalogError, match="was lost"):
                r.commit()

        r.rollback()
        # Nothing half-written, as another host sees it.
        with repo.Repo(dict(config, host_name="observer")) as seen:
            assert [(f.file_id, f.state) for f in seen.history("doc.txt")] == [
                (v1.file_id, "published")
            ]
            current = seen.get_file("doc.txt")
            assert current is not None
            assert current.tags == ["kept"]
            assert seen.history("other.txt") == []
            assert seen.find(any=["new", "team=ops", "more"], published=False) == []

        # The same Repo goes on working, on a new connection.
        v3 = r.add_file("doc.txt").touch("v3").publish().tag("after")
        r.commit()
        assert r.get_file("doc.txt") == v3
        assert v1.refresh().state == "expired"

        # What the lost transaction uploaded went with its rollback: no orphans are left.
        later = datetime.now(UTC) + timedelta(seconds=5)
        assert r.gc(dry_run=True, orphans=True, now=later).orphans.keys == []
        stored = {o.key for o in r.store.list(r.store.key_prefix)}
        assert not {v2.key, other.key} & stored
        report = r.verify(deep=True)
        assert report.ok
        assert (report.published.checked, report.expired.checked) == (1, 1)
        assert r.get_file("doc.txt") == v3
        assert v3.read_text() == "v3"


# -------------------------------------------------- (b) restarts and lost statements


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_long_lived_repo_carries_on_after_a_server_restart(
    config: dict[str, Any], cluster: Cluster, mode: str
) -> None:
    with repo.Repo(config) as r:
        v1 = r.add_file("a.txt").touch("a1").publish()
        r.commit()
        assert r.get_file("a.txt") == v1  # a read transaction is open, too
        before = cluster.started_at()
        cluster.server.restart(mode)
        assert cluster.started_at() > before

        # The dead connection is noticed before the statement is sent: no error at all.
        found = r.get_file("a.txt")
        assert found == v1
        assert found.read_text() == "a1"
        r.commit()

        cluster.server.restart(mode)
        v2 = r.add_file("a.txt").touch("a2").publish().tag("after-restart")
        r.commit()
        assert r.find(all=["after-restart"]) == [v2]


def test_connection_lost_during_a_read_fails_that_read_and_the_next_reconnects(
    config: dict[str, Any], cluster: Cluster
) -> None:
    with repo.Repo(config) as r:
        v1 = r.add_file("a.txt").touch("a1").publish()
        r.commit()
        outcome: list[BaseException | object] = []

        def read() -> None:
            try:
                outcome.append(r.get_file("a.txt"))
            except BaseException as exc:
                outcome.append(exc)

        with cluster.admin() as blocker:
            # Hold the read up on a lock, then kill its backend while it waits.
            blocker.execute("BEGIN")
            blocker.execute("LOCK TABLE files IN ACCESS EXCLUSIVE MODE")
            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            try:
                cluster.terminate(cluster.wait_for_backend("wait_event_type = 'Lock'"))
            finally:
                blocker.execute("ROLLBACK")
            reader.join(WAIT_S)
        assert not reader.is_alive()
        [err] = outcome
        assert isinstance(err, repo.CatalogError)
        assert "connection to the catalog was lost" in one_line(err)
        # Nothing was pending: no rollback needed, the next call reconnects.
        assert r.get_file("a.txt") == v1


# -------------------------------------------------- (c) deadlocks and serialization


def test_deadlocked_publishers_get_a_retryable_conflict_and_commit_refuses(
    config: dict[str, Any], cluster: Cluster
) -> None:
    a = repo.Repo(dict(config, host_name="host-a"))
    b = repo.Repo(dict(config, host_name="host-b"))
    try:
        for path in ("p.txt", "q.txt"):
            a.add_file(path).touch("seed").publish()
        a.commit()
        # Each publishes one path (locking it), then the other's path: a real deadlock.
        a.add_file("p.txt").touch("a-p").publish()
        b.add_file("q.txt").touch("b-q").publish()
        results: dict[str, list[Any]] = {"a": [], "b": []}

        def second(name: str, r: repo.Repo, path: str) -> None:
            out = results[name]
            try:
                r.add_file(path).touch(f"{name}-{path}").publish()
                r.commit()
                out.append("committed")
            except repo.ConflictError as exc:
                out.append(exc)
                try:
                    r.commit()  # must not report success for an aborted transaction
                except repo.CatalogError as refused:
                    out.append(refused)
                r.rollback()

        threads = [
            threading.Thread(target=second, args=("a", a, "q.txt"), daemon=True),
            threading.Thread(target=second, args=("b", b, "p.txt"), daemon=True),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT_S)
        assert not any(t.is_alive() for t in threads), "deadlock not broken"

        outcomes = sorted(results.items(), key=lambda kv: kv[1][0] != "committed")
        (winner, won), (loser, lost) = outcomes
        assert won == ["committed"], results
        conflict, refused = lost
        assert isinstance(conflict, repo.ConflictError)
        assert "deadlock detected" in one_line(conflict)
        assert conflict.hint == "roll back and try again"
        assert isinstance(refused, repo.CatalogError)
        assert "nothing of it was committed" in one_line(refused)

        # The loser runs its whole transaction again, and it goes through.
        again = a if loser == "a" else b
        first_path, second_path = ("p.txt", "q.txt") if loser == "a" else ("q.txt", "p.txt")
        again.add_file(first_path).touch("retry-1").publish()
        again.add_file(second_path).touch("retry-2").publish()
        again.commit()
        for path in ("p.txt", "q.txt"):
            states = [f.state for f in a.history(path)]
            assert sorted(states) == ["expired"] * (len(states) - 1) + ["published"]
            current = a.get_file(path)
            assert current is not None
            assert current.read_text().startswith("retry-")
        a.rollback()
    finally:
        a.close()
        b.close()
    assert winner != loser


def test_expire_then_publish_takes_turns_with_a_concurrent_publisher(
    config: dict[str, Any], cluster: Cluster
) -> None:
    a = repo.Repo(dict(config, host_name="host-a"))
    b = repo.Repo(dict(config, host_name="host-b"))
    outcome: list[object] = []

    def publish_on_b() -> None:
        try:
            b.add_file("p.txt").touch("b").publish()
            b.commit()
            outcome.append("committed")
        except repo.RepoError as exc:
            outcome.append(exc)
            b.rollback()

    try:
        a.add_file("p.txt").touch("v1").publish()
        a.commit()
        current = a.get_file("p.txt")
        assert current is not None
        current.expire()  # retire it, and publish its successor in the same transaction
        other = threading.Thread(target=publish_on_b, daemon=True)
        other.start()
        cluster.wait_for_backend("wait_event_type = 'Lock'")  # b waits for a
        try:
            a.add_file("p.txt").touch("a").publish()
            a.commit()
        except repo.ConflictError as exc:
            a.rollback()
            outcome.append(exc)
        other.join(WAIT_S)
        assert not other.is_alive()
    finally:
        a.close()
        b.close()
    assert outcome == ["committed"], outcome


def test_a_serialization_failure_is_a_retryable_conflict(
    config: dict[str, Any], cluster: Cluster
) -> None:
    """The library runs at READ COMMITTED, where PostgreSQL raises no serialization
    failures; should one come (a server forcing a stricter default), it is a conflict."""
    with repo.Repo(config) as r:
        file_id = r.add_file("s.txt").touch("s").publish().file_id
    engine = create_engine(cluster.url, isolation_level="REPEATABLE READ")
    try:
        with engine.connect() as first, engine.connect() as second:
            first.execute(select(files.c.state).where(files.c.file_id == file_id)).one()
            second.execute(update(files).where(files.c.file_id == file_id).values(origin="x"))
            second.commit()
            with (
                pytest.raises(repo.ConflictError) as err,
                translate_errors(f"expiring file {file_id}"),
            ):
                first.execute(update(files).where(files.c.file_id == file_id).values(origin="y"))
            first.rollback()
    finally:
        engine.dispose()
    assert "could not serialize access" in one_line(err.value)
    assert err.value.hint == "roll back and try again"


# ------------------------------------------------------- (d) an unreachable server


def test_an_unreachable_server_is_a_clear_error_and_the_repo_recovers(
    config: dict[str, Any], cluster: Cluster
) -> None:
    where = f"postgresql+psycopg://postgres:***@127.0.0.1:{cluster.server.port}/{cluster.name}"
    with repo.Repo(config) as r:
        v1 = r.add_file("a.txt").touch("a1").publish()
        r.commit()
        cluster.server.shut_down()
        try:
            calls: list[Callable[[], object]] = [
                lambda: r.get_file("a.txt"),
                lambda: r.add_file("b.txt"),
            ]
            for call in calls:
                with pytest.raises(repo.CatalogError) as err:
                    call()
                message = one_line(err.value)
                assert f"catalog database unavailable at {where} (" in message
                assert "'database'" in (err.value.hint or "")
            with pytest.raises(repo.CatalogError) as err:
                repo.Repo(dict(config, host_name="newcomer"))
            assert where in one_line(err.value)
        finally:
            cluster.server.start_again()
        assert r.get_file("a.txt") == v1
        r.add_file("b.txt").touch("b").publish()
        r.commit()
        assert [f.path for f in r.list()] == ["a.txt", "b.txt"]


def test_side_transactions_reconnect_after_a_restart(
    config: dict[str, Any], cluster: Cluster
) -> None:
    """Name interning and cache bookkeeping use pooled connections of their own."""
    with repo.Repo(config) as r:
        r.add_file("a.txt").touch("a").publish().tag("one")
        r.commit()
        cluster.server.restart("fast")
        # A new tag and a new path are interned in side transactions.
        fresh = r.add_file("new/path.txt").touch("n").publish().tag("two")
        r.commit()
        assert r.find(all=["two"]) == [fresh]
        with cluster.admin() as admin:
            count = admin.execute("SELECT count(*) FROM file_hosts").fetchone()
        assert count == (2,)
