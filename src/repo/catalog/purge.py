"""Garbage collection: which versions may go, claiming them, and forgetting their rows.

Purging is a claim, then deletion: `claim_for_purge` stamps ``purge_started_at`` with a
conditional update that re-checks every rule in its WHERE clause, and `publish` and
`expire` only match rows without the stamp. Whichever commits first wins the row, so a
version that is being published is never purged, and a claimed version is never
published. Objects are deleted only after the claim is committed; rows only after their
objects are gone. A claim left behind by an interrupted run is finished by the next.

`claim_regardless` is the same claim without the rules, for `repo purge` (`repo.erase`):
a person chose the versions, whatever their state.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, delete, func, or_, select, text, update

from . import tag_index
from .arrays import IN_BATCH, among
from .base import CatalogBase
from .records import FileRecord, record, select_files
from .schema import backups, file_hosts, file_tags, files, paths
from .translate import translate_errors

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["PurgeQueries"]

_FOREVER = datetime(9999, 12, 31, tzinfo=UTC)


class PurgeQueries(CatalogBase):
    """Choosing, claiming and forgetting the versions garbage collection purges."""

    def expired_cutoff(self, backups_needed: int) -> datetime | None:
        """Files expired before this time have been in `backups_needed` completed backups
        taken since (None: not enough backups yet, so no expired file may go)."""
        if backups_needed <= 0:
            return _FOREVER
        with translate_errors("reading backups"):
            value = self.db.conn.execute(
                select(backups.c.taken_at)
                .where(backups.c.completed_at.is_not(None))
                .order_by(backups.c.taken_at.desc())
                .limit(1)
                .offset(backups_needed - 1)
            ).scalar()
        return value

    def _purge_rule(self, unpublished_before: datetime, expired_before: datetime | None) -> Any:
        rule = and_(files.c.state == "unpublished", files.c.created_at < unpublished_before)
        if expired_before is not None:
            rule = or_(rule, and_(files.c.state == "expired", files.c.expired_at < expired_before))
        return and_(files.c.purge_started_at.is_(None), rule)

    def purge_candidates(
        self, *, unpublished_before: datetime, expired_before: datetime | None
    ) -> list[FileRecord]:
        """Versions the rules allow to purge, not yet claimed (ordered by id)."""
        with translate_errors("finding files to purge"):
            rows = self.db.conn.execute(
                select_files()
                .where(self._purge_rule(unpublished_before, expired_before))
                .order_by(files.c.file_id)
            )
            return [record(r) for r in rows]

    def count_waiting_for_backups(self, *, expired_before: datetime) -> tuple[int, int]:
        """Expired versions past their TTL that wait only for backups: (count, bytes)."""
        with translate_errors("counting expired files"):
            row = self.db.conn.execute(
                select(func.count(), func.coalesce(func.sum(files.c.size), 0)).where(
                    files.c.state == "expired",
                    files.c.purge_started_at.is_(None),
                    files.c.expired_at < expired_before,
                )
            ).one()
            return int(row[0]), int(row[1])

    def count_waiting_for_ttl(
        self, *, unpublished_before: datetime, expired_before: datetime
    ) -> tuple[int, int]:
        """Versions gc keeps for their TTL: (unpublished ones younger than theirs,
        expired ones expired more recently than theirs)."""
        with translate_errors("counting files within their TTL"):
            unclaimed = files.c.purge_started_at.is_(None)
            young = self.db.conn.execute(
                select(func.count()).where(
                    files.c.state == "unpublished",
                    unclaimed,
                    files.c.created_at >= unpublished_before,
                )
            ).scalar_one()
            recent = self.db.conn.execute(
                select(func.count()).where(
                    files.c.state == "expired",
                    unclaimed,
                    files.c.expired_at >= expired_before,
                )
            ).scalar_one()
            return int(young), int(recent)

    def claim_for_purge(
        self,
        file_ids: Sequence[int],
        *,
        now: datetime,
        unpublished_before: datetime,
        expired_before: datetime | None,
    ) -> list[FileRecord]:
        """Claim these versions if the rules still allow it; returns those claimed.

        The caller commits before deleting any object.
        """
        claimed: list[FileRecord] = []
        with translate_errors("claiming files to purge"):
            conn = self.db.begin_write()
            pg = not self.db.is_sqlite
            step = self._id_step(file_ids)
            for i in range(0, len(file_ids), step):
                chunk = list(file_ids[i : i + step])
                rule = self._purge_rule(unpublished_before, expired_before)
                if pg:
                    # Lock in id order and pass over rows another session holds (a
                    # publisher mid-publish, say): an UPDATE would lock them in whatever
                    # order its plan reads them and wait, and a publisher waiting on a
                    # row claimed earlier in that same statement makes a deadlock. A
                    # row passed over is for the next run to consider.
                    chunk = list(
                        conn.execute(
                            select(files.c.file_id)
                            .where(among(files.c.file_id, chunk, postgres=True), rule)
                            .order_by(files.c.file_id)
                            .with_for_update(skip_locked=True)
                        ).scalars()
                    )
                    if not chunk:
                        continue
                ids = conn.execute(
                    update(files)
                    .where(among(files.c.file_id, chunk, postgres=pg), rule)
                    .values(purge_started_at=now)
                    .returning(files.c.file_id)
                ).scalars()
                claimed += self._records(list(ids))
        self._touched_files.update(r.file_id for r in claimed)
        return claimed

    def claim_regardless(self, file_ids: Sequence[int], *, now: datetime) -> list[FileRecord]:
        """Claim these versions for purging whatever their state; returns every one of
        them that exists, claimed now or by an earlier, interrupted purge.

        A published version is expired by the claim, so its path has no current version
        from the commit on. The paths' rows are locked first and then the versions' (the
        order `publish` and `expire` take them in): a publisher of the path commits
        before the claim, and its version is claimed as it left it, or finds the claim
        and refuses. The caller commits before deleting any object.
        """
        ids = sorted(set(file_ids))
        claimed: list[FileRecord] = []
        with translate_errors("claiming files to purge"):
            conn = self.db.begin_write()
            pg = not self.db.is_sqlite
            step = self._id_step(ids)
            for i in range(0, len(ids), step):
                chunk = ids[i : i + step]
                which = among(files.c.file_id, chunk, postgres=pg)
                of_versions = select(files.c.path_id).where(which)
                conn.execute(
                    select(paths.c.path_id)
                    .where(paths.c.path_id.in_(of_versions))
                    .order_by(paths.c.path_id)
                    .with_for_update(key_share=True)
                ).all()
                conn.execute(
                    select(files.c.file_id).where(which).order_by(files.c.file_id).with_for_update()
                ).all()
                unclaimed = and_(which, files.c.purge_started_at.is_(None))
                conn.execute(
                    update(files)
                    .where(unclaimed, files.c.state == "published")
                    .values(state="expired", expired_at=now)
                )
                conn.execute(update(files).where(unclaimed).values(purge_started_at=now))
                tag_index.forget_versions(conn, chunk, pg)
                claimed += self._records(chunk)
        self._touched_files.update(r.file_id for r in claimed)
        return claimed

    def claimed(self) -> list[FileRecord]:
        """Versions claimed for purging whose purge has not finished."""
        with translate_errors("finding claimed files"):
            rows = self.db.conn.execute(
                select_files()
                .where(files.c.purge_started_at.is_not(None))
                .order_by(files.c.file_id)
            )
            return [record(r) for r in rows]

    def forget_files(self, file_ids: Sequence[int]) -> int:
        """Delete the rows of claimed versions (their objects are gone); returns the count."""
        gone = 0
        with translate_errors("removing purged files"):
            conn = self.db.begin_write()
            if self.db.is_sqlite and not self._sqlite_ids_never_reused(conn):
                # A version-1 SQLite catalog reuses the highest id once its row is gone:
                # keep that one row (claimed, object deleted) until a newer one exists.
                top = conn.execute(select(func.max(files.c.file_id))).scalar()
                file_ids = [f for f in file_ids if f != top]
            step = self._id_step(file_ids)
            for i in range(0, len(file_ids), step):
                chunk = list(file_ids[i : i + step])
                claimed = select(files.c.file_id).where(
                    among(files.c.file_id, chunk, postgres=not self.db.is_sqlite),
                    files.c.purge_started_at.is_not(None),
                )
                conn.execute(delete(file_tags).where(file_tags.c.file_id.in_(claimed)))
                conn.execute(delete(file_hosts).where(file_hosts.c.file_id.in_(claimed)))
                gone_ids = conn.execute(
                    delete(files)
                    .where(
                        among(files.c.file_id, chunk, postgres=not self.db.is_sqlite),
                        files.c.purge_started_at.is_not(None),
                    )
                    .returning(files.c.file_id)
                ).scalars()
                purged = set(gone_ids)
                self._purged.update(purged)
                gone += len(purged)
        return gone

    def _id_step(self, file_ids: Sequence[int]) -> int:
        """Ids per statement: all of them on PostgreSQL, where they travel as one array
        parameter (see `among`); `IN_BATCH` on SQLite, whose IN lists grow."""
        if self.db.is_sqlite:
            return IN_BATCH
        return max(len(file_ids), 1)

    def _sqlite_ids_never_reused(self, conn: Any) -> bool:
        sql = conn.execute(
            text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'files'")
        ).scalar()
        return "AUTOINCREMENT" in str(sql).upper()

    def pending_upload_keys(self, origin: str) -> set[str]:
        """Keys of versions made on `origin` that are not uploaded and not being purged
        (the ones whose staging copies are still needed)."""
        with translate_errors("reading unfinished uploads"):
            return set(
                self.db.conn.execute(
                    select(files.c.key).where(
                        files.c.origin == origin,
                        files.c.md5.is_(None),
                        files.c.purge_started_at.is_(None),
                    )
                ).scalars()
            )

    def _records(self, file_ids: list[int]) -> list[FileRecord]:
        if not file_ids:
            return []
        rows = self.db.conn.execute(
            select_files()
            .where(among(files.c.file_id, file_ids, postgres=not self.db.is_sqlite))
            .order_by(files.c.file_id)
        )
        return [record(r) for r in rows]
