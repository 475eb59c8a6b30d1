"""Rows the catalog hands out, and the one query shape that reads them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select

from .schema import files, paths

__all__ = ["FileRecord", "HostCopy", "record", "select_files"]


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


@dataclass(frozen=True, slots=True)
class HostCopy:
    """A host that holds a verified copy of a file."""

    host: str
    downloaded_at: datetime
    last_access: datetime


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
)


def select_files() -> Select[Any]:
    return select(*_FILE_COLUMNS).select_from(files.join(paths, files.c.path_id == paths.c.path_id))


def record(row: Any) -> FileRecord:
    """A `select_files` row as a record: by position (the columns are the fields, in
    order; a test pins that), which costs a tenth of going by name."""
    return FileRecord(*row)
