"""Wake-up notices for waiters (PostgreSQL ``LISTEN``/``NOTIFY``).

A transaction that publishes a version, or changes tags or replays the change journal
(which can make a current version match a query), sends one notice on `CHANNEL` just
before it commits: PostgreSQL delivers it on commit and drops it on rollback. Only
such transactions send one: every notifying commit in a database takes a brief global
lock, which plain uploads need not pay.

The notice carries nothing (the payload is empty and never read): it only says "look
again", and the waiter re-runs its query. A listener needs a connection of its own
(`Listener`); notices sent while it is not connected are lost, so waiters also poll.
SQLite has no notices: its waiters poll.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ..errors import CatalogError
from ..urls import mask_url
from .translate import short

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from .connection import Database

__all__ = ["CHANNEL", "Listener", "notify"]

logger = logging.getLogger(__name__)

#: One channel per database (PostgreSQL keeps channels per database); a constant
#: identifier, so ``LISTEN`` (which takes no bound parameter) is never built from input.
CHANNEL = "repo_published"
_NOTIFY = text("SELECT pg_notify(:channel, '')")


def notify(conn: Connection) -> None:
    """Queue the notice in `conn`'s open transaction (delivered if it commits)."""
    conn.execute(_NOTIFY, {"channel": CHANNEL})


class Listener:
    """A dedicated autocommit connection that ``LISTEN``s on `CHANNEL`.

    `wait` says whether a notice came; a lost connection is closed and counts as one
    (the caller re-queries, and `open` again makes a new one).
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._raw: Any = None  # the psycopg connection

    @property
    def is_open(self) -> bool:
        return self._raw is not None

    def open(self) -> None:
        """Connect and ``LISTEN``; `CatalogError` if the server cannot be reached."""
        self.close()
        try:
            # Out of the pool for good: a LISTENing connection must never serve a session.
            fairy = self._db.engine.raw_connection()
            raw: Any = fairy.driver_connection
            fairy.detach()
            raw.autocommit = True
            raw.execute(f"LISTEN {CHANNEL}")
        except (SQLAlchemyError, OSError, _psycopg_error()) as exc:
            raise CatalogError(
                f"listening for new files: catalog database unavailable at "
                f"{mask_url(self._db.url)} ({short(exc)})",
                hint="check the 'database' settings and that the server is running",
            ) from exc
        self._raw = raw

    def wait(self, seconds: float) -> bool:
        """Up to `seconds` for a notice (all those already queued are taken together)."""
        raw = self._raw
        if raw is None:
            return False
        try:
            got = any(True for _ in raw.notifies(timeout=max(0.0, seconds), stop_after=1))
            if got:
                # Many commits in a burst: one re-query for all of them.
                for _ in raw.notifies(timeout=0.0):
                    pass
        except _psycopg_error() as exc:
            logger.info("the listening connection was lost (%s); reconnecting", short(exc))
            self.close()
            return True
        return got

    def close(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            with contextlib.suppress(Exception):
                raw.close()


def _psycopg_error() -> type[Exception]:
    import psycopg  # only PostgreSQL catalogs listen; SQLite ones never import it here

    error: type[Exception] = psycopg.Error
    return error
