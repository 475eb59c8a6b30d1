"""Catalog backups, the catalog's side: dumping and loading whole tables, the steps of a
restore, and the record of completed backups (the ``backups`` table).

`dump_tables` reads every table in one snapshot (PostgreSQL: a REPEATABLE READ, read-only
transaction; SQLite: one read transaction, which WAL keeps consistent) and hands out rows
as JSON-ready dicts. `load_table` writes such rows back in batches. The format is the
same for both databases, so a backup of one restores into the other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, delete, func, select, text

from . import loading, migrations, roles, tag_index
from .base import CatalogBase
from .content import (
    COPY_TEXT,
    TableContent,
    content_rows,
    copy_into,
    insert_rows,
    time_columns,
)
from .schema import (
    backups,
    current_tags,
    file_hosts,
    file_tags,
    files,
    hosts,
    metadata,
    path_tags,
    paths,
    replicas,
    repo_meta,
    tags,
)
from .translate import translate_errors

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from datetime import datetime

    from sqlalchemy import Connection

__all__ = [
    "BACKUP_TABLES",
    "RESTORE_MARKER",
    "BackupRecord",
    "DumpQueries",
    "copy_columns",
]

#: In the order they can be loaded (parents before children). ``current_tags`` is not
#: backed up: it is derived from these, and a restore rebuilds it (`rebuild_derived`).
BACKUP_TABLES: tuple[Table, ...] = (
    repo_meta, hosts, paths, tags, files, file_tags, path_tags, file_hosts, backups, replicas,
)  # fmt: skip
#: The ``repo_meta`` row of a restore that loaded its tables but has not finished (its
#: value: the backup's name). Committed with the load, deleted by the restore's last commit.
RESTORE_MARKER = "restore_incomplete"
#: ``repo_meta`` rows a restore keeps from the fresh schema rather than the backup.
_OWN_META = ("schema_version", RESTORE_MARKER)
#: Tables whose integer primary key is generated (PostgreSQL sequences to move on).
_SERIAL = {"hosts": "host_id", "paths": "path_id", "tags": "tag_id", "files": "file_id",
           "backups": "backup_id"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class BackupRecord:
    """A catalog backup recorded in the catalog."""

    name: str
    taken_at: datetime
    completed_at: datetime | None
    location: str


class DumpQueries(CatalogBase):
    """Backing up and restoring the catalog, and recording the backups taken."""

    # -- the record of backups -----------------------------------------------------------

    def record_backup(
        self, name: str, *, taken_at: datetime, completed_at: datetime | None, location: str = ""
    ) -> None:
        with translate_errors("recording a backup"):
            conn = self.db.begin_write()
            conn.execute(
                backups.insert().values(
                    name=name, taken_at=taken_at, completed_at=completed_at, location=location
                )
            )

    def completed_backups(self) -> list[BackupRecord]:
        """Completed backups, newest snapshot first."""
        with translate_errors("reading backups"):
            rows = self.db.conn.execute(
                select(
                    backups.c.name, backups.c.taken_at, backups.c.completed_at, backups.c.location
                )
                .where(backups.c.completed_at.is_not(None))
                .order_by(backups.c.taken_at.desc(), backups.c.backup_id.desc())
            )
            return [BackupRecord(*r) for r in rows]

    def forget_backup(self, name: str) -> None:
        with translate_errors("forgetting a backup"):
            conn = self.db.begin_write()
            conn.execute(delete(backups).where(backups.c.name == name))

    # -- dump and load -------------------------------------------------------------------

    def dump_tables(self) -> Iterator[tuple[Table, str, Iterator[bytes]]]:
        """(table, format, content) for every catalog table, all from one snapshot.

        PostgreSQL tables come as ``COPY`` text (``pg-copy-text``: one line per row,
        tab-separated, ``\\N`` for NULL), SQLite ones as JSON lines (``jsonl``). Both
        are a line per row. Consume each table's content before asking for the next.
        """
        with translate_errors("reading the catalog for a backup"), self.db.engine.connect() as conn:
            if self.db.is_sqlite:
                conn.exec_driver_sql("BEGIN")
                for table in BACKUP_TABLES:
                    yield table, "jsonl", _json_lines(self._rows(conn, table))
            else:
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
                conn.execute(text("SET TRANSACTION READ ONLY"))
                raw = conn.connection.driver_connection
                for table in BACKUP_TABLES:
                    yield table, COPY_TEXT, _copy_out(raw, table)
            conn.rollback()

    def _rows(self, conn: Any, table: Table) -> Iterator[dict[str, Any]]:
        times = time_columns(table)
        key = list(table.primary_key.columns)
        result = conn.execution_options(stream_results=True, yield_per=5000).execute(
            select(table).order_by(*key)
        )
        for row in result.mappings():
            doc = dict(row)
            for name in times:
                if doc[name] is not None:
                    doc[name] = doc[name].isoformat()
            yield doc

    def load_table(self, table: Table, rows: Iterable[dict[str, Any]]) -> int:
        """Insert rows (as `dump_tables` gives them) into `table`; returns the count."""
        return insert_rows(self.db.begin_write(), table, rows)

    # -- restoring -----------------------------------------------------------------------

    def load_backup(self, backup: str, contents: Sequence[TableContent]) -> dict[str, int]:
        """Replace the catalog with a backup's tables; returns the rows loaded per table.

        The old catalog, if any, stays until the new tables are committed, and they are
        committed with the marker of an unfinished restore (`RESTORE_MARKER`, whose
        value is `backup`), which only the restore's last commit removes. SQLite loads
        everything in that one transaction. PostgreSQL commits the tables empty and
        bare in it, then fills and builds them on several connections (`loading`);
        the caller still commits the sequences (`reset_sequences`).
        """
        conn = self.db.begin_write()
        with translate_errors("preparing the catalog for a restore"):
            self.db.lock_schema(conn)
            # Grants live on the tables: the roles `repo create --roles` made keep their
            # rights through the restore only if they are given them again.
            granted: list[str] = []
            if migrations.current_version(conn) is not None:
                granted = [] if self.db.is_sqlite else roles.granted_bases(conn)
                metadata.drop_all(conn)
            migrations.upgrade(conn)
            for base in granted:
                roles.regrant(conn, base)
        # The fresh schema's own repo_meta rows stay, except the identity, restored here.
        self.clear_identity()
        self.mark_restore_started(backup)
        rows: dict[str, int] = {}
        for content in contents:
            if content.table is repo_meta:
                kept = (r for r in content_rows(content) if r["name"] not in _OWN_META)
                rows[repo_meta.name] = self.load_table(repo_meta, kept)
        rest = [c for c in contents if c.table is not repo_meta]
        if self.db.is_sqlite:
            for content in rest:
                rows[content.table.name] = insert_rows(conn, content.table, content_rows(content))
            self.rebuild_derived()
            return rows
        with translate_errors("preparing the catalog for a restore"):
            built = loading.deferrable(conn, [t.name for t in metadata.sorted_tables])
            loading.strip(conn, built)
        self.db.commit()
        loads = {c.table.name: (_filler(c, rows), c.rows) for c in rest}
        derived = {current_tags.name: (_derive, list(loads))}
        loading.run_tasks(self.db.url, loading.plan(loads, built, derived))
        return rows

    def rebuild_derived(self) -> int:
        """Derive ``current_tags`` from the loaded tables (backups leave it out); returns
        its row count."""
        conn = self.db.begin_write()
        with translate_errors("indexing the current files' tags"):
            count = tag_index.rebuild(conn)
            if not self.db.is_sqlite:
                conn.execute(text("ANALYZE current_tags"))
            return count

    def clear_identity(self) -> None:
        """Remove the identity rows of ``repo_meta`` (a restore loads the backup's)."""
        conn = self.db.begin_write()
        with translate_errors("preparing the catalog for a restore"):
            conn.execute(
                delete(repo_meta).where(repo_meta.c.name.not_in(["schema_version", RESTORE_MARKER]))
            )

    def mark_restore_started(self, backup: str) -> None:
        """Record, in the open write transaction, that a restore from `backup` is under way."""
        conn = self.db.begin_write()
        with translate_errors("marking the catalog as being restored"):
            conn.execute(delete(repo_meta).where(repo_meta.c.name == RESTORE_MARKER))
            conn.execute(repo_meta.insert().values(name=RESTORE_MARKER, value=backup))

    def mark_restore_finished(self) -> None:
        """Remove the marker of `mark_restore_started` (in the open write transaction)."""
        conn = self.db.begin_write()
        with translate_errors("marking the restore as finished"):
            conn.execute(delete(repo_meta).where(repo_meta.c.name == RESTORE_MARKER))

    def unfinished_restore(self) -> str | None:
        """The backup a restore that never finished was loading, or None."""
        return self.identity()[1]

    def identity(self) -> tuple[str, str | None]:
        """(repository id, backup of an unfinished restore or None), in one query.

        Opening a repository asks this, so the check for a half-restored catalog costs
        nothing extra. The repository id is "" where there is none (mid-restore).
        """
        names = ["repository_id", RESTORE_MARKER]
        with translate_errors("reading the catalog"):
            query = select(repo_meta.c.name, repo_meta.c.value).where(repo_meta.c.name.in_(names))
            found = {name: value for name, value in self.db.conn.execute(query)}
            self.end_read()
        return str(found.get("repository_id", "")), found.get(RESTORE_MARKER)

    def reset_sequences(self) -> None:
        """After loading explicit ids, make PostgreSQL hand out ids above them."""
        if self.db.is_sqlite:
            return  # AUTOINCREMENT and rowids follow the largest id inserted
        conn = self.db.begin_write()
        with translate_errors("resetting id sequences"):
            for name, column in _SERIAL.items():
                table = metadata.tables[name]
                top = conn.execute(select(func.max(table.c[column]))).scalar()
                conn.execute(
                    text("SELECT setval(pg_get_serial_sequence(:t, :c), :v, :called)"),
                    {"t": name, "c": column, "v": top or 1, "called": top is not None},
                )

    def has_data(self) -> bool:
        """Whether the catalog lists any path or version."""
        with translate_errors("reading the catalog"):
            conn = self.db.conn
            found = conn.execute(select(paths.c.path_id).limit(1)).first() is not None
            found = found or conn.execute(select(files.c.file_id).limit(1)).first() is not None
            found = found or conn.execute(select(tags.c.tag_id).limit(1)).first() is not None
            self.end_read()
            return found


def _filler(content: TableContent, counts: dict[str, int]) -> Callable[[Connection], None]:
    """A load task's work: COPY FROM for ``pg-copy-text``, batched inserts otherwise."""
    table = content.table

    def fill(conn: Connection) -> None:
        if content.format == COPY_TEXT:
            # Emptied (it is empty already) in this transaction, so COPY may freeze.
            conn.execute(text(f'TRUNCATE "{table.name}"'))
            counts[table.name] = copy_into(conn, content, freeze=True)
        else:
            counts[table.name] = insert_rows(conn, table, content_rows(content))

    return fill


def _derive(conn: Connection) -> None:
    tag_index.rebuild(conn)
    conn.execute(text("ANALYZE current_tags"))


def copy_columns(table: Table) -> list[str]:
    return [c.name for c in table.columns]


def _copy_out(raw: Any, table: Table) -> Iterator[bytes]:
    cursor = raw.cursor()
    order = ", ".join(f'"{c.name}"' for c in table.primary_key.columns)
    cols = ", ".join(f'"{c}"' for c in copy_columns(table))
    # Identifiers of the catalog's own tables, never input; COPY takes no parameters.
    query = f'COPY (SELECT {cols} FROM "{table.name}" ORDER BY {order}) TO STDOUT'  # noqa: S608
    # psycopg hands COPY out a row at a time; hashing and compressing ~1 MiB at a time
    # instead costs far less Python per row.
    pending = bytearray()
    with cursor.copy(query) as copy:
        for block in copy:
            pending += block
            if len(pending) >= 1 << 20:
                yield bytes(pending)
                pending.clear()
    if pending:
        yield bytes(pending)


def _json_lines(rows: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    pending: list[bytes] = []
    size = 0
    for row in rows:
        line = encode(row).encode() + b"\n"
        pending.append(line)
        size += len(line)
        if size >= 1 << 20:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)
