"""Garbage collection: purge old unpublished versions, expired versions that enough
backups have seen, and orphaned objects, without ever touching published data.

A purge runs in three committed steps per batch: claim the rows (a conditional update
that re-checks the rules, so a concurrent publish either wins the row or finds it
claimed), delete the objects, delete the rows. A run interrupted anywhere leaves claimed
rows that the next run finishes first; deleting an object twice is harmless. The steps
overlap (see `_Purger`): worker threads delete the objects of claimed batches while the
calling thread, the only one that talks to the catalog, claims the next batch and
forgets the rows of objects already gone.

Orphans (objects no row refers to, e.g. from a process that died before commit) are
only considered once older than the grace period, so uploads in flight are never
touched; the same pass removes the store's leftovers of cut-off writes (the file store's
temp files, S3's incomplete multipart uploads) started before the grace period. Every
run also removes this host's staging copies and partial downloads nobody needs any more.
"""

from __future__ import annotations

import logging
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from .errors import StoreError
from .every_copy import every_copy
from .leftovers import clean_partials, clean_staging
from .paths import DATA_PREFIX, token_time
from .storage_classes import early_deletion_days
from .units import human_size

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from .catalog import FileRecord
    from .session import Session
    from .stores.base import ObjectInfo, Store

__all__ = ["GcCategory", "GcReport", "collect_garbage", "finish_claims"]

logger = logging.getLogger(__name__)
_RETIRED = "; if a store is gone: `repo store decommission NAME`"

#: Versions claimed per catalog transaction (one claim statement, one journal entry).
CLAIM_BATCH = 5000
#: Keys per deletion request (S3's DeleteObjects takes at most 1000).
DELETE_BATCH = 1000
#: Deletion requests in flight at once; each waits mostly on the store.
DELETE_THREADS = 4
#: Versions whose rows are deleted per catalog transaction, once their objects are gone.
FORGET_BATCH = 5000
#: Store keys looked up in the catalog at a time when looking for orphans.
ORPHAN_BATCH = 1000


@dataclass
class GcCategory:
    """What went (or, in a dry run, would go) in one category."""

    count: int = 0
    bytes: int = 0
    keys: list[str] = field(default_factory=list)

    def add(self, key: str, size: int | None) -> None:
        self.count += 1
        self.bytes += size or 0
        self.keys.append(key)


@dataclass
class GcReport:
    """The outcome of one garbage collection run."""

    dry_run: bool
    #: Unpublished versions older than ``unpublished_ttl_seconds``.
    unpublished: GcCategory = field(default_factory=GcCategory)
    #: Expired versions past ``expired_ttl_seconds`` and seen by enough backups.
    expired: GcCategory = field(default_factory=GcCategory)
    #: Versions claimed by an earlier, interrupted run, finished now.
    resumed: GcCategory = field(default_factory=GcCategory)
    #: Objects no version refers to, older than ``orphan_grace_seconds`` (``orphans=True``).
    orphans: GcCategory = field(default_factory=GcCategory)
    #: Expired versions past their TTL kept only because too few backups were taken since.
    waiting_for_backups: int = 0
    #: Unpublished versions kept because they are younger than ``unpublished_ttl_seconds``.
    unpublished_within_ttl: int = 0
    #: Expired versions kept because they expired less than ``expired_ttl_seconds`` ago.
    expired_within_ttl: int = 0
    #: This host's staging copies of versions that were purged (or never recorded).
    staging_removed: int = 0
    #: Temporary files of downloads cut off on this host (see `clean_partials`).
    partial_downloads_removed: int = 0
    #: The store's leftovers of writes cut off: temp files, incomplete multipart uploads.
    store_temporaries_removed: int = 0
    #: What this run could not do, and why (one line each); the rest of it stands.
    not_done: list[str] = field(default_factory=list)
    #: Archived versions purged (or, in a dry run, to be) before their class's minimum
    #: storage duration: the early-deletion charge each pays (``archive_early_deletion:
    #: warn``), one line each.
    early_deletion: list[str] = field(default_factory=list)
    #: Archived versions kept because purging them now would pay an early-deletion
    #: charge (``archive_early_deletion: refuse``); a later run purges them.
    kept_for_minimum_duration: int = 0


