"""Claims and verifications of copies, many at once in one transaction each (`repo
replicate`), or one (`claim_replica`, `replica_verified`: the same, for one copy).

The rules (docs/replicas.md): a claim locks the version's ``files`` row against garbage
collection's claim and records the copy ``writing`` before a byte is sent; a
verification counts only if the row still names the key written. A batch costs one
commit and one journal object, not two per copy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import select, update

from .arrays import IN_BATCH
from .base import CatalogBase
from .schema import files, replicas
from .translate import translate_errors

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

__all__ = ["CopyClaim", "CopyVerified", "ReplicaBatchQueries"]


class CopyClaim(NamedTuple):
    """A copy about to be written: version, store name, key."""

    file_id: int
    store: str
    key: str


class CopyVerified(NamedTuple):
    """A copy checked at its destination, and what vouched for it."""

    file_id: int
    store: str
    key: str
    md5: str
    size: int
    verified_with: str


class ReplicaBatchQueries(CatalogBase):
    """`claim_replicas` and `replicas_verified`: `replicas`' claim and verification, batched."""

    def claim_replica(self, file_id: int, store: str, key: str, *, when: datetime) -> bool:
        """Record that a copy of `file_id` is about to be written to `key` in `store`
        (``writing``), before a byte is sent: a process killed meanwhile leaves a row that
        names the object. False, and nothing recorded, when the version is not uploaded,
        is claimed by garbage collection, or is gone (`claim_replicas` of one)."""
        return bool(self.claim_replicas([CopyClaim(file_id, store, key)], when=when))

    def replica_verified(
        self,
        file_id: int,
        store: str,
        key: str,
        *,
        md5: str,
        size: int,
        verified_with: str,
        when: datetime,
    ) -> bool:
        """Record that the copy at `key` in `store` was checked at the destination. False
        when its row is gone or names another key (GC took the version meanwhile)."""
        done = CopyVerified(file_id, store, key, md5, size, verified_with)
        return self.replicas_verified([done], when=when)[0]

    def claim_replicas(
        self, claims: Sequence[CopyClaim], *, when: datetime
    ) -> dict[tuple[int, str], str | None]:
        """Record each copy ``writing`` (as `claim_replica`), in the caller's transaction.

        Returns the copies claimed, by (file id, store), each with the state its row had
        before (None: no row, so nothing can be at its key yet). Copies of versions that
        are not uploaded, are claimed by garbage collection, or are gone, are left out and
        nothing is recorded for them. The versions' rows are locked in id order (GC's
        claim passes over locked rows; two claimers take turns, never deadlock).
        """
        wanted = sorted({c.file_id for c in claims})
        if not wanted:
            return {}
        with translate_errors(f"claiming {len(claims)} copies"):
            conn = self.db.begin_write()
            live: set[int] = set()
            before: dict[tuple[int, str], str] = {}
            for i in range(0, len(wanted), IN_BATCH):
                chunk = wanted[i : i + IN_BATCH]
                live.update(
                    conn.execute(
                        select(files.c.file_id)
                        .where(
                            files.c.file_id.in_(chunk),
                            files.c.md5.is_not(None),
                            files.c.purge_started_at.is_(None),
                        )
                        .order_by(files.c.file_id)
                        .with_for_update()
                    ).scalars()
                )
                rows = conn.execute(
                    select(replicas.c.file_id, replicas.c.store, replicas.c.state).where(
                        replicas.c.file_id.in_(chunk)
                    )
                )
                before.update({(r.file_id, r.store): r.state for r in rows})
            chosen = [c for c in claims if c.file_id in live]
            if chosen:
                ins = self._insert(replicas)
                values: dict[str, Any] = {
                    "key": ins.excluded.key,
                    "state": "writing",
                    "size": None,
                    "md5": None,
                    "verified_with": None,
                    "written_at": when,
                    "verified_at": None,
                    "lost_at": None,
                }
                conn.execute(
                    ins.on_conflict_do_update(
                        index_elements=[replicas.c.file_id, replicas.c.store], set_=values
                    ),
                    [
                        {
                            "file_id": c.file_id,
                            "store": c.store,
                            "key": c.key,
                            "state": "writing",
                            "written_at": when,
                        }
                        for c in chosen
                    ],
                )
        self._touched_files.update(c.file_id for c in chosen)
        return {(c.file_id, c.store): before.get((c.file_id, c.store)) for c in chosen}

    def replicas_verified(self, done: Sequence[CopyVerified], *, when: datetime) -> list[bool]:
        """Record each copy verified (as `replica_verified`), in the caller's transaction;
        for each, whether its row still named that key (False: GC took the version
        meanwhile, and the object just written must be deleted)."""
        found: list[bool] = []
        if not done:
            return found
        with translate_errors(f"recording {len(done)} verified copies"):
            conn = self.db.begin_write()
            for copy in done:
                result = conn.execute(
                    update(replicas)
                    .where(
                        replicas.c.file_id == copy.file_id,
                        replicas.c.store == copy.store,
                        replicas.c.key == copy.key,
                    )
                    .values(
                        state="verified",
                        md5=copy.md5,
                        size=copy.size,
                        verified_with=copy.verified_with,
                        verified_at=when,
                        lost_at=None,
                    )
                )
                found.append(result.rowcount == 1)
        self._touched_files.update(c.file_id for c, ok in zip(done, found, strict=True) if ok)
        return found
