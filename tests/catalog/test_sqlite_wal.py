"""Opening an embedded (SQLite) catalog while another process holds it.

``PRAGMA journal_mode=WAL``, run on every new connection, is answered "database is
locked" at once, not after the busy timeout, while another connection holds the database
exclusively (another process's last connection checkpointing the log, say): seen in CI as
a GC process failing to open a catalog a publisher was opening. It is asked again.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import TYPE_CHECKING

import pytest

from repo.catalog import connection

if TYPE_CHECKING:
    from pathlib import Path


def _held(path: Path, seconds: float) -> threading.Thread:
    """Hold `path` exclusively (rollback journal) for `seconds`, in a thread."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE IF NOT EXISTS t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO t VALUES (1)")

    def release() -> None:
        time.sleep(seconds)
        holder.execute("COMMIT")
        holder.close()

    thread = threading.Thread(target=release)
    thread.start()
    return thread


def test_wal_mode_waits_for_an_exclusive_holder_instead_of_failing(tmp_path: Path) -> None:
    path = tmp_path / "catalog.db"
    thread = _held(path, 0.3)
    try:
        opener = sqlite3.connect(path, timeout=0, isolation_level=None)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            opener.execute("PRAGMA journal_mode=WAL")  # what a single try meets
        connection._wal_mode(opener.cursor())
        assert opener.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert opener.execute("SELECT x FROM t").fetchall() == [(1,)]
        opener.close()
    finally:
        thread.join()


def test_wal_mode_gives_up_at_the_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection, "SQLITE_BUSY_TIMEOUT_S", 0.05)
    path = tmp_path / "catalog.db"
    thread = _held(path, 0.5)
    try:
        opener = sqlite3.connect(path, timeout=0, isolation_level=None)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            connection._wal_mode(opener.cursor())
        opener.close()
    finally:
        thread.join()
