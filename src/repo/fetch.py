"""Bringing many versions into this host's cache at once, downloads in parallel.

`Repo.fetch(files)` is what a job that reads a whole set (say everything `find` returned)
calls first: copies already in the cache count as hits (a `stat`, no request), the rest
are downloaded by worker threads, each verified (size and md5) before it takes its final
name, exactly as a single `get_file(...).local_path` would; the file system is flushed
once for the batch rather than once per file. The catalog's list of copies is written
once at the end, not once per file.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .cache import sync_filesystem
from .catalog import FileRecord
from .errors import StateError, UsageError
from .paths import safe_join
from .transfers import DEFAULT_WORKERS

if TYPE_CHECKING:
    import os

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
        session.locate(rf.record)  # all checked before anything is read or written
    if dest is not None and len({rf.path for rf in chosen}) != len(chosen):
        raise UsageError(
            "two versions of one path cannot be written to one directory",
            hint="fetch current versions only, or fetch without a destination",
        )
    report = FetchReport(files=chosen)
    missing: list[FileRecord] = []
    now = datetime.now(UTC)
    for rf in chosen:
        rec = rf.record
        hit, news = session.cache.use(rec.key, rec.size)
        if hit is not None:
            report.cached += 1
            if news:  # else the catalog's last access is less than a minute old too
                session.copies.noted(rec.file_id, fresh=False, key=rec.key, flush=False, when=now)
        else:
            missing.append(rec)
    if progress is not None:
        progress.begin(sum(r.size or 0 for r in missing), len(missing))
    lock = threading.Lock()

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

        session.cache.download(
            session.locate(rec),
            rec.key,
            md5=rec.md5,
            size=rec.size,
            progress=advance,
            sync=False,
        )
        if progress is not None:
            with lock:
                progress.file_done()

    try:
        if missing:
            session.copies.make_room(sum(r.size or 0 for r in missing))
            try:
                _run(download, missing, workers, on_done=lambda rec: _done(session, report, rec))
            finally:
                # Once for the batch (see `LocalCache.download`), before the copies are
                # recorded in the catalog.
                session.cache.sync_to_disk()
        if dest is not None:
            _write_out(chosen, Path(dest), report, overwrite=overwrite)
    finally:
        # New copies are recorded now; hits only bump their access time, which waits
        # for the next periodic flush (a warm fetch writes nothing to the catalog).
        if report.downloaded:
            session.copies.flush()
    report.bytes = sum(rf.size or 0 for rf in chosen)
    return report


def _done(session: Session, report: FetchReport, rec: FileRecord) -> None:
    report.downloaded += 1
    session.copies.noted(rec.file_id, fresh=True, key=rec.key, flush=False)


Step = Callable[[FileRecord], None]


def _run(work: Step, records: list[FileRecord], workers: int, *, on_done: Step) -> None:
    """Run `work(rec)` for every record in a pool, calling `on_done(rec)` in this thread
    as each succeeds; the first failure cancels what has not started and is raised.

    Finished work comes back through one queue: waiting on the pending futures instead
    (`concurrent.futures.wait`) registers a waiter with every one of them for every
    file, and the threads spend their time waking each other."""
    finished: queue.SimpleQueue[tuple[int, FileRecord, BaseException | None]]
    finished = queue.SimpleQueue()

    def one(index: int, rec: FileRecord) -> None:
        try:
            work(rec)
        except BaseException as exc:
            finished.put((index, rec, exc))
        else:
            finished.put((index, rec, None))

    def collect() -> None:
        index, rec, exc = finished.get()
        del pending[index]
        if exc is not None:
            raise exc
        on_done(rec)

    pending: dict[int, Future[None]] = {}
    window = workers * 4
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="repo-fetch")
    try:
        for index, rec in enumerate(records):
            pending[index] = pool.submit(one, index, rec)
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


def _write_out(chosen: list[RepoFile], dest: Path, report: FetchReport, *, overwrite: bool) -> None:
    """Copy each version out of the cache to ``dest/<its path>`` (`RepoFile.save_as`).

    Each to exactly that file: paths where one is a directory of another (``cfg`` and
    ``cfg/x``) are refused before anything is written, rather than one written into the
    other's place.
    """
    names = {rf.path for rf in chosen}
    for rf in chosen:
        parts = rf.path.split("/")
        clash = next(
            ("/".join(parts[:i]) for i in range(1, len(parts)) if "/".join(parts[:i]) in names),
            None,
        )
        if clash is not None:
            raise UsageError(
                f"{clash} and {rf.path} cannot both be written under {dest}: one is a "
                "directory of the other",
                hint="fetch them in two runs, into different directories",
            )
    try:
        for rf in chosen:
            target = Path(safe_join(dest, rf.path))
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(f"cannot write to {target.parent}: {exc.strerror}") from exc
            report.written[rf.path] = rf.save_as(
                target, overwrite=overwrite, sync=False, exact=True
            )
    finally:
        if report.written:
            sync_filesystem(dest)  # once for the batch, not an fsync per file
