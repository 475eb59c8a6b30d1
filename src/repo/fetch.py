"""Bringing many versions into this host's cache at once, downloads in parallel.

`Repo.fetch(files)` is what a job that reads a whole set (say everything `find` returned)
calls first: copies already in the cache count as hits (a `stat`, no request), the rest
are downloaded by worker threads, each verified (size and md5) before it takes its final
name, exactly as a single `get_file(...).local_path` would; the file system is flushed
once for the batch rather than once per file. The catalog's list of copies is written
once at the end, not once per file.

With a destination directory, each worker also writes its file there as soon as the
version is verified: a small download from the bytes it verified in memory, anything
else from the cached copy, hashed again on the way out. Files land beside their final
name and are renamed into place, so each is either absent, as it was, or complete.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from .cache import SMALL_DOWNLOAD_MAX, sync_filesystem
from .errors import StateError, UsageError
from .failover import LostCopy, note_lost, read_any
from .fetch_output import FetchOutput
from .transfers import DEFAULT_WORKERS, archived_reads

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Iterable

    from .catalog import FileRecord
    from .file import RepoFile
    from .progress import ProgressListener
    from .session import Session

__all__ = ["FetchReport", "fetch_many"]


@dataclass
class FetchReport:
    """What `Repo.fetch` brought into the cache (and copied out, given a destination)."""

    files: list[RepoFile] = field(default_factory=list)
    #: Versions downloaded now, and versions whose verified copy was already cached.
    downloaded: int = 0
    cached: int = 0
    bytes: int = 0
    #: With a destination directory: where each version was written, by path.
    written: dict[str, Path] = field(default_factory=dict)


def fetch_many(
    session: Session,
    files: Iterable[RepoFile],
    *,
    dest: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    workers: int = DEFAULT_WORKERS,
    progress: ProgressListener | None = None,
) -> FetchReport:
    if workers < 1:
        raise UsageError("workers must be at least 1")
    chosen = list(dict.fromkeys(files))
    for rf in chosen:
        if not rf.uploaded:
            raise StateError(
                f"{rf.path} (file {rf.file_id}) has no content in the store yet",
                hint="upload it first",
            )
        session.check_readable(rf.record)  # all checked before anything is read or written
    if dest is not None and len({rf.path for rf in chosen}) != len(chosen):
        raise UsageError(
            "two versions of one path cannot be written to one directory",
            hint="fetch current versions only, or fetch without a destination",
        )
    out: FetchOutput | None = None
    if dest is not None:
        out = FetchOutput(Path(dest), chosen, overwrite=overwrite)
    report = FetchReport(files=chosen)
    missing: list[FileRecord] = []
    hits: list[FileRecord] = []
    now = datetime.now(UTC)
    for rf in chosen:
        rec = rf.record
        hit, news = session.cache.use(rec.key, rec.size)
        if hit is not None:
            report.cached += 1
            hits.append(rec)
            if news:  # else the catalog's last access is less than a minute old too
                session.copies.noted(rec.file_id, fresh=False, key=rec.key, flush=False, when=now)
        else:
            missing.append(rec)
    if progress is not None:
        progress.begin(sum(r.size or 0 for r in missing), len(missing))
    lock = threading.Lock()
    # With several stores, the copies of what is to be downloaded (and, with a
    # destination, of the hits, for a cached copy found damaged on the way out), read
    # here in one query per batch: the workers must not query the catalog
    # (docs/replicas.md).
    readable = missing + hits if out is not None else missing
    copies = (
        session.catalog.replicas_of(r.file_id for r in readable)
        if readable and session.config.stores
        else {}
    )
    lost: list[LostCopy] = []

    def download(rec: FileRecord) -> None:
        # Only uploaded versions are fetched, and those have both (for mypy).
        assert rec.md5 is not None  # noqa: S101
        assert rec.size is not None  # noqa: S101
        advance = None
        if progress is not None:
            listener = progress

            def advance(nbytes: int) -> None:
                with lock:
                    listener.advance(nbytes)

        md5, size = rec.md5, rec.size
        mine = copies.get(rec.file_id, [])
        if out is not None and size <= SMALL_DOWNLOAD_MAX:
            with archived_reads(rec):
                data = read_any(
                    session,
                    rec,
                    lambda store, key: session.cache.download_small(
                        store, key, md5=md5, size=size, progress=advance, sync=False, name=rec.key
                    ),
                    copies=mine,
                    lost=lost,
                )
            out.write(rec, data)  # the bytes just verified: no second read or hash
        else:
            with archived_reads(rec):
                read_any(
                    session,
                    rec,
                    lambda store, key: session.cache.download(
                        store, key, md5=md5, size=size, progress=advance, sync=False, name=rec.key
                    ),
                    copies=mine,
                    lost=lost,
                )
            if out is not None:
                out.copy(session, rec, copies=mine, lost=lost)
        if progress is not None:
            with lock:
                progress.file_done()

    syncing: threading.Thread | None = None
    try:
        if missing:
            session.copies.make_room(sum(r.size or 0 for r in missing))
        try:
            # Hits first: they only copy out (and only with a destination).
            if out is not None and hits:
                _run(
                    lambda rec: out.copy(
                        session, rec, copies=copies.get(rec.file_id, []), lost=lost
                    ),
                    hits,
                    workers,
                    on_done=_nothing,
                )
            if missing:
                _run(download, missing, workers, on_done=lambda rec: _done(session, report, rec))
        finally:
            # The disk is flushed once for the batch (see `LocalCache.download`), the
            # destination too if it is elsewhere; in a thread, while the catalog's list
            # of copies is written (advisory: a copy lost to a power cut before the flush
            # ends is found short or empty on disk and never served). This returns only
            # once the flush is done.
            if missing or (out is not None and out.wrote):
                syncing = threading.Thread(
                    target=_flush_disks,
                    args=(session.cache.cache_dir if missing else None, out),
                    name="repo-fetch-sync",
                )
                syncing.start()
        if out is not None:
            report.written = {rf.path: out.targets[rf.path] for rf in chosen}
    finally:
        if lost:
            note_lost(session, lost)
        try:
            # New copies are recorded now; hits only bump their access time, which waits
            # for the next periodic flush (a warm fetch writes nothing to the catalog).
            if report.downloaded:
                session.copies.flush()
        finally:
            if syncing is not None:
                syncing.join()
    report.bytes = sum(rf.size or 0 for rf in chosen)
    return report


def _flush_disks(cache_dir: Path | None, out: FetchOutput | None) -> None:
    """Flush the file system of the cache (if downloads went there) and that of the
    destination (if files were written there and it is another one)."""
    if cache_dir is not None:
        sync_filesystem(cache_dir)
    if out is not None and out.wrote:
        out.sync(already=cache_dir)


def _done(session: Session, report: FetchReport, rec: FileRecord) -> None:
    report.downloaded += 1
    session.copies.noted(rec.file_id, fresh=True, key=rec.key, flush=False)


def _nothing(rec: FileRecord) -> None:
    pass


_T = TypeVar("_T")


def _run(
    work: Callable[[_T], None], items: list[_T], workers: int, *, on_done: Callable[[_T], None]
) -> None:
    """Run `work(item)` for every item in a pool, calling `on_done(item)` in this thread
    as each succeeds; the first failure cancels what has not started and is raised.

    Finished work comes back through one queue: waiting on the pending futures instead
    (`concurrent.futures.wait`) registers a waiter with every one of them for every
    file, and the threads spend their time waking each other."""
    finished: queue.SimpleQueue[tuple[int, _T, BaseException | None]]
    finished = queue.SimpleQueue()

    def one(index: int, item: _T) -> None:
        try:
            work(item)
        except BaseException as exc:
            finished.put((index, item, exc))
        else:
            finished.put((index, item, None))

    def collect() -> None:
        index, item, exc = finished.get()
        del pending[index]
        if exc is not None:
            raise exc
        on_done(item)

    pending: dict[int, Future[None]] = {}
    window = workers * 4
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="repo-fetch")
    try:
        for index, item in enumerate(items):
            pending[index] = pool.submit(one, index, item)
            if len(pending) >= window:
                collect()
        while pending:
            collect()
    except BaseException:
        for future in pending.values():
            future.cancel()
        raise
    finally:
        pool.shutdown(wait=True)
