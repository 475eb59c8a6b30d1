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

import contextlib
import hashlib
import os
import queue
import stat
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from .cache import SMALL_DOWNLOAD_MAX, sync_filesystem
from .errors import ConflictError, StateError, UsageError, VerificationError
from .paths import safe_join
from .permissions import current_umask, written_mode
from .transfers import DEFAULT_WORKERS, archived_reads

if TYPE_CHECKING:
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
        session.locate(rf.record)  # all checked before anything is read or written
    if dest is not None and len({rf.path for rf in chosen}) != len(chosen):
        raise UsageError(
            "two versions of one path cannot be written to one directory",
            hint="fetch current versions only, or fetch without a destination",
        )
    out: _Output | None = None
    if dest is not None:
        out = _Output(Path(dest), chosen, overwrite=overwrite)
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

        store = session.locate(rec)
        if out is not None and rec.size <= SMALL_DOWNLOAD_MAX:
            with archived_reads(rec):
                data = session.cache.download_small(
                    store, rec.key, md5=rec.md5, size=rec.size, progress=advance, sync=False
                )
            out.write(rec, data)  # the bytes just verified: no second read or hash
        else:
            with archived_reads(rec):
                session.cache.download(
                    store, rec.key, md5=rec.md5, size=rec.size, progress=advance, sync=False
                )
            if out is not None:
                out.copy(session, rec)
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
                _run(lambda rec: out.copy(session, rec), hits, workers, on_done=_nothing)
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


def _flush_disks(cache_dir: Path | None, out: _Output | None) -> None:
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


class _Output:
    """The destination directory of a fetch: where each version goes, checked before
    anything is downloaded, and the writing of each file (safe in worker threads)."""

    def __init__(self, dest: Path, chosen: list[RepoFile], *, overwrite: bool) -> None:
        self.dest = dest
        self.overwrite = overwrite
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
        #: Each version's file, by path (`RepoFile.save_as` with ``exact``).
        self.targets = {rf.path: Path(safe_join(dest, rf.path)) for rf in chosen}
        for target in self.targets.values():
            self._check(target)  # before anything is downloaded; again before each write
        self._umask = current_umask()
        self._made: set[str] = set()
        self._lock = threading.Lock()
        self.wrote = False

    def _check(self, target: Path) -> None:
        """Refuse a place taken by something that is no regular file (nothing but a
        regular file is ever written inside the directory), or by any file unless
        overwriting (`destinations.is_stream`, `RepoFile.save_as`)."""
        try:
            mode = os.stat(target).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return  # a file in the way of its directory is found when that is made
        except OSError as exc:
            raise UsageError(f"cannot write {target}: {exc.strerror}") from exc
        if stat.S_ISDIR(mode):
            raise UsageError(f"{target} is a directory", hint="choose another destination")
        if not stat.S_ISREG(mode):
            raise UsageError(
                f"{target} exists and is not a regular file; not replacing it",
                hint="choose another destination",
            )
        if not self.overwrite:
            raise ConflictError(f"{target} already exists", hint="use --force to overwrite it")

    def write(self, rec: FileRecord, data: bytes) -> None:
        """Write verified `data` as `rec`'s file."""
        fd, tmp, target = self._open(rec)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def copy(self, session: Session, rec: FileRecord) -> None:
        """Copy `rec`'s cached copy out, hashing it on the way: a copy damaged on disk
        since it was verified is evicted and downloaded again, once (as is one evicted
        meanwhile)."""
        # Only uploaded versions are fetched, and those have both (for mypy).
        assert rec.md5 is not None  # noqa: S101
        assert rec.size is not None  # noqa: S101
        for attempt in (1, 2):
            fd, tmp, target = self._open(rec)
            try:
                try:
                    got = _copy_hashing(session.cache.cache_file(rec.key), fd)
                finally:
                    os.close(fd)
                if got == (rec.md5, rec.size):
                    os.replace(tmp, target)
                    return
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            os.unlink(tmp)
            if got is not None:
                session.cache.evict(rec.key)
                if attempt == 2:
                    raise VerificationError(
                        f"the local copy of {rec.path} (file {rec.file_id}) is damaged: md5 "
                        f"{got[0]}, expected {rec.md5}; it was removed from the cache",
                        hint="run the command again to download it afresh",
                    )
            session.cache.download(
                session.locate(rec), rec.key, md5=rec.md5, size=rec.size, sync=False
            )
        raise UsageError(
            f"the cached copy of {rec.path} (file {rec.file_id}) keeps disappearing",
            hint="check what removes files from this host's cache, then run again",
        )

    def _open(self, rec: FileRecord) -> tuple[int, str, Path]:
        """A new temporary file beside `rec`'s target (its directory made if missing),
        open for writing, with the permission bits recorded for `rec` less the umask."""
        target = self.targets[rec.path]
        self._check(target)
        parent = str(target.parent)
        if parent not in self._made:
            try:
                os.makedirs(parent, exist_ok=True)
            except OSError as exc:
                raise UsageError(f"cannot write to {parent}: {exc.strerror}") from exc
            with self._lock:
                self._made.add(parent)
        # Derived, not drawn at random: until the rename only this thread writes it.
        tmp = os.path.join(parent, f".{target.name}.{os.getpid()}-{threading.get_ident()}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        mode = written_mode(rec.mode, self._umask)
        try:
            fd = os.open(tmp, flags, mode)  # already less the umask
        except FileExistsError:  # left by a process that died and had our pid
            fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.")
            os.fchmod(fd, mode)
        except OSError as exc:
            raise UsageError(f"cannot write {target}: {exc.strerror}") from exc
        self.wrote = True
        return fd, tmp, target

    def sync(self, *, already: Path | None) -> None:
        """Flush the destination's file system to disk, unless it is the one `already`
        flushed (one ``syncfs`` covers every file on it)."""
        if already is not None:
            with contextlib.suppress(OSError):
                if os.stat(self.dest).st_dev == os.stat(already).st_dev:
                    return
        sync_filesystem(self.dest)


def _copy_hashing(source: str, fd: int) -> tuple[str, int] | None:
    """Copy the file `source` into `fd`; its md5 and size (None: there is no `source`)."""
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    try:
        src = open(source, "rb", buffering=0)  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return None
    with src:
        while chunk := src.read(_CHUNK):
            md5.update(chunk)
            size += len(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
    return md5.hexdigest(), size


_CHUNK = 1024 * 1024
