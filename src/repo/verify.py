"""Check the store against the catalog, and repair it from this host's cache."""

from __future__ import annotations

import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from .catalog.verification import versions_to_verify
from .errors import ArchivedError, NotFoundError, StoreError, UntrustedDataError, UsageError
from .integrity import READ_BACK, SERVER_CHECKED, normalize_etag
from .storage_classes import needs_restore
from .stores.base import DownloadResult, Store, hash_only
from .transfers import DEFAULT_WORKERS
from .verify_copies import CopiesReport, check_copies

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from .catalog import FileRecord
    from .session import Session

__all__ = [
    "Finding",
    "VerifyCategory",
    "VerifyReport",
    "check_object",
    "compare",
    "hash_file",
    "hash_object",
    "verify_store",
]

logger = logging.getLogger(__name__)

#: Versions read from the catalog per query (keyset paging on the file id).
VERIFY_BATCH = 1000

_CHUNK = 1024 * 1024
_MULTIPART_ETAG = re.compile(r"[0-9a-f]{32}-[0-9]+")

#: "elsewhere": with several stores, a version whose own copy is in a bucket no configured
#: store has (its store was replaced): counted by its copies in the others.
#: "unreachable": with several stores, its store failed as a whole (`verify_copies`).
Outcome = Literal["ok", "size_only", "archived", "missing", "corrupt", "elsewhere", "unreachable"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One version the check or the recovery has something to say about."""

    file_id: int
    path: str
    key: str
    reason: str


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
    #: In a deep check, archived versions checked by a HEAD only (counted in `ok`):
    #: reading them costs a retrieval, and GLACIER or DEEP_ARCHIVE ones need a thaw.
    archived: list[Finding] = field(default_factory=list)


@dataclass
class VerifyReport:
    """The outcome of one `verify_store` run."""

    deep: bool
    #: A deep check read archived versions too (``include_archived``).
    include_archived: bool = False
    #: Bytes of the archived versions a deep check did not read (`VerifyCategory.archived`).
    archived_bytes: int = 0
    published: VerifyCategory = field(default_factory=VerifyCategory)
    #: Expired versions not yet claimed by garbage collection (kept for backups).
    expired: VerifyCategory = field(default_factory=VerifyCategory)
    #: With several stores: every copy, and the versions under policy (else None).
    copies: CopiesReport | None = None

    @property
    def ok(self) -> bool:
        """Nothing missing, nothing corrupt, no version below ``mincopies``."""
        return not (self.missing or self.corrupt) and (self.copies is None or self.copies.ok)

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

    @property
    def archived(self) -> list[Finding]:
        return self.published.archived + self.expired.archived


def verify_store(
    session: Session,
    *,
    deep: bool = False,
    include_archived: bool = False,
    workers: int = DEFAULT_WORKERS,
) -> VerifyReport:
    """Check that every published version, and every expired one garbage collection has
    not claimed, exists in its store with the catalog's size and checksum.

    Shallow: one HEAD per object (size, and the ETag where it is the md5). `deep`
    downloads every object (not into the cache) and compares md5 and size. Store
    requests run in `workers` threads; the catalog is read in pages in this thread.
    Network and permission failures raise; nothing is changed anywhere.

    A HEAD costs no retrieval, so a shallow check treats archived versions like any
    other. A deep one checks them by a HEAD only and lists them (reading them is billed
    per byte, and GLACIER or DEEP_ARCHIVE ones need a restore), unless
    `include_archived`: then it reads those that are readable (restored, or GLACIER_IR).
    """
    if workers < 1:
        raise UsageError(f"workers must be at least 1, got {workers}")
    report = VerifyReport(deep=deep, include_archived=include_archived)
    config = session.config
    if config.stores:
        report.copies = CopiesReport(numcopies=config.numcopies, mincopies=config.mincopies)

    def check(rec: FileRecord) -> tuple[Outcome, str]:
        return _check_located(session, rec, deep=deep, include_archived=include_archived)

    def check_copy(store: Store, rec: FileRecord) -> tuple[str, str]:
        return check_object(store, rec, deep=deep)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="repo-verify") as pool:
        for batch in _versions(session):
            outcomes = list(pool.map(check, batch))
            if report.copies is not None:
                check_copies(
                    session, batch, outcomes, check=check_copy, pool=pool, report=report.copies
                )
            for rec, (outcome, reason) in zip(batch, outcomes, strict=True):
                category = report.published if rec.state == "published" else report.expired
                category.checked += 1
                finding = Finding(rec.file_id, rec.path, rec.key, reason)
                if outcome == "missing":
                    category.missing.append(finding)
                elif outcome == "corrupt":
                    category.corrupt.append(finding)
                elif outcome == "unreachable":
                    pass  # in `report.copies.unreachable`: neither good nor lost
                else:
                    category.ok += 1
                    if outcome == "size_only":
                        category.size_only.append(finding)
                    elif outcome == "archived":
                        category.archived.append(finding)
                        report.archived_bytes += rec.size or 0
    _drop_purged(session, report)
    logger.info(
        "verify%s: %d checked, %d missing, %d corrupt, %d by size only",
        " (deep)" if deep else "",
        report.checked,
        len(report.missing),
        len(report.corrupt),
        len(report.size_only),
    )
    return report


def _versions(session: Session) -> Iterator[list[FileRecord]]:
    after = 0
    while True:
        try:
            batch = versions_to_verify(session.catalog, after_id=after, limit=VERIFY_BATCH)
        finally:
            session.catalog.end_read()
        if not batch:
            return
        yield batch
        after = batch[-1].file_id


def _drop_purged(session: Session, report: VerifyReport) -> None:
    """Forget damage to versions garbage collection claimed while the check ran: their
    objects were being deleted, rightly."""
    for category in (report.published, report.expired):
        found = category.missing + category.corrupt
        if not found:
            continue
        try:
            now = session.catalog.files_by_key([f.key for f in found])
        finally:
            session.catalog.end_read()
        gone = set()
        for f in found:
            rec = now.get(f.key)
            if rec is None or rec.purge_started_at is not None:
                gone.add(f.key)
        if gone:
            category.missing = [f for f in category.missing if f.key not in gone]
            category.corrupt = [f for f in category.corrupt if f.key not in gone]
            category.checked -= len(gone)


def _check_located(
    session: Session, rec: FileRecord, *, deep: bool, include_archived: bool
) -> tuple[Outcome, str]:
    """`check_object` in the store the catalog names, once that is proved to be ours.
    With several stores, a store that fails as a whole makes the copy unreachable (the
    other copies are still checked); with one, the failure is the check's."""
    several = bool(session.config.stores)
    if several and session.stores.home_name(rec) is None:
        return "elsewhere", "its own store was replaced; its copies are checked in the others"
    try:
        store = session.locate(rec)
    except UntrustedDataError as exc:
        return "corrupt", exc.message
    try:
        if deep and rec.storage_class is not None:
            return _check_archived(store, rec, include_archived=include_archived)
        return check_object(store, rec, deep=deep)
    except StoreError as exc:  # as `verify_copies.reachable` does for the other copies
        if not several:
            raise
        return "unreachable", exc.message


def _check_archived(
    store: Store, rec: FileRecord, *, include_archived: bool
) -> tuple[Outcome, str]:
    """A deep check of an archived version: a HEAD, and a read only when asked for and
    possible without a restore request (never one made here)."""
    if include_archived:
        try:
            return check_object(store, rec, deep=True)
        except ArchivedError:
            why = f"in {rec.storage_class} with no restored copy: `repo thaw {rec.file_id}` first"
        else:
            why = ""
    else:
        why = f"in {rec.storage_class}: reading it is a billed retrieval" + (
            " after a `repo thaw`" if needs_restore(rec.storage_class) else ""
        )
    outcome, reason = check_object(store, rec, deep=False)
    if outcome in ("missing", "corrupt"):
        return outcome, reason
    return "archived", f"{why}; checked by HEAD only"


def check_object(store: Store, rec: FileRecord, *, deep: bool) -> tuple[Outcome, str]:
    """Is `rec`'s object in `store` with the catalog's size and checksum? With a reason."""
    # Only uploaded versions are checked, and those have both (for mypy).
    assert rec.md5 is not None  # noqa: S101
    assert rec.size is not None  # noqa: S101
    try:
        if deep:
            got = hash_object(store, rec.key)
            return compare(got, rec, "the content")
        info = store.head(rec.key)
    except NotFoundError:
        return "missing", "not in the store"
    if info.size != rec.size:
        return "corrupt", f"{info.size} bytes in the store, the catalog says {rec.size}"
    etag = normalize_etag(info.etag)
    if etag is None:
        return "size_only", "the store gives no checksum; size checked only"
    if etag == rec.md5:
        return "ok", ""
    if rec.verified_with in (READ_BACK, SERVER_CHECKED):
        return "size_only", "its ETag is no md5 (verified at upload by reading it back or by "
        "the server); size checked only"
    if _MULTIPART_ETAG.fullmatch(etag):
        return "size_only", "multipart ETag; size checked only"
    if not store.etag_is_md5(rec.key):
        return "size_only", "the server encrypts it so that its ETag is no md5; size checked only"
    return "corrupt", f"ETag {etag} is not the catalog's md5 {rec.md5}"


def hash_object(store: Store, key: str) -> DownloadResult:
    """md5 and size of an object's content, read and thrown away (never cached)."""
    with open(os.devnull, "wb") as sink:
        return store.get_into(key, sink)


def hash_file(path: Path) -> DownloadResult:
    """md5 and size of a local file."""
    with open(path, "rb") as fp:
        return hash_only(iter(lambda: fp.read(_CHUNK), b""))


def compare(got: DownloadResult, rec: FileRecord, what: str) -> tuple[Outcome, str]:
    """Whether `got` (of `what`) matches the catalog's md5 and size, with a reason."""
    if got.size != rec.size or got.md5 != rec.md5:
        return "corrupt", (
            f"{what} has md5 {got.md5} and {got.size} bytes, the catalog says md5 "
            f"{rec.md5} and {rec.size} bytes"
        )
    return "ok", ""
