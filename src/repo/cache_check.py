"""Checking this host's cached copies against the catalog, and replacing damaged ones.

`verify_cache` checks the other side: this host's cached copies. A cache hit checks only
the copy's size (one ``stat``), so a bit flipped on the local disk would be served as is;
this re-hashes every cached copy against the catalog's md5 and size, evicts damaged ones
and, with `repair`, downloads them again (verified, as every download is).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import NotFoundError, StoreError, VerificationError
from .transfers import fetch
from .verify import VERIFY_BATCH, Finding, compare, hash_file

if TYPE_CHECKING:
    from .catalog import FileRecord
    from .session import Session

__all__ = ["CacheVerifyReport", "verify_cache"]

logger = logging.getLogger(__name__)


@dataclass
class CacheVerifyReport:
    """The outcome of one `verify_cache` run over this host's cached copies."""

    repair: bool
    host: str
    #: Cached copies of versions the catalog lists, re-hashed.
    checked: int = 0
    #: Of those, copies whose md5 and size match the catalog.
    intact: int = 0
    #: Bytes read and hashed.
    bytes: int = 0
    #: Copies that failed the catalog's md5 or size; `Finding.reason` says how.
    damaged: list[Finding] = field(default_factory=list)
    #: Damaged copies removed from the cache (all of them when repairing).
    evicted: list[Finding] = field(default_factory=list)
    #: Evicted copies downloaded again from the store, verified.
    redownloaded: list[Finding] = field(default_factory=list)
    #: Evicted copies that could not be downloaded again; the reason says why.
    failed: list[Finding] = field(default_factory=list)
    #: Cached copies the catalog does not list (left alone: `repo cache prune` decides).
    unknown: int = 0

    @property
    def ok(self) -> bool:
        """Every cached copy is intact now (damaged ones were replaced)."""
        return not self.failed and (self.repair or not self.damaged)


def verify_cache(session: Session, *, repair: bool = True) -> CacheVerifyReport:
    """Re-hash every cached copy on this host against the catalog's md5 and size.

    With `repair`, a damaged copy is evicted and, unless garbage collection has claimed
    its version, downloaded again (verified); without it nothing changes. Reads every
    cached byte once: the cost is the cache's size over the disk's (or md5's) speed.
    """
    report = CacheVerifyReport(repair=repair, host=session.host)
    entries = session.cache.entries()
    for i in range(0, len(entries), VERIFY_BATCH):
        batch = entries[i : i + VERIFY_BATCH]
        try:
            records = session.catalog.files_by_key([e.key for e in batch])
        finally:
            session.catalog.end_read()
        for entry in batch:
            rec = records.get(entry.key)
            if rec is None or rec.md5 is None or rec.size is None:
                report.unknown += 1
                continue
            try:
                got = hash_file(entry.path)
            except FileNotFoundError:
                continue  # evicted meanwhile (by another process on this host)
            report.checked += 1
            report.bytes += got.size
            outcome, reason = compare(got, rec, "the cached copy")
            if outcome == "ok":
                report.intact += 1
                continue
            finding = Finding(rec.file_id, rec.path, rec.key, reason)
            report.damaged.append(finding)
            logger.info("damaged cached copy of %s (file %s): %s", rec.path, rec.file_id, reason)
            if repair:
                _replace_cached(session, rec, finding, report)
    logger.info(
        "verify cache: %d checked (%d bytes), %d damaged, %d downloaded again, %d failed",
        report.checked,
        report.bytes,
        len(report.damaged),
        len(report.redownloaded),
        len(report.failed),
    )
    return report


def _replace_cached(
    session: Session, rec: FileRecord, finding: Finding, report: CacheVerifyReport
) -> None:
    session.cache.evict(rec.key)
    session.copies.forgotten([rec.key])
    report.evicted.append(finding)
    if rec.purge_started_at is not None:
        return  # being purged: its object may be gone already, and nobody needs it
    try:
        fetch(session, rec)
    except (VerificationError, NotFoundError, StoreError) as exc:
        report.failed.append(Finding(rec.file_id, rec.path, rec.key, exc.message))
        return
    report.redownloaded.append(finding)
