"""A table's content in a backup, read back: its two formats (PostgreSQL's COPY text,
JSON lines from SQLite) as rows, and the ways to put it into a table (COPY, or inserts
in batches), shared by both databases' restores.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .schema import UTCDateTime
from .translate import translate_errors

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from sqlalchemy import Connection, Table

__all__ = [
    "COPY_TEXT",
    "TableContent",
    "content_rows",
    "copy_into",
    "insert_rows",
    "parse_copy_text",
    "quoted",
    "time_columns",
]

#: The format of PostgreSQL's tables in a backup: COPY's text format (a line per row,
#: tab-separated, ``\\N`` for NULL). SQLite's are "jsonl", a JSON object per line.
COPY_TEXT = "pg-copy-text"
LOAD_BATCH = 2000


@dataclass(frozen=True, slots=True)
class TableContent:
    """One table of a backup, downloaded and checked, as a restore hands it over."""

    table: Table
    format: str  #: `COPY_TEXT` (from PostgreSQL) or "jsonl" (from SQLite)
    columns: list[str]  #: `COPY_TEXT`: the columns, in order
    rows: int  #: as its backup says: the largest tables start loading first
    chunks: Callable[[], Iterator[bytes]]  #: its content, uncompressed, in blocks


def time_columns(table: Table) -> set[str]:
    return {c.name for c in table.columns if isinstance(c.type, UTCDateTime)}


def content_rows(content: TableContent) -> Iterator[dict[str, Any]]:
    """A backed-up table's rows as dicts, whatever its format (for `load_table`)."""
    if content.format == COPY_TEXT:
        return parse_copy_text(content.table, content.columns, content.chunks())
    return _parse_json_lines(content.chunks())


def _parse_json_lines(chunks: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                yield json.loads(line)
    if pending.strip():
        yield json.loads(pending)


def insert_rows(conn: Connection, table: Table, rows: Iterable[dict[str, Any]]) -> int:
    """Insert rows (as `content_rows` gives them) into `table`; returns the count."""
    times = time_columns(table)
    known = {c.name for c in table.columns}
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


def copy_into(conn: Connection, content: TableContent, *, freeze: bool = False) -> int:
    """PostgreSQL: load ``COPY_TEXT`` content with COPY FROM; returns the rows copied.

    With `freeze`, the rows are written frozen and their pages marked all-visible, as a
    vacuum would leave them (no reader has to set hint bits later, index-only scans work
    at once). PostgreSQL allows that only into a table created or emptied in the same
    transaction, and every other transaction sees the rows at once: for loading a table
    nothing reads yet.
    """
    raw = conn.connection.driver_connection
    assert raw is not None  # noqa: S101 - an open connection has one (for mypy)
    table = content.table
    options = " WITH (FREEZE)" if freeze else ""
    statement = f"COPY {quoted(table, content.columns)} FROM STDIN{options}"
    with translate_errors(f"restoring table {table.name}"), raw.cursor() as cursor:
        with cursor.copy(statement) as copy:
            for chunk in content.chunks():
                copy.write(chunk)
        return int(cursor.rowcount)


def quoted(table: Table, columns: list[str]) -> str:
    known = {c.name for c in table.columns}
    unknown = [c for c in columns if c not in known]
    if unknown:
        raise ValueError(f"table {table.name} has no column(s) {unknown}")
    return f'"{table.name}" (' + ", ".join(f'"{c}"' for c in columns) + ")"


_UNESCAPE = re.compile(r"\\(.)")
_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def parse_copy_text(
    table: Table, columns: list[str], chunks: Iterable[bytes]
) -> Iterator[dict[str, Any]]:
    """Rows of PostgreSQL COPY text as dicts, values typed for `load_table`."""
    times = time_columns(table)
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
