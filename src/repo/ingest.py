"""Adding files from outside: one file or stream, or a whole directory in parallel.

Every input is checked (paths, tags, dates, that sources are readable regular files)
before anything is written, so bad input records nothing. A local file is sent from
where it is and read once: the md5 recorded is that of the bytes sent, and the version
is recorded only once its object is stored and verified. A stream, or a file whose copy
is to be kept in the cache, is first copied into a private staging file and sent from
that copy, so the cache never disagrees with the store whatever the source does next.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import stat
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from .catalog import FileRecord, NewVersion
from .errors import NotFoundError, StoreError, UsageError, local_disk_error
from .file import RepoFile
from .lookup import new_version
from .paths import make_key, new_version_token, validate_path
from .progress import ProgressListener
from .staging import INCOMING_PREFIX
from .stores.base import SMALL_OBJECT_MAX, Progress
from .tags import tags_with_dates
from .transfers import DEFAULT_WORKERS, put_new

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from .session import Session

__all__ = ["AddReport", "ProgressListener", "add_one", "add_tree"]

_CHUNK = 1024 * 1024
#: Uploaded versions recorded in the catalog per batch (`Catalog.add_uploaded`).
RECORD_BATCH = 500

logger = logging.getLogger(__name__)


@dataclass
class AddReport:
    """What `Repo.add_tree` added."""

    files: list[RepoFile] = field(default_factory=list)
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class _Plan:
    path: str
    source: str
    size: int


def _check_source(source: str | Path) -> int:
    try:
        st = os.stat(source)
    except FileNotFoundError:
        raise NotFoundError(f"no such file: {source}") from None
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{source} is a directory", hint="add a directory with --recursive")
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{source} is not a regular file")
    if not os.access(source, os.R_OK):
        raise UsageError(f"cannot read {source}: permission denied")
    return st.st_size


def add_one(
    session: Session,
    path: str,
    source: str | os.PathLike[str] | BinaryIO,
    *,
    tags: Iterable[str] = (),
    when: datetime | date | None = None,
    period: str | None = None,
    publish: bool = False,
    progress: Progress | None = None,
    keep_cached: bool | None = None,
) -> RepoFile:
    path = validate_path(path, key_prefix=session.store.key_prefix)
    names = tags_with_dates(tags, when=when, period=period)
    if isinstance(source, str | os.PathLike) and not keep_cached:
        return _add_from_file(session, path, Path(source), names, publish, progress)
    # The content is taken in first, into a private file, so that a source that cannot
    # be read (or a stream that breaks off) records nothing at all.
    incoming = _take_in(session, source)
    try:
        rf = new_version(session, path)
        os.replace(incoming, rf.writable_path())
    except BaseException:
        session.staging.discard(incoming)
        raise
    rf.upload(progress=progress)
    if keep_cached is False:
        session.cache.evict(rf.key)  # asked for no copy: the private one goes
    if names:
        rf.tag(*names)
    if publish:
        rf.publish()
    return rf


def _add_from_file(
    session: Session,
    path: str,
    source: Path,
    names: list[str],
    publish: bool,
    progress: Progress | None,
) -> RepoFile:
    """Send a local file straight from where it is (no copy: it is on this host already):
    the store reads it once, hashing the bytes it sends, so the recorded md5 is that of
    the object even if the file changes meanwhile. Recorded only once stored and verified.
    """
    _check_source(source)
    created = datetime.now(UTC)
    key = make_key(session.store.key_prefix, path, new_version_token())
    try:
        result = put_new(session, path, key, source, created, progress)
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror or exc}") from exc
    version = NewVersion(
        path=path,
        key=result.key,
        md5=result.md5,
        size=result.size,
        verified_with=result.verified_with,
    )
    records, superseded = _record_uploaded(session, [version], created, names, publish)
    if superseded:
        logger.info("published %s; expired %d earlier version", path, len(superseded))
    return RepoFile(session, records[0])


def _take_in(session: Session, source: str | os.PathLike[str] | BinaryIO) -> Path:
    """Copy `source` into a new private file under the staging directory."""
    staging = session.staging.prepare()
    try:
        fd, name = tempfile.mkstemp(dir=staging, prefix=INCOMING_PREFIX)
    except OSError as exc:
        raise local_disk_error(exc, f"writing to the staging area at {staging}") from exc
    incoming = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            if isinstance(source, str | os.PathLike):
                _check_source(Path(source))
                with open(source, "rb") as src:
                    shutil.copyfileobj(src, out, _CHUNK)
            else:
                for chunk in iter(lambda: source.read(_CHUNK), b""):
                    if not isinstance(chunk, bytes | bytearray | memoryview):
                        raise UsageError(
                            "the stream gives text, not bytes",
                            hint="open it in binary mode ('rb'), or pass sys.stdin.buffer",
                        )
                    out.write(chunk)
    except OSError as exc:
        session.staging.discard(incoming)
        raise UsageError(f"cannot read the content: {exc.strerror or exc}") from exc
    except BaseException:
        session.staging.discard(incoming)
        raise
    return incoming


def _walk(directory: str) -> Iterator[tuple[str, str]]:
    """(file, its path relative to `directory` with '/' separators) for every file under
    `directory`, in a stable order; symlinked directories are not followed (no loops),
    symlinked files are read through. Plain strings: a tree can hold a million files."""
    start = len(os.path.join(directory, ""))
    for root, dirs, names in os.walk(directory, onerror=_raise):
        dirs.sort()
        rel_root = root[start:].replace(os.sep, "/") + "/" if len(root) > start else ""
        for name in sorted(names):
            yield os.path.join(root, name), rel_root + name


def _raise(exc: OSError) -> None:
    raise UsageError(f"cannot read {exc.filename}: {exc.strerror}")


def plan_tree(directory: Path, prefix: str, key_prefix: str) -> list[_Plan]:
    if not directory.is_dir():
        if not directory.exists():
            raise NotFoundError(f"no such directory: {directory}")
        raise UsageError(f"{directory} is not a directory")
    base = prefix.strip("/")
    plans = []
    for source, rel in _walk(os.path.normpath(directory)):
        path = validate_path(f"{base}/{rel}" if base else rel, key_prefix=key_prefix)
        plans.append(_Plan(path=path, source=source, size=_check_source(source)))
    if not plans:
        raise UsageError(f"no files under {directory}")
    seen: dict[str, str] = {}
    for plan in plans:
        # Names that differ only by Unicode normalisation map to one repository path.
        if plan.path in seen:
            raise UsageError(
                f"{seen[plan.path]} and {plan.source} would both be added as {plan.path!r}"
            )
        seen[plan.path] = plan.source
    return plans


def add_tree(
    session: Session,
    directory: str | os.PathLike[str],
    *,
    prefix: str = "",
    tags: Iterable[str] = (),
    when: datetime | date | None = None,
    period: str | None = None,
    publish: bool = False,
    workers: int = DEFAULT_WORKERS,
    progress: ProgressListener | None = None,
    keep_cached: bool = False,
) -> AddReport:
    """Upload every file under `directory` in worker threads; the catalog records them
    in batches (`Catalog.add_uploaded`), in the calling thread and the caller's
    transaction."""
    if workers < 1:
        raise UsageError("workers must be at least 1")
    plans = plan_tree(Path(directory), prefix, session.store.key_prefix)
    names = tags_with_dates(tags, when=when, period=period)
    lock = threading.Lock()
    advance: Progress | None = None
    if progress is not None:
        progress.begin(sum(p.size for p in plans), len(plans))
        listener = progress

        def advance(nbytes: int) -> None:
            with lock:
                listener.advance(nbytes)

    staging = session.staging
    staging.prepare()
    created = datetime.now(UTC)
    report = AddReport()
    # Uploads in flight, by version token (which names the staging copy a large file is
    # sent from, discarded on failure); each finished one comes back through `finished`,
    # success or not.
    pending: dict[str, Future[None]] = {}
    finished: queue.SimpleQueue[tuple[str, NewVersion | None, bool, BaseException | None]]
    finished = queue.SimpleQueue()
    # Each upload with the token of its staging copy (None: a small file sent from memory).
    done_uploads: list[tuple[NewVersion, str | None]] = []
    # Uploads go on while the calling thread records a batch in the catalog, so the
    # window holds more than one batch: the workers never wait for the catalog.
    window = max(workers * 4, 2 * RECORD_BATCH)

    key_prefix = session.store.key_prefix

    staging_of = staging.incoming

    def send(plan: _Plan, token: str) -> None:
        try:
            version, staged = _send(plan, token)
        except BaseException as exc:
            finished.put((token, None, False, exc))
        else:
            finished.put((token, version, staged, None))

    def _send(plan: _Plan, token: str) -> tuple[NewVersion, bool]:
        # A small file is read once: the same bytes are hashed, sent and cached. A
        # larger one is copied into staging first and sent from there (`add_one`).
        data = _read_small(plan.source, plan.size) if plan.size <= SMALL_OBJECT_MAX else None
        body: bytes | Path
        if data is None:
            body = staging_of(token)
            try:
                shutil.copyfile(plan.source, body)
            except OSError as exc:
                raise UsageError(f"cannot read {plan.source}: {exc.strerror}") from exc
            size = os.stat(body).st_size
        else:
            body, size = data, len(data)
        key = make_key(key_prefix, plan.path, token)
        result = put_new(session, plan.path, key, body, created, _capped(advance, size))
        if data is not None and keep_cached:
            session.cache.store_bytes(result.key, data)
        if progress is not None:
            with lock:
                progress.file_done()
        version = NewVersion(
            path=plan.path,
            key=result.key,
            md5=result.md5,
            size=result.size,
            verified_with=result.verified_with,
        )
        return version, data is None

    def collect_one() -> None:
        token, version, staged, exc = finished.get()
        if exc is not None:
            raise exc  # the entry stays in `pending`, for cleanup
        assert version is not None  # noqa: S101 - set when exc is None (for mypy)
        del pending[token]
        done_uploads.append((version, token if staged else None))

    def record() -> None:
        batch = done_uploads[:]
        records, superseded = _record_uploaded(
            session, [v for v, _ in batch], created, names, publish
        )
        del done_uploads[:]
        if superseded:
            logger.info("published %d files; expired %d", len(records), len(superseded))
        for rec, (_, token) in zip(records, batch, strict=True):
            staging = staging_of(token) if token is not None else None
            if keep_cached:
                session.copies.keep_uploaded(rec, staging)
            elif staging is not None:
                session.staging.discard(staging)
            report.files.append(RepoFile(session, rec))

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="repo-add")
    try:
        for plan in plans:
            token = new_version_token()
            pending[token] = pool.submit(send, plan, token)
            if len(pending) >= window:
                collect_one()
            if len(done_uploads) >= RECORD_BATCH:
                record()
        while pending:
            collect_one()
        record()
    except BaseException as exc:
        for future in pending.values():
            future.cancel()
        pool.shutdown(wait=True)
        tokens = [*pending, *(t for _, t in done_uploads if t is not None)]
        for token in tokens:
            session.staging.discard(staging_of(token))
        if isinstance(exc, OSError):
            raise StoreError(f"adding files from {directory} failed: {exc}") from exc
        raise
    finally:
        pool.shutdown(wait=True)
    report.files.sort(key=lambda f: f.path)
    report.bytes = sum(f.size or 0 for f in report.files)
    return report


def _record_uploaded(
    session: Session, versions: list[NewVersion], created: datetime, names: list[str], publish: bool
) -> tuple[list[FileRecord], list[int]]:
    """Record verified uploads from this host in the caller's transaction."""
    return session.catalog.add_uploaded(
        versions,
        bucket=session.store.bucket,
        origin=session.host,
        created_at=created,
        uploaded_at=datetime.now(UTC),
        tags=names,
        publish=publish,
    )


def _read_small(source: str | Path, size: int) -> bytes | None:
    """The whole of a small file planned at `size` bytes, or None if it has grown past
    `SMALL_OBJECT_MAX`. Plain system calls, asking for what the file holds: a buffered
    ``read(limit)`` would allocate the whole limit (4 MiB) for every 4 KiB file."""
    try:
        fd = os.open(source, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            data = os.read(fd, size + 1)
            if len(data) > size:  # it has grown since it was planned: read on
                while len(data) <= SMALL_OBJECT_MAX:
                    more = os.read(fd, SMALL_OBJECT_MAX + 1 - len(data))
                    if not more:
                        break
                    data += more
        finally:
            os.close(fd)
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror}") from exc
    return data if len(data) <= SMALL_OBJECT_MAX else None


def _capped(progress: Progress | None, size: int) -> Progress | None:
    """`progress` for one file, never passing on more than its size in total (a put that
    fails late may already have reported bytes; its retry reports them again)."""
    if progress is None:
        return None
    sent = 0

    def report(nbytes: int) -> None:
        nonlocal sent
        step = min(nbytes, size - sent)
        if step > 0:
            sent += step
            assert progress is not None  # noqa: S101 - checked above (for mypy)
            progress(step)

    return report
