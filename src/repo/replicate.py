"""`repo replicate`: bring every live version up to `numcopies` verified copies.

For each uploaded version that garbage collection has not claimed (published, or expired
and kept for backups), the stores without a verified copy are filled in configuration
order until the version has `numcopies` (docs/replicas.md). Copies go in batches: each
batch's copies are claimed in the catalog (``writing``) in one transaction, committed
before a byte is sent; worker threads make them (`copying.write_copy`: streamed from a
verified copy, its md5 checked on the way, written create-only and checked at the
destination; or copied by the server where both stores are buckets of one S3 server);
then those verified are recorded in one more transaction. Only this thread touches the
catalog. A run killed anywhere leaves rows that name every object it may have written;
the next run finishes them. Idempotent: everything starts from the catalog.
"""

from __future__ import annotations

import logging
import queue
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .backup_place import place_in
from .catalog.replica_batches import CopyClaim, CopyVerified
from .copying import CopySource, copy_backups, copy_sources, write_copy
from .errors import NotFoundError, RepoError, StoreError
from .failover import note_lost
from .progress import Tally
from .transfers import DEFAULT_WORKERS

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .catalog import FileRecord
    from .failover import LostCopy
    from .progress import ProgressListener
    from .session import Session

__all__ = ["ReplicateReport", "replicate", "replicate_published"]

logger = logging.getLogger(__name__)

#: Versions read from the catalog at a time.
PAGE = 500
#: Copies claimed in one transaction, and their bytes (one larger copy goes alone): a
#: run killed midway leaves at most this much to finish (read back) by the next.
BATCH_COPIES = 64
BATCH_BYTES = 512 * 1024**2
#: Copies of a batch made at once, in worker threads (which never touch the catalog).
WORKERS = DEFAULT_WORKERS


@dataclass(slots=True)
class ReplicateReport:
    """What a `replicate` run did (or, with `dry_run`, would do)."""

    dry_run: bool
    numcopies: int
    #: Versions looked at, and those found below `numcopies`.
    checked: int = 0
    under: int = 0
    #: Copies made (or to be made), and their bytes.
    copied: int = 0
    bytes: int = 0
    #: Versions still below `numcopies` after the run, by file id, with why.
    still_under: dict[int, str] = field(default_factory=dict)
    #: Catalog backup and journal objects copied into the other stores (or to be).
    backup_objects: int = 0
    backup_bytes: int = 0
    #: Stores the backups and journal could not be copied into, with why.
    backup_failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.still_under or self.backup_failed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "numcopies": self.numcopies,
            "checked": self.checked,
            "under": self.under,
            "copied": self.copied,
            "bytes": self.bytes,
            "still_under": [{"id": k, "why": v} for k, v in sorted(self.still_under.items())],
            "backup_objects": self.backup_objects,
            "backup_bytes": self.backup_bytes,
            "backup_failed": [
                {"store": k, "why": v} for k, v in sorted(self.backup_failed.items())
            ],
            "ok": self.ok,
        }


def replicate(
    session: Session, *, dry_run: bool = False, progress: ProgressListener | None = None
) -> ReplicateReport:
    """Bring every live version up to `numcopies` verified copies (see the module).
    `progress` hears of each copy made (bytes, then the file); its totals grow as the
    catalog is read, a page of versions at a time."""
    session.require_clean("replicating")
    config = session.config
    report = ReplicateReport(dry_run=dry_run, numcopies=config.numcopies)
    tally = Tally(progress)
    after = 0
    while page := session.catalog.versions_to_copy(after_id=after, limit=PAGE):
        after = page[-1].file_id
        _replicate_page(session, page, report, tally)
    # The catalog's backups and journal too: a restore must not need the default store.
    for name in config.stores:
        dest = place_in(config, session.stores.named(name))
        try:
            count, size = copy_backups(
                session.backups, dest, session.scratch_dir(), dry_run=dry_run
            )
        except RepoError as exc:  # one store down must not stop the others (reported)
            logger.info("backups and journal not copied into store %s: %s", name, exc)
            report.backup_failed[name] = str(exc)
            continue
        report.backup_objects += count
        report.backup_bytes += size
    return report


def replicate_published(session: Session, file_ids: list[int]) -> ReplicateReport:
    """Bring the versions just published (`replicate_on_publish: now`) up to
    `numcopies`, once their publish is committed; what fails stays under-replicated for
    `repo replicate`, and is logged."""
    report = ReplicateReport(dry_run=False, numcopies=session.config.numcopies)
    try:
        page = [session.catalog.get(i) for i in sorted(set(file_ids))]
    finally:
        session.catalog.end_read()
    _replicate_page(session, [r for r in page if r.md5 is not None], report, Tally(None))
    for file_id, why in report.still_under.items():
        logger.warning("file %s is published but under-replicated: %s", file_id, why)
    return report


