"""Catalog backups, the catalog's side: dumping and loading whole tables, the steps of a
restore, and the record of completed backups (the ``backups`` table).

`dump_tables` reads every table in one snapshot (PostgreSQL: a REPEATABLE READ, read-only
transaction; SQLite: one read transaction, which WAL keeps consistent) and hands out rows
as JSON-ready dicts. `load_table` writes such rows back in batches. The format is the
same for both databases, so a backup of one restores into the other.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, delete, func, select, text

from . import tag_index
from .base import CatalogBase
from .schema import (
    UTCDateTime,
    backups,
    file_hosts,
    file_tags,
    files,
    hosts,
    metadata,
    path_tags,
    paths,
    repo_meta,
    tags,
)
from .translate import translate_errors

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = [
    "BACKUP_TABLES",
    "RESTORE_MARKER",
    "BackupRecord",
    "DumpQueries",
    "copy_columns",
    "parse_copy_text",
]

#: In the order they can be loaded (parents before children). ``current_tags`` is not
#: backed up: it is derived from these, and a restore rebuilds it (`rebuild_derived`).
BACKUP_TABLES: tuple[Table, ...] = (
    repo_meta, hosts, paths, tags, files, file_tags, path_tags, file_hosts, backups,
)  # fmt: skip
LOAD_BATCH = 2000
#: The ``repo_meta`` row of a restore that loaded its tables but has not finished (its
#: value: the backup's name). Committed with the load, deleted by the restore's last commit.
RESTORE_MARKER = "restore_incomplete"
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


def _time_columns(table: Table) -> set[str]:
    return {c.name for c in table.columns if isinstance(c.type, UTCDateTime)}


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
                    yield table, "pg-copy-text", _copy_out(raw, table)
            conn.rollback()

    def _rows(self, conn: Any, table: Table) -> Iterator[dict[str, Any]]:
        times = _time_columns(table)
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

    def load_copy_text(self, table: Table, columns: list[str], chunks: Iterable[bytes]) -> None:
        """Load ``pg-copy-text`` content: PostgreSQL's COPY FROM, else parsed rows."""
        if self.db.is_sqlite:
            self.load_table(table, parse_copy_text(table, columns, chunks))
            return
        conn = self.db.begin_write()
        raw = conn.connection.driver_connection
        assert raw is not None  # noqa: S101 - an open connection has one (for mypy)
        cursor = raw.cursor()
        statement = f"COPY {_quoted(table, columns)} FROM STDIN"
        with translate_errors(f"restoring table {table.name}"), cursor.copy(statement) as copy:
            for chunk in chunks:
                copy.write(chunk)

    def load_table(self, table: Table, rows: Iterable[dict[str, Any]]) -> int:
        """Insert rows (as `dump_tables` gives them) into `table`; returns the count."""
        times = _time_columns(table)
        known = {c.name for c in table.columns}
        conn = self.db.begin_write()
        count = 0
        batch: list[dict[str, Any]] = []
        with translate_errors(f"restoring table {table.name}"):
            for doc in rows:
                unknown = set(doc) - known
                if unknown:
                    raise ValueError(f"table {table.name} has no column(s) {sorted(unknown)}")
                for name in times & set(doc):
                    if doc[name] is not None:
                        doc[name] = datetime.fromisoformat(doc[name])
                batch.append(doc)
                if len(batch) >= LOAD_BATCH:
                    conn.execute(table.insert(), batch)
                    count += len(batch)
                    batch = []
            if batch:
                conn.execute(table.insert(), batch)
                count += len(batch)
        return count

    # -- restoring -----------------------------------------------------------------------

    def drop_secondary_indexes(self) -> list[Any]:
        """PostgreSQL: drop the non-unique-constraint indexes before a bulk load (they are
        built once afterwards, much faster than row by row); returns them for
        `create_indexes`. SQLite: nothing."""
        if self.db.is_sqlite:
            return []
        conn = self.db.begin_write()
        dropped: list[Any] = []
        with translate_errors("preparing the catalog for a restore"):
            # Foreign keys too: checked row by row during the load, but in one pass when
            # added back afterwards (as pg_restore does).
            names = [t.name for t in BACKUP_TABLES]
            for table_name, name, definition in conn.execute(
                text(
                    "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) "
                    "FROM pg_constraint c WHERE c.contype = 'f' "
                    "AND c.conrelid::regclass::text = ANY(:tables) ORDER BY 1, 2"
                ),
                {"tables": names},
            ):
                conn.execute(text(f'ALTER TABLE "{table_name}" DROP CONSTRAINT "{name}"'))
                dropped.append((table_name, name, definition))
            for table in BACKUP_TABLES:
                for index in sorted(table.indexes, key=lambda i: str(i.name)):
                    index.drop(conn)
                    dropped.append(index)
        return dropped

    def create_indexes(self, dropped: list[Any]) -> None:
        """Put back what `drop_secondary_indexes` dropped (indexes, then foreign keys)."""
        conn = self.db.begin_write()
        with translate_errors("building the catalog's indexes"):
            for item in dropped:
                if not isinstance(item, tuple):
                    item.create(conn)
            for item in dropped:
                if isinstance(item, tuple):
                    table_name, name, definition = item
                    # The definition comes from PostgreSQL's own catalog, not from input.
                    conn.execute(
                        text(f'ALTER TABLE "{table_name}" ADD CONSTRAINT "{name}" {definition}')
                    )

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


def _quoted(table: Table, columns: list[str]) -> str:
    known = {c.name for c in table.columns}
    unknown = [c for c in columns if c not in known]
    if unknown:
        raise ValueError(f"table {table.name} has no column(s) {unknown}")
    return f'"{table.name}" (' + ", ".join(f'"{c}"' for c in columns) + ")"


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


_UNESCAPE = re.compile(r"\\(.)")
_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def parse_copy_text(
    table: Table, columns: list[str], chunks: Iterable[bytes]
) -> Iterator[dict[str, Any]]:
    """Rows of PostgreSQL COPY text as dicts, values typed for `load_table`."""
    times = _time_columns(table)
    integers = {c.name for c in table.columns if c.type.python_type is int}
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            doc: dict[str, Any] = {}
            for name, field in zip(columns, line.decode("utf-8").split("\t"), strict=True):
                if field == "\\N":
                    doc[name] = None
                    continue
                value = _UNESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), field)
                if name in integers:
                    doc[name] = int(value)
                elif name in times:
                    doc[name] = value.replace(" ", "T")  # load_table parses ISO text
                else:
                    doc[name] = value
            yield doc