def collect_garbage(
    session: Session, *, dry_run: bool = False, orphans: bool = False, now: datetime | None = None
) -> GcReport:
    session.require_clean("garbage collection")
    cfg = session.config
    now = now or datetime.now(UTC)
    catalog = session.catalog
    report = GcReport(dry_run=dry_run)
    try:
        unpublished_before = now - timedelta(seconds=cfg.unpublished_ttl_seconds)
        ttl_cutoff = now - timedelta(seconds=cfg.expired_ttl_seconds)
        backup_cutoff = catalog.expired_cutoff(cfg.backups_before_purge)
        expired_before = None if backup_cutoff is None else min(ttl_cutoff, backup_cutoff)

        leftover = catalog.claimed()
        catalog.rollback()
        candidates = catalog.purge_candidates(
            unpublished_before=unpublished_before, expired_before=expired_before
        )
        waiting = catalog.count_waiting_for_backups(expired_before=ttl_cutoff)[0]
        report.unpublished_within_ttl, report.expired_within_ttl = catalog.count_waiting_for_ttl(
            unpublished_before=unpublished_before, expired_before=ttl_cutoff
        )
        catalog.rollback()
        # A row that names a location outside the store is never claimed or deleted.
        leftover, refused = _ours(session, leftover)
        candidates, refused_too = _ours(session, candidates)
        if refused or refused_too:
            first = (refused or refused_too)[0]
            report.not_done.append(
                f"{len(refused) + len(refused_too)} versions whose catalog rows name a location "
                f"outside this repository's store were left alone, objects and rows (e.g. "
                f"{first}); `repo verify` lists them{_RETIRED if 'not configured' in first else ''}"
            )
            logger.error("gc: %s", report.not_done[-1])
        for rec in leftover:
            report.resumed.add(rec.key, rec.size)
        candidates = _minimum_durations(session, candidates, report, now)
        if dry_run:
            chosen: Sequence[FileRecord] = candidates
        else:
            chosen = _purge(
                session,
                leftover,
                candidates,
                now=now,
                unpublished_before=unpublished_before,
                expired_before=expired_before,
            )
        for rec in chosen:
            target = report.unpublished if rec.state == "unpublished" else report.expired
            target.add(rec.key, rec.size)
        report.waiting_for_backups = waiting - report.expired.count

        if orphans:
            before = now - timedelta(seconds=cfg.orphan_grace_seconds)
            for name in cfg.store_names:  # every store (docs/replicas.md)
                found = list(_orphans(session, before, name))
                for info in found:
                    report.orphans.add(info.key, info.size)
                store = session.stores.named(name)
                if not dry_run and found:
                    store.delete_many([i.key for i in found])
                try:  # placement and replication write into every store too
                    report.store_temporaries_removed += store.clean_temporaries(
                        store.key_prefix + DATA_PREFIX, before, dry_run=dry_run
                    )
                except StoreError as exc:
                    # Some servers cannot list multipart uploads: the rest of GC stands.
                    where = f" in store {name}" if cfg.stores else ""
                    report.not_done.append(
                        f"leftovers of cut-off writes not cleaned{where}: {exc.message}"
                    )
                    logger.warning("gc: %s", report.not_done[-1])
        going = set(report.unpublished.keys + report.expired.keys + report.resumed.keys)
        report.staging_removed = clean_staging(session, now, dry_run, going=going)
        report.partial_downloads_removed = clean_partials(session, now, dry_run)
    finally:
        catalog.rollback()
    logger.info(
        "gc%s: %d unpublished, %d expired, %d resumed, %d orphans",
        " (dry run)" if dry_run else "",
        report.unpublished.count,
        report.expired.count,
        report.resumed.count,
        report.orphans.count,
    )
    return report


def purge_orphans_only(session: Session, *, now: datetime | None = None) -> int:
    """Delete orphans past the grace period, and nothing else; returns how many."""
    now = now or datetime.now(UTC)
    grace = timedelta(seconds=session.config.orphan_grace_seconds)
    count = 0
    for name in session.config.store_names:
        try:
            keys = [info.key for info in _orphans(session, now - grace, name)]
        finally:
            session.catalog.end_read()
        if keys:
            session.stores.named(name).delete_many(keys)
        count += len(keys)
    return count


def _minimum_durations(
    session: Session, candidates: list[FileRecord], report: GcReport, now: datetime
) -> list[FileRecord]:
    """Archived candidates still within their class's minimum storage duration: with
    ``archive_early_deletion: refuse`` kept (counted), else purged and their charge said."""
    kept: list[FileRecord] = []
    refuse = session.config.archive_early_deletion == "refuse"
    for rec in candidates:
        days = early_deletion_days(rec.storage_class, rec.archived_at, now)
        if not days:
            kept.append(rec)
        elif refuse:
            report.kept_for_minimum_duration += 1
        else:
            kept.append(rec)
            report.early_deletion.append(
                f"{rec.path} (file {rec.file_id}, {human_size(rec.size)} in "
                f"{rec.storage_class}): an early-deletion charge of {days} more days of "
                f"{rec.storage_class} storage"
            )
    if report.early_deletion:
        logger.warning(
            "gc: %d archived versions go before their minimum storage duration, each "
            "billed for the rest of it",
            len(report.early_deletion),
        )
    return kept


def _ours(session: Session, records: Sequence[FileRecord]) -> tuple[list[FileRecord], list[str]]:
    """The records whose location is this repository's, and why each other one is not."""
    kept, _work, refused = every_copy(session, records)
    return kept, refused


