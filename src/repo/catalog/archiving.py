"""Archival: recording that a version's object moved to an archival storage class."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import update

from ..errors import NotFoundError, StateError
from .base import CatalogBase
from .records import FileRecord, record, select_files
from .schema import files
from .translate import translate_errors

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["ArchiveQueries"]


class ArchiveQueries(CatalogBase):
    """The storage class of versions, and when they were moved into it."""

    def mark_archived(self, file_id: int, *, storage_class: str, when: datetime) -> FileRecord:
        """Record that `file_id`'s object is now in `storage_class` (checked and moved by
        the caller). Only an uploaded version that garbage collection has not claimed."""
        with translate_errors(f"recording the archival of file {file_id}"):
            conn = self.db.begin_write()
            result = conn.execute(
                update(files)
                .where(
                    files.c.file_id == file_id,
                    files.c.md5.is_not(None),
                    files.c.purge_started_at.is_(None),
                )
                .values(storage_class=storage_class, archived_at=when)
            )
            row = conn.execute(select_files().where(files.c.file_id == file_id)).one_or_none()
        if row is None:
            raise NotFoundError(f"file {file_id} was purged meanwhile; nothing recorded")
        if result.rowcount != 1:
            raise StateError(
                f"file {file_id} is not uploaded, or is being purged: not recorded as archived"
            )
        self._touched_files.add(file_id)
        return record(row)
