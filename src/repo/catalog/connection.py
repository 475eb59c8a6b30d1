"""Engines, transactions and error translation for the catalog.

One `Database` owns one connection and the user's transaction on it (``Repo.commit()``
ends it). On both databases the connection runs in autocommit mode until the first
write, which opens the transaction that commit or rollback ends: a session that only
reads never holds one open.

PostgreSQL's write transaction is ``BEGIN ISOLATION LEVEL READ COMMITTED`` and takes row
locks where a rule needs them. A reader left "idle in transaction" would keep ``repo
destroy``, restores and migrations waiting on its locks, and hold back VACUUM; in
autocommit each read sees the latest committed state, as READ COMMITTED would anyway.

SQLite allows one writer at a time. A deferred transaction that reads and later writes
can fail outright when another process committed in between, so its write transaction
is ``BEGIN IMMEDIATE``, which waits (busy timeout) for the write lock. Reading never
holds a lock, so long-lived readers do not block writers.

Faults (PostgreSQL). The session keeps its connection checked out, so the pool's
pre-ping only guards new connections; before each statement of a session with no
uncommitted writes, the idle socket is polled (no round trip), and a connection the
server has closed (a restart, a terminated backend) is replaced by a new one. A
connection lost while a statement runs fails that statement; the next one reconnects.
Once a session with uncommitted writes loses its connection, or a statement of it fails
on the server, its transaction is gone: every further statement and `commit` raise until
`rollback`, so a later commit never makes half of a transaction visible. Nothing is
retried behind the caller's back: a transaction is the caller's code, and only the
caller can run it again. Deadlocks, serialization and lock-timeout failures raise
`ConflictError` (hint: roll back and try again).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import sqlite3
import stat
import threading
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from ..errors import CatalogError
from ..stores.local import make_directories
from ..urls import mask_url
from .translate import AGAIN, aborted, lost, short, translate_errors

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["Database", "translate_errors"]

logger = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_S = 60
#: libpq's PQTRANS_INERROR: the transaction is aborted and COMMIT would roll it back.
_TRANSACTION_INERROR = 3
#: libpq's PQTRANS_IDLE: no transaction open.
_IDLE = 0
_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def _wal_mode(cur: Any) -> None:
    """``PRAGMA journal_mode=WAL``, asked again while the database is locked (within the
    busy timeout). SQLite answers it "locked" at once, without waiting as other
    statements do, while another process's last connection is checkpointing and removing
    the write-ahead log: seen when two processes opened one catalog together."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.01)


def _make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            poolclass=NullPool,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
        )
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):

            @event.listens_for(engine, "do_connect")
            def _sqlite_file(*_args: Any) -> None:
                _create_sqlite_file(database)  # before SQLite would, with the umask's mode

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            _wal_mode(cur)
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(
        url,
        # Reads autocommit; writes open READ COMMITTED themselves (`_begin`).
        isolation_level="AUTOCOMMIT",
        pool_pre_ping=True,
        pool_size=2,
        max_overflow=4,
        connect_args={
            "connect_timeout": 10,
            # Who holds the catalog, as `repo destroy` and `repo restore` name it.
            "application_name": f"repo {socket.gethostname()} pid {os.getpid()}"[:63],
            # JIT-compiling a catalog query costs far more than running it (0.4-0.7 s
            # against milliseconds for `find` on a million files). The URL's own
            # options, if any, are kept. Parallel workers likewise: starting them costs
            # more than the millisecond queries they would share. Times are read in UTC
            # (what the catalog stores), so `records` can let PostgreSQL make them aware.
            "options": (
                f"{parsed.query.get('options', '')} -c jit=off"
                " -c max_parallel_workers_per_gather=0 -c TimeZone=UTC"
            ).strip(),
        },
    )