def _replicate_page(
    session: Session, page: list[FileRecord], report: ReplicateReport, tally: Tally
) -> None:
    config = session.config
    copies = session.catalog.replicas_of([rec.file_id for rec in page])
    session.catalog.end_read()
    wanted: list[_Copy] = []
    for rec in page:
        report.checked += 1
        sources = copy_sources(session, rec, copies.get(rec.file_id, []))
        need = config.numcopies - len(sources)
        if need <= 0:
            continue
        report.under += 1
        held = {s.name for s in sources}
        targets = [n for n in config.store_names if n not in held][:need]
        if not sources:
            report.still_under[rec.file_id] = "no verified copy to copy from"
            continue
        for name in targets:
            if report.dry_run:
                report.copied += 1
                report.bytes += rec.size or 0
                continue
            try:
                key = session.stores.copy_key(rec, name)
            except RepoError as exc:
                logger.warning("file %s: no copy in store %s: %s", rec.file_id, name, exc)
                report.still_under[rec.file_id] = f"store {name}: {exc}"
                continue
            wanted.append(_Copy(rec, sources, name, key))
    if wanted:
        tally.grow(len(wanted), sum(c.rec.size or 0 for c in wanted))
        _copy_all(session, wanted, report, tally)


@dataclass(frozen=True, slots=True)
class _Copy:
    """One copy to make: the version, where to read it, which store and key to write."""

    rec: FileRecord
    sources: list[CopySource]
    store: str
    key: str


def _batches(wanted: list[_Copy]) -> Iterator[list[_Copy]]:
    """`wanted` in batches of at most `BATCH_COPIES` copies and `BATCH_BYTES` bytes (a
    larger copy goes alone)."""
    batch: list[_Copy] = []
    size = 0
    for copy in wanted:
        bytes_ = copy.rec.size or 0
        if batch and (len(batch) == BATCH_COPIES or size + bytes_ > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(copy)
        size += bytes_
    if batch:
        yield batch


@dataclass(slots=True)
class _Batch:
    """Copies claimed in one transaction, under way in the pool, and what came of them."""

    todo: list[_Copy]
    resumed: set[tuple[int, str]]
    remaining: int = 0
    lost: list[LostCopy] = field(default_factory=list)
    made: list[tuple[_Copy, str]] = field(default_factory=list)
    failed: list[tuple[_Copy, RepoError]] = field(default_factory=list)
    futures: list[Future[None]] = field(default_factory=list)


def _copy_all(session: Session, wanted: list[_Copy], report: ReplicateReport, tally: Tally) -> None:
    """Make `wanted` in batches: each claimed in one transaction (committed before a byte
    is sent), its copies made in the pool, then those verified recorded in one more.
    While a batch's copies run, the one before it is recorded and the next one claimed
    (at most two under way), so the workers do not wait on the catalog."""
    scratch = session.scratch_dir()
    #: Stores found not answering in this run (a copy failed, then a HEAD too), with
    #: why: no more copies are tried or claimed there, so a dead store costs one
    #: timeout per worker, not one per version.
    down: dict[str, str] = {}
    # Workers put what they made into their batch themselves (so a Ctrl-C landing
    # anywhere in this thread loses none of it) and say here only that they are done.
    finished: queue.SimpleQueue[tuple[_Batch, BaseException | None]] = queue.SimpleQueue()
    under_way: list[_Batch] = []

    def one(batch: _Batch, c: _Copy) -> None:
        try:
            if c.store in down:
                raise StoreError(down[c.store])
            store = session.stores.named(c.store)
            again = (c.rec.file_id, c.store) in batch.resumed
            sent = [0]

            def moved(nbytes: int) -> None:
                sent[0] += nbytes
                tally.moved(nbytes)

            done = write_copy(
                store,
                c.rec,
                c.sources,
                c.key,
                scratch=scratch,
                lost=batch.lost,
                resumed=again,
                progress=moved if tally.listener is not None else None,
            )
            batch.made.append((c, done))
            tally.file_done((c.rec.size or 0) - sent[0])
        except RepoError as exc:
            if isinstance(exc, StoreError) and c.store not in down:
                _check_answers(session, c, exc, down)
            batch.failed.append((c, exc))
        except BaseException as exc:  # a bug: handed to the calling thread
            finished.put((batch, exc))
            return
        finished.put((batch, None))

    def take() -> None:
        batch, exc = finished.get()
        if exc is not None:
            raise exc
        batch.remaining -= 1
        if batch.remaining == 0:
            under_way.remove(batch)
            _record(session, batch, report)

    pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="repo-replicate")
    try:
        for chunk in _batches(wanted):
            for c in chunk:
                if c.store in down:
                    report.still_under[c.rec.file_id] = f"store {c.store}: {down[c.store]}"
            chunk = [c for c in chunk if c.store not in down]
            batch = _claim(session, chunk, report) if chunk else None
            if batch is None:
                continue
            under_way.append(batch)
            batch.futures = [pool.submit(one, batch, c) for c in batch.todo]
            while len(under_way) > 1:
                take()
        while under_way:
            take()
    except BaseException:
        # Interrupted (Ctrl-C) or a bug: nothing new starts; copies under way finish.
        for batch in under_way:
            for future in batch.futures:
                future.cancel()
        raise
    finally:
        pool.shutdown(wait=True)
        # Also when interrupted: what was verified is recorded; rows left ``writing``
        # are finished by the next run.
        for batch in under_way:
            _record(session, batch, report)


