"""The catalog's foundation: its connection, transactions, schema set-up and the
interning of names.

Every query mixin (see the map in the package docstring) derives from `CatalogBase`. All
statements are SQLAlchemy Core constructs, so every value is a bound parameter; work on
many rows uses one statement (or one executemany) per batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from . import migrations, notices
from .arrays import IN_BATCH
from .connection import Database
from .schema import SCHEMA_VERSION, files, metadata, paths, repo_meta, tags
from .translate import translate_errors

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["CatalogBase"]


class CatalogBase:
    """Connection, transactions, schema and the interning of paths and tags."""

    def __init__(self, url: str) -> None:
        self.db = Database(url)
        # What the open transaction changed, for the change journal (see `replay`).
        self._touched_files: set[int] = set()
        self._touched_paths: set[int] = set()
        self._purged: set[int] = set()
        # Whether the open transaction may have made a current version match a query
        # (published, tagged, untagged, replayed): its commit then wakes waiters.
        self._wake_waiters = False
        #: Called with the journal entry of each commit that changed something, after
        #: the commit (the repository stores it).
        self.on_commit: Callable[[dict[str, Any]], None] | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def ensure_schema(self) -> int:
        """Create the schema in an empty database, or bring an older one up to date."""
        with translate_errors("preparing the catalog"):
            conn = self.db.conn
            version = migrations.current_version(conn)
            if version is not None and version == SCHEMA_VERSION:
                self.db.rollback()
                return version
            self.db.rollback()
            conn = self.db.begin_write()
            self.db.lock_schema(conn)
            version = migrations.upgrade(conn)
            self.db.commit()
            return version

    def schema_version(self) -> int | None:
        """The catalog's schema version, or None when the database holds no catalog."""
        with translate_errors("reading the catalog"):
            try:
                return migrations.current_version(self.db.conn)
            finally:
                self.db.rollback()

    def drop_schema(self) -> int | None:
        """Drop every catalog table; returns how many file versions were forgotten.

        None when there was no catalog. Only the catalog's own tables are dropped.
        """
        with translate_errors("destroying the catalog"):
            conn = self.db.begin_write()
            self.db.lock_schema(conn)
            if migrations.current_version(conn) is None:
                self.db.rollback()
                return None
            forgotten = int(conn.execute(select(func.count()).select_from(files)).scalar_one())
            metadata.drop_all(conn)
            self.db.commit()
            return forgotten

    def repository_id(self) -> str:
        with translate_errors("reading the catalog"):
            value = self.db.conn.execute(
                select(repo_meta.c.value).where(repo_meta.c.name == "repository_id")
            ).scalar_one()
            return str(value)

    def commit(self) -> None:
        self.db.check_commit()  # before the journal entry's queries
        entry = self.journal_entry() if self.on_commit is not None else None
        if self._wake_waiters and self.db.in_write and not self.db.is_sqlite:
            with translate_errors("committing the catalog"):
                notices.notify(self.db.conn)  # delivered by the commit, dropped by a rollback
        self.db.commit()
        self._forget_touched()
        if entry is not None and self.on_commit is not None:
            self.on_commit(entry)

    def journal_entry(self) -> dict[str, Any] | None:
        return None  # provided by `ReplayQueries` (see `replay`)

    def _forget_touched(self) -> None:
        self._touched_files.clear()
        self._touched_paths.clear()
        self._purged.clear()
        self._wake_waiters = False

    def end_read(self) -> None:
        """End a read-only transaction (not the caller's writes, which stay open)."""
        if not self.db.in_write:
            self.db.rollback()

    def rollback(self) -> None:
        self.db.rollback()
        self._forget_touched()

    def close(self) -> None:
        self.db.close()

    def listener(self) -> notices.Listener:
        """A listener for the notices of commits that may wake a waiter (PostgreSQL);
        not connected until `open`."""
        return notices.Listener(self.db)

    # -- dialect helpers -----------------------------------------------------------------

    def _insert(self, table: Any) -> Any:
        if self.db.is_sqlite:
            return sqlite_dialect.insert(table)
        return pg_dialect.insert(table)

    # Paths and tags are interned in short transactions of their own. Created inside the
    # user's transaction, a new name (say today's date tag) would hold a lock on its
    # unique index entry until that transaction ends, and every other host using the
    # same new name would queue behind it. An interned name nobody uses is harmless.

    def _intern(self, table: Any, column: str, names: Sequence[str]) -> None:
        what = "recording names"
        with translate_errors(what), self.db.side_connection(what) as side:
            # Sorted, so that concurrent interning takes index locks in one order.
            side.execute(
                self._insert(table).on_conflict_do_nothing(),
                [{column: n} for n in sorted(set(names))],
            )

    def _path_id(self, conn: Connection, path: str, *, create: bool) -> int | None:
        query = select(paths.c.path_id).where(paths.c.path == path)
        found = conn.execute(query).scalar()
        if found is not None or not create:
            return None if found is None else int(found)
        self._intern(paths, "path", [path])
        return int(conn.execute(query).scalar_one())

    def _tag_ids(self, conn: Connection, names: Sequence[str], *, create: bool) -> dict[str, int]:
        out = self._lookup_tags(conn, names)
        missing = [n for n in names if n not in out]
        if create and missing:
            self._intern(tags, "name", missing)
            out.update(self._lookup_tags(conn, missing))
        return out

    def _lookup_tags(self, conn: Connection, names: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in range(0, len(names), IN_BATCH):
            chunk = list(names[i : i + IN_BATCH])
            for tag_id, name in conn.execute(
                select(tags.c.tag_id, tags.c.name).where(tags.c.name.in_(chunk))
            ):
                out[name] = tag_id
        return out
