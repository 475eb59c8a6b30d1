"""Queries for checking the store against the catalog (`repo verify`, `repo recover`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from .arrays import IN_BATCH
from .records import FileRecord, record, select_files
from .schema import file_hosts, files, hosts
from .translate import translate_errors

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .base import CatalogBase

__all__ = ["holders_of", "versions_to_verify"]


def versions_to_verify(catalog: CatalogBase, *, after_id: int, limit: int) -> list[FileRecord]:
    """The next `limit` versions after `after_id` (by id) whose objects must exist.

    Those are published versions and expired ones that garbage collection has not
    claimed; an expired version that was never uploaded has no object and is left out.
    Keyset paging on ``file_id``, so each page is one indexed range scan.
    """
    with translate_errors("finding files to verify"):
        rows = catalog.db.conn.execute(
            select_files()
            .where(
                files.c.file_id > after_id,
                files.c.state.in_(("published", "expired")),
                files.c.purge_started_at.is_(None),
                files.c.md5.is_not(None),
            )
            .order_by(files.c.file_id)
            .limit(limit)
        )
        return [record(r) for r in rows]


def holders_of(catalog: CatalogBase, file_ids: Sequence[int]) -> dict[int, list[str]]:
    """The hosts the catalog says hold a copy of each version (sorted), one query a batch."""
    out: dict[int, list[str]] = {}
    with translate_errors("reading which hosts hold copies"):
        for i in range(0, len(file_ids), IN_BATCH):
            chunk = list(file_ids[i : i + IN_BATCH])
            rows = catalog.db.conn.execute(
                select(file_hosts.c.file_id, hosts.c.name)
                .join(hosts, hosts.c.host_id == file_hosts.c.host_id)
                .where(file_hosts.c.file_id.in_(chunk))
                .order_by(file_hosts.c.file_id, hosts.c.name)
            )
            for file_id, name in rows:
                out.setdefault(int(file_id), []).append(str(name))
    return out
