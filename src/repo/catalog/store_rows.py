"""The repository's stores as the catalog sees them: what each holds, and forgetting a
store that is gone (``files`` by bucket for the versions' own objects, ``replicas`` by
store name for the other copies; docs/replicas.md)."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import delete, func, select

from .base import CatalogBase
from .schema import files, replicas
from .translate import translate_errors

__all__ = ["StoreRowQueries", "StoreRows"]


class StoreRows(NamedTuple):
    """What the catalog records in one bucket (own objects) or store name (copies)."""

    #: Uploaded versions whose own object is there, and their bytes.
    own: int
    own_bytes: int
    #: ``replicas`` rows by state: verified (with their bytes), writing, lost.
    verified: int
    verified_bytes: int
    writing: int
    lost: int


class StoreRowQueries(CatalogBase):
    """Counts of what each store holds, and forgetting a retired store's copies."""

    def own_objects_by_bucket(self) -> dict[str, tuple[int, int]]:
        """Uploaded versions not being purged, and their bytes, by ``files.bucket``."""
        query = (
            select(files.c.bucket, func.count(), func.coalesce(func.sum(files.c.size), 0))
            .where(files.c.md5.is_not(None), files.c.purge_started_at.is_(None))
            .group_by(files.c.bucket)
        )
        with translate_errors("counting the versions in each store"):
            rows = self.db.conn.execute(query).all()
            self.end_read()
        return {str(bucket): (int(n), int(size)) for bucket, n, size in rows}

    def copies_by_store(self) -> dict[str, dict[str, tuple[int, int]]]:
        """``replicas`` rows and their recorded bytes, by store name, then state."""
        query = select(
            replicas.c.store,
            replicas.c.state,
            func.count(),
            func.coalesce(func.sum(replicas.c.size), 0),
        ).group_by(replicas.c.store, replicas.c.state)
        found: dict[str, dict[str, tuple[int, int]]] = {}
        with translate_errors("counting the copies in each store"):
            rows = self.db.conn.execute(query).all()
            self.end_read()
        for store, state, n, size in rows:
            found.setdefault(str(store), {})[str(state)] = (int(n), int(size))
        return found

    def lost_copies(self, *, after_id: int, limit: int) -> list[tuple[int, str, str]]:
        """Copies recorded ``lost`` of uploaded versions GC has not claimed, as (file id,
        store, key), in file id order after `after_id` (for `repo recover`)."""
        query = (
            select(replicas.c.file_id, replicas.c.store, replicas.c.key)
            .join(files, files.c.file_id == replicas.c.file_id)
            .where(
                replicas.c.state == "lost",
                replicas.c.file_id > after_id,
                files.c.md5.is_not(None),
                files.c.purge_started_at.is_(None),
            )
            .order_by(replicas.c.file_id, replicas.c.store)
            .limit(limit)
        )
        with translate_errors("listing copies recorded lost"):
            rows = self.db.conn.execute(query).all()
            self.end_read()
        return [(int(f), str(s), str(k)) for f, s, k in rows]

    def forget_store(self, store: str) -> int:
        """Delete every ``replicas`` row naming `store` (journaled with each version);
        returns how many. The caller has checked that no configured store has the name."""
        with translate_errors(f"forgetting the copies in store {store!r}"):
            conn = self.db.begin_write()
            ids = list(
                conn.execute(select(replicas.c.file_id).where(replicas.c.store == store))
                .scalars()
                .all()
            )
            if ids:
                conn.execute(delete(replicas).where(replicas.c.store == store))
        self._touched_files.update(ids)
        return len(ids)
