"""Check the store against the catalog, and repair it from this host's cache.

`verify_store` is the repository's filesystem check: every version whose object must
exist (published, and expired but not yet claimed by garbage collection) is looked up
in its store. A shallow check costs one HEAD request per object: the size must match,
and where the ETag is a plain md5 (single-part uploads) it must equal the catalog's.
That catches missing, truncated and replaced objects, but not bit rot under an unchanged
ETag (the ETag is the store's record of what it was sent, and the directory store's
"ETag" is its sidecar's md5), nor any damage to a multipart object, whose ETag
(``md5-of-part-md5s-N``) cannot be recomputed without the part sizes: those are
reported as checked by size only. ``deep=True`` reads every object and compares md5
and size, which catches everything.

`recover_from_cache` runs that check, then re-uploads a verified cached copy from this
host for each missing or corrupt version. Objects are never overwritten, so a corrupt
one is deleted first, and only once its content has been read and found to fail the
catalog's checksum: a shallow verdict is confirmed by a download before anything is
deleted (some stores give ETags that are not md5s, e.g. S3 with SSE-KMS).

`verify_cache` checks the other side: this host's cached copies. A cache hit checks only
the copy's size (one ``stat``), so a bit flipped on the local disk would be served as is;
this re-hashes every cached copy against the catalog's md5 and size, evicts damaged ones
and, with `repair`, downloads them again (verified, as every download is).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from .catalog import FileRecord
from .catalog.verification import holders_of, versions_to_verify
from .errors import ConflictError, NotFoundError, StoreError, UsageError, VerificationError
from .integrity import normalize_etag
from .stores.base import DownloadResult, Store, hash_only

if TYPE_CHECKING:
    from .repository import Repo

__all__ = [
    "CacheVerifyReport",
    "Finding",
    "LostFile",
    "RecoverReport",
    "VerifyCategory",
    "VerifyReport",
    "check_object",
    "hash_object",
    "recover_from_cache",
    "verify_cache",
    "verify_store",
]

logger = logging.getLogger(__name__)

#: Versions read from the catalog per query (keyset paging on the file id).
VERIFY_BATCH = 1000
#: Parallel store requests (HEADs, or downloads when deep).
DEFAULT_WORKERS = 16

_CHUNK = 1024 * 1024
_MULTIPART_ETAG = re.compile(r"[0-9a-f]{32}-[0-9]+")

Outcome = Literal["ok", "size_only", "missing", "corrupt"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One version the check or the recovery has something to say about."""

    file_id: int
    path: str
    key: str
    reason: str


@dataclass(frozen=True, slots=True)
class LostFile:
    """A damaged version this host could not repair, and who may still hold a copy."""

    file_id: int
    path: str
    key: str
    reason: str
    #: Other hosts the catalog says hold a verified copy (run `repo recover` there).
    hosts: tuple[str, ...]


@dataclass
class VerifyCategory:
    """The outcome of the check for the versions of one state."""

    #: Versions looked up in the store.
    checked: int = 0
    #: Found with the catalog's size and checksum (``size_only`` ones included).
    ok: int = 0
    #: Not in the store at all.
    missing: list[Finding] = field(default_factory=list)
    #: In the store with another size or checksum; `Finding.reason` says which.
    corrupt: list[Finding] = field(default_factory=list)
    #: Right size, but the checksum could not be compared without reading the object
    #: (a multipart ETag, or no ETag): only a deep check says more.
    size_only: list[Finding] = field(default_factory=list)


@dataclass
class VerifyReport:
    """The outcome of one `verify_store` run."""

    deep: bool
    published: VerifyCategory = field(default_factory=VerifyCategory)
    #: Expired versions not yet claimed by garbage collection (kept for backups).
    expired: VerifyCategory = field(default_factory=VerifyCategory)

    @property
    def ok(self) -> bool:
        """Nothing missing, nothing corrupt."""
        return not (self.missing or self.corrupt)

    @property
    def missing(self) -> list[Finding]:
        return self.published.missing + self.expired.missing

    @property
    def corrupt(self) -> list[Finding]:
        return self.published.corrupt + self.expired.corrupt

    @property
    def size_only(self) -> list[Finding]:
        return self.published.size_only + self.expired.size_only

    @property
    def checked(self) -> int:
        return self.published.checked + self.expired.checked