def _check_answers(session: Session, c: _Copy, exc: StoreError, down: dict[str, str]) -> None:
    """After a copy into `c.store` failed: does the store answer at all (a HEAD of the
    copy's key)? If not, it is down for the rest of the run."""
    try:
        session.stores.named(c.store).head(c.key)
    except NotFoundError:
        return
    except RepoError as probe:
        if c.store not in down:
            down[c.store] = f"not answering, no more copies tried there in this run ({probe})"
            logger.warning("store %s: %s; first failure: %s", c.store, down[c.store], exc)


def _claim(session: Session, chunk: list[_Copy], report: ReplicateReport) -> _Batch | None:
    """Claim `chunk`'s copies in one transaction, committed; None if none was claimed."""
    try:
        claimed = session.catalog.claim_replicas(
            [CopyClaim(c.rec.file_id, c.store, c.key) for c in chunk], when=datetime.now(UTC)
        )
        session.commit()  # the rows name the objects before they exist
    except RepoError as exc:
        session.rollback()
        logger.warning("%d copies not claimed: %s", len(chunk), exc)
        for c in chunk:
            report.still_under[c.rec.file_id] = f"store {c.store}: {exc}"
        return None
    batch = _Batch(todo=[], resumed=set())
    for c in chunk:
        at = (c.rec.file_id, c.store)
        if at not in claimed:
            report.still_under[c.rec.file_id] = "purged or claimed by GC meanwhile"
            continue
        batch.todo.append(c)
        if claimed[at] is not None:
            batch.resumed.add(at)
    batch.remaining = len(batch.todo)
    return batch if batch.todo else None


def _record(session: Session, batch: _Batch, report: ReplicateReport) -> None:
    for c, exc in batch.failed:
        logger.info("file %s: no copy in store %s: %s", c.rec.file_id, c.store, exc)
        report.still_under[c.rec.file_id] = f"store {c.store}: {exc}"
    note_lost(session, batch.lost)
    _record_made(session, batch.made, report)


def _record_made(session: Session, made: list[tuple[_Copy, str]], report: ReplicateReport) -> None:
    """Record the copies made verified, in one transaction; a copy whose row is gone (GC
    took the version meanwhile; its delete may have run before our put) is deleted."""
    if not made:
        return
    try:
        kept = session.catalog.replicas_verified(
            [
                CopyVerified(c.rec.file_id, c.store, c.key, c.rec.md5 or "", c.rec.size or 0, w)
                for c, w in made
            ],
            when=datetime.now(UTC),
        )
        session.commit()
    except RepoError as exc:
        session.rollback()
        logger.warning("%d verified copies not recorded: %s", len(made), exc)
        for c, _ in made:
            report.still_under[c.rec.file_id] = f"store {c.store}: {exc}"
        return
    for (c, _), ok in zip(made, kept, strict=True):
        if ok:
            report.copied += 1
            report.bytes += c.rec.size or 0
            logger.info("file %s (%s): copied to store %s", c.rec.file_id, c.rec.path, c.store)
            continue
        report.still_under[c.rec.file_id] = "purged meanwhile; its new copy deleted"
        try:
            session.stores.named(c.store).delete_many([c.key])
        except RepoError as exc:
            logger.warning("the copy of purged file %s at %s stays: %s", c.rec.file_id, c.key, exc)
