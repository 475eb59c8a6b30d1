"""Repairing the stores from good copies: in the repository's other stores first (with
several, docs/replicas.md), then this host's verified cache.

`recover_from_cache` runs that check, then re-uploads a verified cached copy from this
host for each missing or corrupt version. Objects are never overwritten, so a corrupt
one is deleted first, and only once its content has been read and found to fail the
catalog's checksum: a shallow verdict is confirmed by a download before anything is
deleted (some stores give ETags that are not md5s, e.g. S3 with SSE-KMS).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .catalog.verification import holders_of
from .copying import copy_one, copy_sources
from .errors import ConflictError, RepoError, UntrustedDataError
from .stores.base import archivable
from .transfers import DEFAULT_WORKERS, put_version
from .verify import (
    VERIFY_BATCH,
    Finding,
    VerifyReport,
    check_object,
    compare,
    hash_file,
    verify_store,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from .catalog import FileRecord
    from .session import Session
    from .verify_copies import CopyFinding

__all__ = ["LostFile", "RecoverReport", "recover_from_cache"]

logger = logging.getLogger(__name__)


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
    #: With several stores: copies rewritten from a good copy in another store (in a
    #: dry run: to be); else None.
    from_stores: list[CopyFinding] | None = None

    @property
    def ok(self) -> bool:
        """Nothing is still lost."""
        return not self.still_lost


def recover_from_cache(
    session: Session,
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
    found = verify_store(session, deep=deep, workers=workers)
    report = RecoverReport(dry_run=dry_run, verify=found)
    repaired: set[int] = set()
    if found.copies is not None:
        report.from_stores = []
        repaired = _from_stores(session, report, deep=deep)
    damaged = [(f, False) for f in found.missing if f.file_id not in repaired] + [
        (f, True) for f in found.corrupt if f.file_id not in repaired
    ]
    lost: list[tuple[Finding, str]] = []
    for batch in _chunks(damaged, VERIFY_BATCH):
        try:
            records = session.catalog.files_by_key([f.key for f, _ in batch])
        finally:
            session.catalog.end_read()
        for finding, corrupt in batch:
            rec = records.get(finding.key)
            if rec is None or rec.purge_started_at is not None:
                logger.info("%s (file %s) was purged meanwhile", finding.path, finding.file_id)
                continue
            why = _recover_one(session, rec, finding, corrupt=corrupt, deep=deep, report=report)
            if why is not None:
                lost.append((finding, why))
    if lost:
        try:
            holders = holders_of(session.catalog, [f.file_id for f, _ in lost])
        finally:
            session.catalog.end_read()
        for f, why in lost:
            others = tuple(h for h in holders.get(f.file_id, []) if h != session.host)
            report.still_lost.append(LostFile(f.file_id, f.path, f.key, why, others))
    logger.info(
        "recover%s: %d recovered, %d still lost, %d bad cached copies",
        " (dry run)" if dry_run else "",
        len(report.recovered),
        len(report.still_lost),
        len(report.skipped_bad_cache),
    )
    return report


def _from_stores(session: Session, report: RecoverReport, *, deep: bool) -> set[int]:
    """Rewrite each damaged copy (own ones included) from a good copy in another store;
    returns the ids of versions whose own copy was so repaired. Damage found by a shallow
    check is confirmed on the content before anything is deleted."""
    from .verify_copies import CopyFinding

    found = report.verify
    copies = found.copies
    assert copies is not None  # noqa: S101 - called only with several stores (for mypy)
    assert report.from_stores is not None  # noqa: S101
    damaged: list[tuple[int, str | None, str, bool, str]] = [
        (f.file_id, None, f.key, corrupt, f.reason)
        for corrupt, fs in ((False, found.missing), (True, found.corrupt))
        for f in fs
    ] + [
        (f.file_id, f.store, f.key, corrupt, f.reason)
        for corrupt, fs in ((False, copies.missing), (True, copies.corrupt))
        for f in fs
    ]
    own_repaired: set[int] = set()
    handled: set[tuple[int, str]] = set()
    for file_id, name, key, corrupt, reason in damaged:
        try:
            rec = session.catalog.get(file_id)
        except RepoError:
            continue  # purged meanwhile
        finally:
            session.catalog.end_read()
        own = name is None
        name = name or session.stores.home_name(rec)
        if name is None or rec.purge_started_at is not None:
            continue
        handled.add((file_id, name))
        store = session.stores.named(name)
        as_copy = rec._replace(key=key)
        if corrupt and not deep and check_object(store, as_copy, deep=True)[0] == "ok":
            continue  # the shallow verdict was wrong: the content is right
        finding = CopyFinding(file_id, rec.path, name, key, reason)
        if report.dry_run:
            report.from_stores.append(finding)
            if own:
                own_repaired.add(file_id)
            continue
        session.catalog.replica_lost(file_id, name, key, when=datetime.now(UTC))
        session.commit()  # no longer counted nor read, before its object goes
        if corrupt:
            store.delete_many([key])
        rows = session.catalog.replicas_of([file_id]).get(file_id, [])
        session.catalog.end_read()
        sources = copy_sources(session, rec, rows)
        try:
            copy_one(session, rec, sources, name)
        except RepoError as exc:
            session.rollback()
            logger.warning("file %s: copy in store %s not repaired: %s", file_id, name, exc)
            if not own:  # own copies go on to this host's cache
                why = f"its copy in store {name}: {exc}"
                report.still_lost.append(LostFile(file_id, rec.path, key, why, ()))
            continue
        report.from_stores.append(finding)
        if own:
            own_repaired.add(file_id)
    _recorded_lost(session, report, handled)
    return own_repaired


def _recorded_lost(session: Session, report: RecoverReport, handled: set[tuple[int, str]]) -> None:
    """Copies recorded lost (by a read, or a verify before) that verify did not list:
    each written again where its object is gone or wrong, or, where the object is whole
    (an answer damaged on the way), checked by reading it back and counted again."""
    from .verify_copies import CopyFinding

    assert report.from_stores is not None  # noqa: S101 - several stores (for mypy)
    after = 0
    while page := session.catalog.lost_copies(after_id=after, limit=VERIFY_BATCH):
        after = page[-1][0]
        if len(page) == VERIFY_BATCH:  # the last version's rows may go on: next page
            page = [row for row in page if row[0] != after] or page
            after = page[-1][0]
        for file_id, name, key in page:
            if (file_id, name) in handled or name not in session.config.store_names:
                continue
            try:
                rec = session.catalog.get(file_id)
                rows = session.catalog.replicas_of([file_id]).get(file_id, [])
            finally:
                session.catalog.end_read()
            finding = CopyFinding(file_id, rec.path, name, key, "recorded lost")
            if not report.dry_run:
                try:
                    copy_one(session, rec, copy_sources(session, rec, rows), name)
                except RepoError as exc:
                    session.rollback()
                    why = f"its copy in store {name}: {exc}"
                    report.still_lost.append(LostFile(file_id, rec.path, key, why, ()))
                    continue
            report.from_stores.append(finding)


def _recover_one(
    session: Session,
    rec: FileRecord,
    finding: Finding,
    *,
    corrupt: bool,
    deep: bool,
    report: RecoverReport,
) -> str | None:
    """Repair one version; None when done, else why it is still lost."""
    try:
        store = session.locate(rec)
    except UntrustedDataError as exc:
        return exc.message
    cached = session.cache.cache_path(rec.key)
    if not cached.exists():
        return "no copy in this host's cache"
    outcome, reason = compare(hash_file(cached), rec, "the cached copy")
    if outcome != "ok":
        report.skipped_bad_cache.append(Finding(rec.file_id, rec.path, rec.key, reason))
        if not report.dry_run:
            session.cache.evict(rec.key)
            session.copies.forgotten([rec.key])
        return "this host's cached copy is damaged too"
    if corrupt and rec.storage_class is not None:
        # Confirming the damage means reading it (a retrieval, after a thaw), and
        # replacing it deletes an archived object: for a person to decide.
        return (
            f"archived in {rec.storage_class}: its damage is not confirmed by reading it; "
            f"`repo thaw {rec.file_id}`, then `repo verify --deep --include-archived`"
        )
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
        result = put_version(session, rec, cached)
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
    if rec.storage_class is not None:
        # Back where the catalog says it is: the same archival class, verified.
        archivable(store).move_to_class(
            rec.key, rec.storage_class, md5=result.md5, size=result.size
        )
    logger.info("recovered %s (file %s) from this host's cache", rec.path, rec.file_id)
    report.recovered.append(finding)
    return None


def _chunks(
    items: Sequence[tuple[Finding, bool]], size: int
) -> Iterator[Sequence[tuple[Finding, bool]]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