@dataclass
class RecoverReport:
    """The outcome of one `recover_from_cache` run."""

    dry_run: bool
    #: What the check found before anything was repaired.
    verify: VerifyReport
    #: Re-uploaded from this host's cache (in a dry run: would be); reason as found.
    recovered: list[Finding] = field(default_factory=list)
    #: Still missing or corrupt: no good copy here.
    still_lost: list[LostFile] = field(default_factory=list)
    #: Cached copies that failed the catalog's checksum: never uploaded, and evicted.
    skipped_bad_cache: list[Finding] = field(default_factory=list)
    #: Reported corrupt by the shallow check, but whose content matches the catalog when
    #: read (the store's ETag is not an md5 of the body): left as they are.
    intact: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing is still lost."""
        return not self.still_lost


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


def verify_cache(repo: Repo, *, repair: bool = True) -> CacheVerifyReport:
    """Re-hash every cached copy on this host against the catalog's md5 and size.

    With `repair`, a damaged copy is evicted and, unless garbage collection has claimed
    its version, downloaded again (verified); without it nothing changes. Reads every
    cached byte once: the cost is the cache's size over the disk's (or md5's) speed.
    """
    report = CacheVerifyReport(repair=repair, host=repo.host)
    entries = repo.cache.entries()
    for i in range(0, len(entries), VERIFY_BATCH):
        batch = entries[i : i + VERIFY_BATCH]
        try:
            records = repo.catalog.files_by_key([e.key for e in batch])
        finally:
            repo.catalog.end_read()
        for entry in batch:
            rec = records.get(entry.key)
            if rec is None or rec.md5 is None or rec.size is None:
                report.unknown += 1
                continue
            try:
                got = _hash_file(entry.path)
            except FileNotFoundError:
                continue  # evicted meanwhile (by another process on this host)
            report.checked += 1
            report.bytes += got.size
            outcome, reason = _compare(got, rec, "the cached copy")
            if outcome == "ok":
                report.intact += 1
                continue
            finding = Finding(rec.file_id, rec.path, rec.key, reason)
            report.damaged.append(finding)
            logger.info("damaged cached copy of %s (file %s): %s", rec.path, rec.file_id, reason)
            if repair:
                _replace_cached(repo, rec, finding, report)
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
    repo: Repo, rec: FileRecord, finding: Finding, report: CacheVerifyReport
) -> None:
    repo.cache.evict(rec.key)
    repo._forget_copies([rec.key])
    report.evicted.append(finding)
    if rec.purge_started_at is not None:
        return  # being purged: its object may be gone already, and nobody needs it
    try:
        repo._fetch(rec)
    except (VerificationError, NotFoundError, StoreError) as exc:
        report.failed.append(Finding(rec.file_id, rec.path, rec.key, exc.message))
        return
    report.redownloaded.append(finding)


def verify_store(repo: Repo, *, deep: bool = False, workers: int = DEFAULT_WORKERS) -> VerifyReport:
    """Check that every published version, and every expired one garbage collection has
    not claimed, exists in its store with the catalog's size and checksum.

    Shallow: one HEAD per object (size, and the ETag where it is a plain md5). `deep`
    downloads every object (not into the cache) and compares md5 and size. Store
    requests run in `workers` threads; the catalog is read in pages in this thread.
    Network and permission failures raise; nothing is changed anywhere.
    """
    if workers < 1:
        raise UsageError(f"workers must be at least 1, got {workers}")
    report = VerifyReport(deep=deep)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="repo-verify") as pool:
        for batch in _versions(repo):
            stores = [repo._store_for(rec.bucket) for rec in batch]
            outcomes = pool.map(lambda s, r: check_object(s, r, deep=deep), stores, batch)
            for rec, (outcome, reason) in zip(batch, outcomes, strict=True):
                category = report.published if rec.state == "published" else report.expired
                category.checked += 1
                finding = Finding(rec.file_id, rec.path, rec.key, reason)
                if outcome == "missing":
                    category.missing.append(finding)
                elif outcome == "corrupt":
                    category.corrupt.append(finding)
                else:
                    category.ok += 1
                    if outcome == "size_only":
                        category.size_only.append(finding)
    _drop_purged(repo, report)
    logger.info(
        "verify%s: %d checked, %d missing, %d corrupt, %d by size only",
        " (deep)" if deep else "",
        report.checked,
        len(report.missing),
        len(report.corrupt),
        len(report.size_only),
    )
    return report


def _versions(repo: Repo) -> Iterator[list[FileRecord]]:
    after = 0
    while True:
        try:
            batch = versions_to_verify(repo.catalog, after_id=after, limit=VERIFY_BATCH)
        finally:
            repo.catalog.end_read()
        if not batch:
            return
        yield batch
        after = batch[-1].file_id


def _drop_purged(repo: Repo, report: VerifyReport) -> None:
    """Forget damage to versions garbage collection claimed while the check ran: their
    objects were being deleted, rightly."""
    for category in (report.published, report.expired):
        found = category.missing + category.corrupt
        if not found:
            continue
        try:
            now = repo.catalog.files_by_key([f.key for f in found])
        finally:
            repo.catalog.end_read()
        gone = set()
        for f in found:
            rec = now.get(f.key)
            if rec is None or rec.purge_started_at is not None:
                gone.add(f.key)
        if gone:
            category.missing = [f for f in category.missing if f.key not in gone]
            category.corrupt = [f for f in category.corrupt if f.key not in gone]
            category.checked -= len(gone)


def check_object(store: Store, rec: FileRecord, *, deep: bool) -> tuple[Outcome, str]:
    """Is `rec`'s object in `store` with the catalog's size and checksum? With a reason."""
    assert rec.md5 is not None and rec.size is not None
    try:
        if deep:
            got = hash_object(store, rec.key)
            return _compare(got, rec, "the content")
        info = store.head(rec.key)
    except NotFoundError:
        return "missing", "not in the store"
    if info.size != rec.size:
        return "corrupt", f"{info.size} bytes in the store, the catalog says {rec.size}"
    etag = normalize_etag(info.etag)
    if etag is None:
        return "size_only", "the store gives no checksum; size checked only"
    if _MULTIPART_ETAG.fullmatch(etag):
        return "size_only", "multipart ETag; size checked only"
    if etag != rec.md5:
        return "corrupt", f"ETag {etag} is not the catalog's md5 {rec.md5}"
    return "ok", ""


def hash_object(store: Store, key: str) -> DownloadResult:
    """md5 and size of an object's content, read and thrown away (never cached)."""
    with open(os.devnull, "wb") as sink:
        return store.get_into(key, sink)


def _hash_file(path: Path) -> DownloadResult:
    with open(path, "rb") as fp:
        return hash_only(iter(lambda: fp.read(_CHUNK), b""))


def _compare(got: DownloadResult, rec: FileRecord, what: str) -> tuple[Outcome, str]:
    if got.size != rec.size or got.md5 != rec.md5:
        return "corrupt", (
            f"{what} has md5 {got.md5} and {got.size} bytes, the catalog says md5 "
            f"{rec.md5} and {rec.size} bytes"
        )
    return "ok", ""


# -- recovery ----------------------------------------------------------------------------


def recover_from_cache(
    repo: Repo,
    *,
    deep: bool = False,
    dry_run: bool = False,
    workers: int = DEFAULT_WORKERS,
) -> RecoverReport:
    """Verify the store (`deep` as for `verify_store`), then repair each missing or
    corrupt version from this host's cached copy, re-hashed first.

    A cached copy that fails the catalog's checksum is never uploaded; it is evicted. A
    corrupt object is deleted only after its content has been read and failed the
    checksum, then replaced. `dry_run` reports what would be recovered and changes
    nothing. Versions with no good copy here are reported with the other hosts the
    catalog says hold one.
    """
    found = verify_store(repo, deep=deep, workers=workers)
    report = RecoverReport(dry_run=dry_run, verify=found)
    damaged = [(f, False) for f in found.missing] + [(f, True) for f in found.corrupt]
    lost: list[tuple[Finding, str]] = []
    for batch in _chunks(damaged, VERIFY_BATCH):
        try:
            records = repo.catalog.files_by_key([f.key for f, _ in batch])
        finally:
            repo.catalog.end_read()
        for finding, corrupt in batch:
            rec = records.get(finding.key)
            if rec is None or rec.purge_started_at is not None:
                logger.info("%s (file %s) was purged meanwhile", finding.path, finding.file_id)
                continue
            why = _recover_one(repo, rec, finding, corrupt=corrupt, deep=deep, report=report)
            if why is not None:
                lost.append((finding, why))
    if lost:
        try:
            holders = holders_of(repo.catalog, [f.file_id for f, _ in lost])
        finally:
            repo.catalog.end_read()
        for f, why in lost:
            others = tuple(h for h in holders.get(f.file_id, []) if h != repo.host)
            report.still_lost.append(LostFile(f.file_id, f.path, f.key, why, others))
    logger.info(
        "recover%s: %d recovered, %d still lost, %d bad cached copies",
        " (dry run)" if dry_run else "",
        len(report.recovered),
        len(report.still_lost),
        len(report.skipped_bad_cache),
    )
    return report


def _recover_one(
    repo: Repo,
    rec: FileRecord,
    finding: Finding,
    *,
    corrupt: bool,
    deep: bool,
    report: RecoverReport,
) -> str | None:
    """Repair one version; None when done, else why it is still lost."""
    store = repo._store_for(rec.bucket)
    cached = repo.cache.cache_path(rec.key)
    if not cached.exists():
        return "no copy in this host's cache"
    outcome, reason = _compare(_hash_file(cached), rec, "the cached copy")
    if outcome != "ok":
        report.skipped_bad_cache.append(Finding(rec.file_id, rec.path, rec.key, reason))
        if not report.dry_run:
            repo.cache.evict(rec.key)
            repo._forget_copies([rec.key])
        return "this host's cached copy is damaged too"
    if corrupt and not deep:
        # The shallow verdict came from the store's answer, not the content: confirm it
        # on the content before deleting anything.
        outcome, _ = check_object(store, rec, deep=True)
        if outcome == "ok":
            report.intact.append(finding)
            return None
        corrupt = outcome == "corrupt"
    if report.dry_run:
        report.recovered.append(finding)
        return None
    if corrupt:
        # Known bad (its content fails the catalog's checksum), and objects are never
        # overwritten: it has to go before the good copy can take its key.
        store.delete_many([rec.key])
    try:
        result = repo._put(rec, cached, None)
    except ConflictError:
        # Something appeared at the key since the check: keep it if it is right.
        outcome, reason = check_object(store, rec, deep=True)
        if outcome == "ok":
            report.recovered.append(finding)
            return None
        return f"another object appeared at the key meanwhile ({reason}); run recover again"
    if result.md5 != rec.md5 or result.size != rec.size:
        # The cached file changed between its re-hash and the upload.
        store.delete_many([rec.key])
        return "this host's cached copy changed during the upload; run recover again"
    logger.info("recovered %s (file %s) from this host's cache", rec.path, rec.file_id)
    report.recovered.append(finding)
    return None


def _chunks(
    items: Sequence[tuple[Finding, bool]], size: int
) -> Iterator[Sequence[tuple[Finding, bool]]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
