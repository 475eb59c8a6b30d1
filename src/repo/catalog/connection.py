"""Engines, transactions and error translation for the catalog.

One `Database` owns one connection and the user's transaction on it (``Repo.commit()``
ends it). PostgreSQL runs at READ COMMITTED and takes row locks where a rule needs them.

SQLite allows one writer at a time. A deferred transaction that reads and later writes
can fail outright when another process committed in between, so the connection runs
in autocommit mode until the first write, which opens ``BEGIN IMMEDIATE`` and waits
(busy timeout) for the write lock. Reading never holds a lock, so long-lived readers do
not block writers.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from ..errors import CatalogError, ConflictError, RepoError

__all__ = ["Database", "translate_errors"]

logger = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_S = 60
_RETRYABLE_PG = {"40001", "40P01", "55P03"}  # serialization, deadlock, lock not available
_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def _make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        from pathlib import Path

        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            poolclass=NullPool,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
        )

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(
        url,
        # Explicit, whatever the server's default: locking and name interning rely on
        # each statement seeing what other transactions have committed.
        isolation_level="READ COMMITTED",
        pool_pre_ping=True,
        pool_size=2,
        max_overflow=4,
        connect_args={"connect_timeout": 10, "application_name": "repo"},
    )


def engine_for(url: str) -> Engine:
    """Engines are shared per URL within a process (connection pools are per engine)."""
    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = _ENGINES[url] = _make_engine(url)
        return engine


@contextlib.contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Turn SQLAlchemy/driver errors into `RepoError`s that say what to do."""
    try:
        yield
    except RepoError:
        raise
    except IntegrityError as exc:
        raise ConflictError(
            f"{what}: another writer changed the same data ({_short(exc)})",
            hint="roll back and try again",
        ) from exc
    except DBAPIError as exc:
        code = getattr(getattr(exc, "orig", None), "sqlstate", None)
        if code in _RETRYABLE_PG:
            raise ConflictError(
                f"{what}: concurrent update ({_short(exc)})", hint="roll back and try again"
            ) from exc
        if isinstance(exc, OperationalError):
            text_ = _short(exc)
            if "locked" in text_:
                raise CatalogError(
                    f"{what}: the SQLite catalog is locked by another writer",
                    hint="commit or close the other session, or use PostgreSQL for many writers",
                ) from exc
            raise CatalogError(
                f"{what}: catalog database unavailable ({text_})",
                hint="check the 'database' settings and that the server is running",
            ) from exc
        raise CatalogError(f"{what}: {_short(exc)}") from exc
    except SQLAlchemyError as exc:
        raise CatalogError(f"{what}: {_short(exc)}") from exc


def _short(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return (lines[0] if lines else type(orig).__name__)[:300]


class Database:
    """A connection plus the user's open transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = engine_for(url)
        self.dialect = self.engine.dialect.name
        self.is_sqlite = self.dialect == "sqlite"
        self._conn: Connection | None = None
        self._writing = False

    @property
    def conn(self) -> Connection:
        if self._conn is None or self._conn.closed:
            with translate_errors("connecting to the catalog"):
                self._conn = self.engine.connect()
            self._writing = False
        return self._conn

    @property
    def in_write(self) -> bool:
        return self._writing

    def begin_write(self) -> Connection:
        """Make sure the current transaction may write (SQLite: take the write lock)."""
        conn = self.conn
        if self.is_sqlite and not self._writing:
            raw = conn.connection.dbapi_connection
            if raw is not None and not raw.in_transaction:
                with translate_errors("starting a catalog write"):
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
        self._writing = True
        return conn

    def commit(self) -> None:
        if self._conn is None:
            return
        with translate_errors("committing the catalog"):
            self._conn.commit()
        self._writing = False

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

    def side_connection(self) -> contextlib.AbstractContextManager[Connection]:
        """A short autocommitted transaction beside the user's (bookkeeping writes)."""
        return _side(self)

    def lock_schema(self, conn: Connection) -> None:
        """Serialise schema creation between processes."""
        if self.dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(7371207)"))


@contextlib.contextmanager
def _side(db: Database) -> Iterator[Connection]:
    if db.is_sqlite and db.in_write:
        # Our own open write transaction holds SQLite's lock: use it rather than wait on it.
        yield db.conn
        return
    with translate_errors("recording cache use"), db.engine.connect() as conn:
        if db.is_sqlite:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        yield conn
        conn.commit()
