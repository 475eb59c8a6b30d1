"""Who else is using the catalog: the sessions that hold its locks (PostgreSQL).

Operations that need the catalog to themselves (destroy, restore, migrations) wait a
bounded time for its locks; when that runs out they name the sessions holding them, and
may end those sessions where the database role allows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import text

from .translate import translate_errors

if TYPE_CHECKING:
    from datetime import datetime

    from .connection import Database

__all__ = ["CatalogUser", "lock_holders", "terminate"]

# Sessions of other backends holding any lock in this database: a table lock of a reader
# or writer with a transaction open, or the schema's advisory lock of another admin.
_HOLDERS = text(
    """
    SELECT DISTINCT a.pid, a.application_name, host(a.client_addr) AS client,
           a.state, a.xact_start, a.backend_start
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND a.pid <> pg_backend_pid()
    ORDER BY a.pid
    """
)


@dataclass(frozen=True, slots=True)
class CatalogUser:
    """Another database session holding a lock on the catalog."""

    pid: int
    #: ``repo <host> pid <n>`` for this library's sessions; whatever other clients say.
    application: str
    #: The client's address, None over a local socket.
    client: str | None
    state: str | None
    #: When its open transaction began (None: no transaction).
    since: datetime | None

    def describe(self) -> str:
        who = self.application or "a client"
        where = f" from {self.client}" if self.client else ""
        when = f" since {self.since:%Y-%m-%d %H:%M:%S %Z}" if self.since is not None else ""
        return f"{who}{where} (server pid {self.pid}, {self.state or 'unknown'}{when})"


def lock_holders(db: Database) -> list[CatalogUser]:
    """Other sessions holding locks in the catalog's database (none on SQLite)."""
    if db.is_sqlite:
        return []
    with (
        db.connect("finding who holds the catalog") as conn,
        translate_errors("finding who holds the catalog"),
    ):
        rows = conn.execute(_HOLDERS).all()
    return [CatalogUser(r.pid, r.application_name, r.client, r.state, r.xact_start) for r in rows]


def terminate(db: Database, users: list[CatalogUser]) -> None:
    """End `users`' sessions (their open transactions roll back)."""
    what = "ending the sessions that hold the catalog"
    with db.connect(what) as conn, translate_errors(what):
        for user in users:
            # False when it ended meanwhile; a refusal (not our role, no
            # pg_signal_backend) raises, translated to `PermissionDeniedError`.
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": user.pid})