def _batches(items: Sequence[FileRecord], size: int) -> Iterator[Sequence[FileRecord]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _purge(
    session: Session,
    leftover: Sequence[FileRecord],
    candidates: Sequence[FileRecord],
    *,
    now: datetime,
    unpublished_before: datetime,
    expired_before: datetime | None,
) -> list[FileRecord]:
    """Finish the `leftover` claims, then claim and purge the `candidates` the rules still
    allow; returns those claimed (in id order)."""
    chosen: list[FileRecord] = []
    purger = _Purger(session)
    try:
        purger.delete(leftover)
        for batch in _batches(candidates, CLAIM_BATCH):
            claimed = session.catalog.claim_for_purge(
                [r.file_id for r in batch],
                now=now,
                unpublished_before=unpublished_before,
                expired_before=expired_before,
            )
            session.catalog.commit()  # claimed: from here on nobody can publish these
            purger.delete(claimed)
            chosen += claimed
        purger.finish()
    finally:
        purger.close()
    return chosen


def finish_claims(session: Session, claimed: Sequence[FileRecord]) -> None:
    """Delete the objects of these claimed versions (their claim committed), then their
    rows: GC's last two steps, for a purge that claimed its versions itself (`repo.erase`).
    A failure leaves the rows it did not reach claimed, for the next run to finish."""
    purger = _Purger(session)
    try:
        purger.delete(claimed)
        purger.finish()
    finally:
        purger.close()


class _Purger:
    """Deletes the objects of committed claims in worker threads, and their rows.

    The catalog connection is not thread-safe: only the calling thread touches it. The
    workers delete objects (one request per `DELETE_BATCH` keys) and evict cached
    copies; the calling thread deletes the rows of versions whose objects are gone, in
    transactions of `FORGET_BATCH`, while it is not claiming. A row is deleted only
    after its object; if a deletion fails the rows it did not reach stay claimed, for
    the next run to finish.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self.pool = ThreadPoolExecutor(DELETE_THREADS, thread_name_prefix="repo-gc")
        self.pending: set[Future[list[int]]] = set()
        #: Versions whose objects are gone and whose rows are still there.
        self.gone: list[int] = []

    def delete(self, claimed: Sequence[FileRecord]) -> None:
        """Queue the deletion of these claimed versions' objects (the claim committed)."""
        for batch in _batches(claimed, DELETE_BATCH):
            # Checked again as claimed (a row may have changed since it was chosen): a
            # refused one stays claimed, and the next run names it.
            part, found, refused = every_copy(self.session, batch)
            for why in refused:
                logger.error("gc: not deleted: %s", why)
            if not part:
                continue
            ids = [rec.file_id for rec in part]
            # Every copy in every store, then this host's cached copies (named by the
            # version's own key); an unreachable store fails the batch, whose rows stay
            # claimed for the next run.
            work: list[tuple[Store | None, list[str]]] = [*found, (None, [r.key for r in part])]
            # A bounded queue: claims run ahead of deletions by a few requests at most.
            while len(self.pending) >= 2 * DELETE_THREADS:
                self._collect(block=True)
            self.pending.add(self.pool.submit(self._delete, work, ids))
        self._collect(block=False)

    def _delete(self, work: list[tuple[Store | None, list[str]]], ids: list[int]) -> list[int]:
        for store, keys in work:
            if store is not None:
                store.delete_many(keys)
            else:
                for key in keys:
                    self.session.cache.evict(key)
        return ids

    def _collect(self, *, block: bool) -> None:
        """Note finished deletions (raising the first failure); forget a full batch."""
        if self.pending:
            done, rest = wait(self.pending, None if block else 0, FIRST_COMPLETED)
            self.pending = set(rest)
            for future in done:
                self.gone += future.result()
        if len(self.gone) >= FORGET_BATCH:
            self._forget()

    def _forget(self) -> None:
        if self.gone:
            self.session.catalog.forget_files(self.gone)
            self.session.catalog.commit()
            self.gone = []

    def finish(self) -> None:
        """Wait for every deletion, then forget the rows of all the versions purged."""
        while self.pending:
            self._collect(block=True)
        self._forget()

    def close(self) -> None:
        """Stop: deletions not started are dropped (their rows stay claimed)."""
        for future in self.pending:
            future.cancel()
        self.pool.shutdown(wait=True)


def _orphans(session: Session, older_than: datetime, name: str) -> Iterator[ObjectInfo]:
    """Objects under the data prefix of store `name` that no version or copy refers to."""
    batch: list[ObjectInfo] = []
    store = session.stores.named(name)

    def settle() -> Iterator[ObjectInfo]:
        keys = [i.key for i in batch]
        known = session.catalog.known_keys(keys)
        if session.config.stores:  # copies in other stores (docs/replicas.md)
            known |= session.catalog.known_copy_keys(name, keys)
        session.catalog.rollback()
        yield from (i for i in batch if i.key not in known)
        batch.clear()

    for info in store.list(store.key_prefix + DATA_PREFIX):
        # Old by the store's clock and by the time in the key's own token: an upload in
        # flight is young by both, whatever either clock says.
        made = token_time(info.key)
        if info.last_modified is None or info.last_modified >= older_than:
            continue
        if made is not None and made >= older_than:
            continue
        batch.append(info)
        if len(batch) >= ORPHAN_BATCH:
            yield from settle()
    if batch:
        yield from settle()
