"""`FileRecord`: a version as the catalog hands it out, and the one query that reads it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import DateTime, Select, literal_column, select

from .schema import UTCDateTime, files, paths

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

__all__ = ["FileRecord", "record", "records", "select_files"]


class FileRecord(NamedTuple):
    """One row of ``files`` joined with its path.

    A named tuple rather than a frozen dataclass: as immutable, and built from a row in
    a fraction of the time (a `find` may hand out thousands).
    """

    file_id: int
    path_id: int
    path: str
    bucket: str
    key: str
    state: str
    md5: str | None
    size: int | None
    origin: str
    created_at: datetime
    uploaded_at: datetime | None
    published_at: datetime | None
    expired_at: datetime | None
    purge_started_at: datetime | None = None
    #: One of `repo.integrity.VERIFIED_WITH`; None for versions uploaded before it was
    #: recorded, and for versions not uploaded yet.
    verified_with: str | None = None
    #: Permission bits recorded when added (`permissions.MODE_BITS` at most); None: unknown.
    mode: int | None = None
    #: One of `storage_classes.ARCHIVE_CLASSES` once archived, else None; and when moved.
    storage_class: str | None = None
    archived_at: datetime | None = None


_FILE_COLUMNS = (
    files.c.file_id,
    files.c.path_id,
    paths.c.path,
    files.c.bucket,
    files.c.key,
    files.c.state,
    files.c.md5,
    files.c.size,
    files.c.origin,
    files.c.created_at,
    files.c.uploaded_at,
    files.c.published_at,
    files.c.expired_at,
    files.c.purge_started_at,
    files.c.verified_with,
    files.c.mode,
    files.c.storage_class,
    files.c.archived_at,
)


def _aware_in_sql(column: Any) -> Any:
    # PostgreSQL turns the stored UTC time into a ``timestamptz``, which psycopg reads
    # (in C) as an aware datetime in the session's time zone, UTC (see `connection`):
    # no per-value conversion in Python.
    if not isinstance(column.type, UTCDateTime):
        return column
    utc = column.op("AT TIME ZONE", return_type=DateTime(timezone=True))(literal_column("'UTC'"))
    return utc.label(column.name)


_PG_COLUMNS = tuple(_aware_in_sql(c) for c in _FILE_COLUMNS)


def select_files(*, pg: bool = False) -> Select[Any]:
    """Every column of `FileRecord`, in its order; `pg`: the times read the fast way,
    for queries that may return many rows on PostgreSQL."""
    columns = _PG_COLUMNS if pg else _FILE_COLUMNS
    return select(*columns).select_from(files.join(paths, files.c.path_id == paths.c.path_id))


# `record` builds by position: the columns are in the order of the fields, checked here at
# import.
assert [c.name for c in _FILE_COLUMNS] == list(FileRecord._fields)  # noqa: S101


def record(row: Any) -> FileRecord:
    """The record of a row of `select_files`."""
    return FileRecord._make(row)


def records(rows: Sequence[Any]) -> list[FileRecord]:
    """The records of rows of `select_files` (fetched with ``.all()``: one at a time
    costs as much again)."""
    return list(map(FileRecord._make, rows))