def _create_sqlite_file(path: str) -> None:
    """Create the catalog file `path` (and its directory) if missing: its owner's alone,
    whatever the umask, or, in a set-group-ID directory, also what that directory gives
    its group (a catalog shared by a group). SQLite gives ``-wal`` and ``-shm`` the mode
    of the database file."""
    if os.path.exists(path):
        return
    directory = os.path.dirname(os.path.abspath(path))
    make_directories(directory)
    mode = os.stat(directory).st_mode
    mode = 0o600 | (mode & 0o060 if mode & stat.S_ISGID else 0)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except FileExistsError:
        return  # made meanwhile
    try:
        os.fchmod(fd, mode)  # exactly: the umask may have taken bits off
    finally:
        os.close(fd)


def engine_for(url: str) -> Engine:
    """Engines are shared per URL within a process (connection pools are per engine)."""
    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = _ENGINES[url] = _make_engine(url)
        return engine


def _server_spoke(conn: Connection, *, settle_ms: int = 0) -> str | None:
    """Did the server send anything on this idle connection? Polls: no round trip.

    None if not. An idle connection has nothing to read unless the server said
    something unasked: almost always that it is going away (shutdown,
    pg_terminate_backend) followed by the end of the stream. ``"closed"`` when that end
    was seen (within `settle_ms` of the first bytes), else ``"spoke"``.
    """
    raw: Any = conn.connection.dbapi_connection
    try:
        fd = raw.fileno()
    except Exception:  # the driver's "connection is closed"
        return "closed"
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    if not poller.poll(0):
        return None
    pgconn = getattr(raw, "pgconn", None)  # psycopg 3: let libpq read it
    if pgconn is None:
        return "spoke"
    for _ in range(3):  # the goodbye, then the end of file
        try:
            pgconn.consume_input()
        except Exception:  # end of file
            return "closed"
        if int(pgconn.status) != 0:  # not CONNECTION_OK
            return "closed"
        if not poller.poll(settle_ms):
            break
    return "spoke"


def _transaction_failed(conn: Connection) -> bool:
    """Did a statement of the open PostgreSQL transaction fail on the server?"""
    raw: Any = conn.connection.dbapi_connection
    info = getattr(raw, "info", None)
    return getattr(info, "transaction_status", None) == _TRANSACTION_INERROR


