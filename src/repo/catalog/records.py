"""`FileRecord`: a version as the catalog hands it out, and the one query that reads it."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, select

from .schema import files, paths

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["FileRecord", "record", "select_files"]


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One row of ``files`` joined with its path."""

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
)


def select_files() -> Select[Any]:
    return select(*_FILE_COLUMNS).select_from(files.join(paths, files.c.path_id == paths.c.path_id))


# `record` builds by position (much cheaper than by name for the thousands of rows a
# `find` may return): the columns are in the order of the fields, checked here at import.
assert [c.name for c in _FILE_COLUMNS] == [f.name for f in fields(FileRecord)]  # noqa: S101


def record(row: Any) -> FileRecord:
    """The record of a row of `select_files`."""
    return FileRecord(*row)