class Database:
    """A connection plus the user's open transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = engine_for(url)
        self.dialect = self.engine.dialect.name
        self.is_sqlite = self.dialect == "sqlite"
        self._conn: Connection | None = None
        self._writing = False
        #: PostgreSQL: how long a write transaction waits for a lock before it fails with
        #: `CatalogBusyError` (None: as long as it takes). Operations that need the
        #: catalog to themselves (destroy, restore, migrations) set it.
        self.lock_wait_seconds: float | None = None

    @property
    def conn(self) -> Connection:
        """The session's connection, replaced first if it was lost and nothing is pending."""
        conn = self._conn
        if conn is None or conn.closed:
            self._writing = False
            conn = self._conn = self.connect("connecting to the catalog")
        elif self._writing:
            if conn.invalidated:
                raise lost("using the catalog")
        elif conn.invalidated or (not self.is_sqlite and _server_spoke(conn)):
            # Nothing uncommitted rides on it (reads see each statement's snapshot at
            # READ COMMITTED anyway): carry on, on a new connection.
            logger.info("the catalog connection was lost or closed by the server; reconnecting")
            self._drop()
            conn = self._conn = self.connect("reconnecting to the catalog")
        return conn

    def connect(self, what: str) -> Connection:
        """A new connection; failing, an error that names the catalog (never a password)."""
        try:
            return self.engine.connect()
        except DBAPIError as exc:
            where = mask_url(self.url)
            raise CatalogError(
                f"{what}: catalog database unavailable at {where} ({short(exc)})",
                hint="check the 'database' settings and that the server is running",
            ) from exc
        except SQLAlchemyError as exc:
            raise CatalogError(f"{what}: {short(exc)}") from exc

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._conn.invalidate()
                self._conn.close()
            self._conn = None
        self._writing = False

    @property
    def in_write(self) -> bool:
        return self._writing

    def begin_write(self) -> Connection:
        """Open the write transaction if it is not open yet (SQLite: take the write lock)."""
        conn = self.conn
        if not self._writing:
            _begin(
                conn,
                sqlite=self.is_sqlite,
                what="starting a catalog write",
                lock_wait_seconds=self.lock_wait_seconds,
            )
        self._writing = True
        return conn

    def commit(self) -> None:
        """Commit, or raise, leaving the transaction for `rollback`, if it cannot be whole.

        On PostgreSQL a COMMIT after a failed statement silently rolls back, and a
        connection lost before the COMMIT was sent took the transaction with it: both
        raise. A connection lost during the COMMIT leaves its outcome unknown.
        """
        conn = self._conn
        if conn is None:
            return
        what = "committing the catalog"
        if not self._writing:
            if conn.invalidated:  # nothing to commit, nothing lost
                self._drop()
                return
        else:
            self.check_commit()
        try:
            with translate_errors(what):
                conn.commit()
        except CatalogError as exc:
            if not conn.invalidated:
                raise
            if not self._writing:
                self._drop()
                return
            raise CatalogError(
                f"{what}: the connection to the catalog was lost during the commit: whether "
                "it took effect is unknown",
                hint="roll back, check what is there (e.g. `repo show PATH`), then do what "
                "is missing again",
            ) from exc.__cause__
        self._writing = False

    def check_commit(self) -> None:
        """Raise if the open write transaction can no longer be committed whole."""
        conn = self._conn
        if conn is None or not self._writing:
            return
        what = "committing the catalog"
        if conn.invalidated:
            raise lost(what)
        if self.is_sqlite:
            return
        if _server_spoke(conn, settle_ms=100) == "closed":
            conn.invalidate()
            raise CatalogError(
                f"{what}: the connection to the catalog was lost before the commit; "
                "nothing was committed",
                hint=AGAIN,
            )
        if _transaction_failed(conn):
            raise aborted(what)

    def rollback(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.rollback()
        except SQLAlchemyError:
            logger.warning("rollback failed; dropping the connection", exc_info=True)
            self._conn.invalidate()
        self._writing = False

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._conn.rollback()
                self._conn.close()
            self._conn = None
            self._writing = False

    def side_connection(
        self, what: str = "recording cache use"
    ) -> contextlib.AbstractContextManager[Connection]:
        """A short autocommitted transaction beside the user's (bookkeeping writes)."""
        return _side(self, what)

    def lock_schema(self, conn: Connection) -> None:
        """Serialise schema creation between processes."""
        if self.dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(7371207)"))


@contextlib.contextmanager
def _side(db: Database, what: str) -> Iterator[Connection]:
    if db.is_sqlite and db.in_write:
        # Our own open write transaction holds SQLite's lock: use it rather than wait on it.
        yield db.conn
        return
    with db.connect(what) as conn, translate_errors(what):
        _begin(conn, sqlite=db.is_sqlite, what=what)
        yield conn
        conn.commit()


def _begin(
    conn: Connection, *, sqlite: bool, what: str, lock_wait_seconds: float | None = None
) -> None:
    """Open a write transaction on `conn` (in autocommit mode) unless one is open."""
    raw: Any = conn.connection.dbapi_connection
    if sqlite:
        if raw is not None and not raw.in_transaction:
            with translate_errors(what):
                conn.exec_driver_sql("BEGIN IMMEDIATE")
        return
    if getattr(getattr(raw, "info", None), "transaction_status", _IDLE) == _IDLE:
        with translate_errors(what):
            conn.exec_driver_sql("BEGIN ISOLATION LEVEL READ COMMITTED")
            if lock_wait_seconds is not None:
                # For this transaction only; a lock not granted in time is SQLSTATE 55P03.
                wait = f"{max(1, round(lock_wait_seconds * 1000))}ms"
                conn.execute(text("SELECT set_config('lock_timeout', :wait, true)"), {"wait": wait})
