"""Adding files from outside: one file or stream, or a whole directory in parallel.

Every input is checked (paths, tags, dates, that sources are readable regular files)
before anything is written, so bad input records nothing. A local file is sent from
where it is and read once: the md5 recorded is that of the bytes sent, and the version
is recorded only once its object is stored and verified. A stream, or a file whose copy
is to be kept in the cache, is first copied into a private staging file and sent from
that copy, so the cache never disagrees with the store whatever the source does next.
"""

from __future__ import annotations

import errno
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
from .names import check_path_characters
from .paths import make_key, new_version_token, validate_path
from .permissions import check_mode, mode_of
from .progress import ProgressListener
from .staging import INCOMING_PREFIX
from .stores.base import SMALL_OBJECT_MAX, Progress
from .stores.local import PRIVATE_FILE
from .tags import tags_with_dates
from .transfers import DEFAULT_WORKERS, put_new

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from .session import Session
    from .stores import Store

__all__ = ["AddReport", "ProgressListener", "add_one", "add_tree"]

_CHUNK = 1024 * 1024
#: Uploaded versions recorded in the catalog per batch (`Catalog.add_uploaded`).
RECORD_BATCH = 500

logger = logging.getLogger(__name__)


@dataclass
class AddReport:
    """What `Repo.add_tree` added, and the symbolic links under the directory it did not
    follow (their local paths): every one by default; with ``follow_symlinks``, those that
    lead back to a directory above them."""

    files: list[RepoFile] = field(default_factory=list)
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Plan:
    path: str
    source: str
    size: int
    #: The file planned (st_dev, st_ino): what is read later must be this very file.
    identity: tuple[int, int]
    #: Its permission bits, as planned.
    mode: int
    #: The store it goes to (`placement`, else the default store).
    store: Store


def _check_source(source: str | Path, *, follow: bool = True) -> os.stat_result:
    """The status of a readable regular file `source` (of a symlink itself, unless
    `follow`), or a `RepoError` saying why it cannot be added."""
    try:
        st = os.stat(source) if follow else os.lstat(source)
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
    return st


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
    mode: int | None = None,
) -> RepoFile:
    """A new version of `path` from a local file or a stream (`Repo.add`). It records
    `mode`, or else a local file's own permission bits (a stream has none)."""
    path = validate_path(path, key_prefix=session.stores.for_path(path).key_prefix)
    check_path_characters(path)
    names = tags_with_dates(tags, when=when, period=period)
    if mode is not None:
        check_mode(mode)
    if isinstance(source, str | os.PathLike) and not keep_cached:
        return _add_from_file(session, path, Path(source), names, publish, progress, mode)
    if isinstance(source, str | os.PathLike) and mode is None:
        mode = mode_of(_check_source(Path(source)))
    # The content is taken in first, into a private file, so that a source that cannot
    # be read (or a stream that breaks off) records nothing at all.
    incoming = _take_in(session, source)
    try:
        rf = new_version(session, path)
        os.replace(incoming, rf.writable_path())
    except BaseException:
        session.staging.discard(incoming)
        raise
    rf.upload(progress=progress, mode=mode)
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
    mode: int | None,
) -> RepoFile:
    """Send a local file straight from where it is (no copy: it is on this host already):
    the store reads it once, hashing the bytes it sends, so the recorded md5 is that of
    the object even if the file changes meanwhile. Recorded only once stored and verified,
    with `mode` or else the file's own permission bits.
    """
    st = _check_source(source)
    created = datetime.now(UTC)
    store = session.stores.for_path(path)  # `placement`, else the default store
    key = make_key(store.key_prefix, path, new_version_token())
    try:
        result = put_new(session, path, key, source, created, progress, store)
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror or exc}") from exc
    version = NewVersion(
        path=path,
        key=result.key,
        md5=result.md5,
        size=result.size,
        verified_with=result.verified_with,
        mode=mode_of(st) if mode is None else mode,
    )
    records, superseded = _record_uploaded(
        session, [version], created, names, publish, bucket=store.bucket
    )
    logger.info(
        "uploaded %s (file %s) from %s to %s: %d bytes, md5 %s, verified by %s",
        path, records[0].file_id, source, result.key, result.size, result.md5,
        result.verified_with,
    )  # fmt: skip
    if publish:
        logger.info("published %s; expired %d earlier versions", path, len(superseded))
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
                # read1: what is there now, one read of the source at most. A terminal
                # ends input with one Ctrl-D, which a read(n) would take as a short read
                # and ask again, waiting for a second Ctrl-D.
                read = getattr(source, "read1", None) or source.read
                for chunk in iter(lambda: read(_CHUNK), b""):
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


def _walk(directory: str, *, follow: bool, skipped: list[str]) -> Iterator[tuple[str, str]]:
    """(file, its path relative to `directory` with '/' separators) for every file under
    `directory`, in a stable order. A symbolic link under it (to a file or a directory) is
    not followed but put in `skipped`, unless `follow`: then only a link back to a
    directory above it is (it would loop). `directory` itself is followed: the caller
    named it. Plain strings: a tree can hold a million files."""
    try:
        top = os.stat(directory)
    except OSError as exc:
        raise UsageError(f"cannot read {directory}: {exc.strerror}") from None
    # (directory, its relative path with a trailing '/', the directories above it)
    stack = [(directory, "", frozenset([(top.st_dev, top.st_ino)]))]
    while stack:
        root, rel_root, above = stack.pop()
        try:
            with os.scandir(root) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise UsageError(f"cannot read {exc.filename}: {exc.strerror}") from None
        subdirs = []
        for entry in entries:
            if entry.is_symlink() and not follow:
                skipped.append(entry.path)
            elif not entry.is_dir():  # a dangling link too: planning says what is wrong
                yield entry.path, rel_root + entry.name
            elif not follow:
                subdirs.append((entry.path, f"{rel_root}{entry.name}/", above))
            else:
                try:
                    st = entry.stat()
                except OSError as exc:
                    raise UsageError(f"cannot read {entry.path}: {exc.strerror}") from None
                identity = (st.st_dev, st.st_ino)
                if identity in above:
                    skipped.append(entry.path)
                else:
                    subdirs.append((entry.path, f"{rel_root}{entry.name}/", above | {identity}))
        stack.extend(reversed(subdirs))


def plan_tree(
    directory: Path,
    prefix: str,
    store_for: Callable[[str], Store],
    *,
    follow_symlinks: bool = False,
) -> tuple[list[_Plan], list[str]]:
    """What to add from `directory`, each file with the store `store_for` its path goes
    to, and the symbolic links skipped (see `_walk`)."""
    if not directory.is_dir():
        if not directory.exists():
            raise NotFoundError(f"no such directory: {directory}")
        raise UsageError(f"{directory} is not a directory")
    base = prefix.strip("/")
    plans = []
    skipped: list[str] = []
    walk = _walk(os.path.normpath(directory), follow=follow_symlinks, skipped=skipped)
    for source, rel in walk:
        raw = f"{base}/{rel}" if base else rel
        # The path's own store: its key prefix counts toward the key's length limit.
        store = store_for(raw)
        path = validate_path(raw, key_prefix=store.key_prefix)
        if path != raw:  # Unicode normalisation: placement goes by the cleaned path
            store = store_for(path)
            path = validate_path(path, key_prefix=store.key_prefix)
        check_path_characters(path)
        st = _check_source(source, follow=follow_symlinks)
        plans.append(_Plan(path, source, st.st_size, (st.st_dev, st.st_ino), mode_of(st), store))
    if not plans:
        raise UsageError(
            f"no files under {directory}",
            hint="symbolic links are not followed unless asked (--follow-symlinks)"
            if skipped and not follow_symlinks
            else None,
        )
    seen: dict[str, str] = {}
    for plan in plans:
        # Names that differ only by Unicode normalisation map to one repository path.
        if plan.path in seen:
            raise UsageError(
                f"{seen[plan.path]} and {plan.source} would both be added as {plan.path!r}"
            )
        seen[plan.path] = plan.source
    if skipped:
        logger.info("not following %d symbolic links under %s", len(skipped), directory)
    return plans, skipped


def _open_planned(plan: _Plan, follow: bool) -> int:
    """A descriptor open on the very file `plan` was made from. Without `follow`, a
    symbolic link put in its place since planning is not opened (O_NOFOLLOW); either way,
    a different file found there (a link swapped in higher up the tree, a file replaced)
    is refused rather than read. O_NONBLOCK: a FIFO swapped in does not hang the open."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(plan.source, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow:
            raise UsageError(
                f"{plan.source} was replaced by a symbolic link while being added"
            ) from None
        raise UsageError(f"cannot read {plan.source}: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != plan.identity:
            raise UsageError(
                f"{plan.source} was replaced by another file while being added",
                hint="add the directory again once nothing changes it",
            )
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


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
    follow_symlinks: bool = False,
    mode: int | None = None,
) -> AddReport:
    """Upload every file under `directory` in worker threads; the catalog records them
    in batches (`Catalog.add_uploaded`), in the calling thread and the caller's
    transaction. Symbolic links under `directory` are skipped (and reported) unless
    `follow_symlinks`: a link planted in a shared directory must not make whoever adds it
    upload a file from elsewhere."""
    if workers < 1:
        raise UsageError("workers must be at least 1")
    if mode is not None:
        check_mode(mode)
    plans, skipped = plan_tree(
        Path(directory), prefix, session.stores.for_path, follow_symlinks=follow_symlinks
    )
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
    report = AddReport(skipped=skipped)
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
        fd = _open_planned(plan, follow_symlinks)
        try:
            data = _read_small(fd, plan) if plan.size <= SMALL_OBJECT_MAX else None
            body: bytes | Path
            if data is None:
                body = staging_of(token)
                _copy_out(fd, plan, body)
                size = os.stat(body).st_size
            else:
                body, size = data, len(data)
        finally:
            os.close(fd)
        # Into the store placement sends the path to: a rollback deletes it from there.
        key = make_key(plan.store.key_prefix, plan.path, token)
        result = put_new(session, plan.path, key, body, created, _capped(advance, size), plan.store)
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
            mode=plan.mode if mode is None else mode,
            bucket=plan.store.bucket,
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
    session: Session,
    versions: list[NewVersion],
    created: datetime,
    names: list[str],
    publish: bool,
    *,
    bucket: str | None = None,
) -> tuple[list[FileRecord], list[int]]:
    """Record verified uploads from this host in the caller's transaction (each in its
    `NewVersion.bucket`, else in `bucket`, by default the default store's). Published
    ones are noted for ``replicate_on_publish: now``, like `RepoFile.publish`'s."""
    records, superseded = session.catalog.add_uploaded(
        versions,
        bucket=session.store.bucket if bucket is None else bucket,
        origin=session.host,
        created_at=created,
        uploaded_at=datetime.now(UTC),
        tags=names,
        publish=publish,
    )
    if publish and session.config.copies_on_publish:
        session.published.extend(r.file_id for r in records)  # copied once committed
    return records, superseded


def _read_small(fd: int, plan: _Plan) -> bytes | None:
    """The whole of a small file planned at `plan.size` bytes, or None if it has grown
    past `SMALL_OBJECT_MAX`. Plain system calls, asking for what the file holds: a
    buffered ``read(limit)`` would allocate the whole limit (4 MiB) for every 4 KiB file."""
    try:
        data = os.read(fd, plan.size + 1)
        if len(data) > plan.size:  # it has grown since it was planned: read on
            while len(data) <= SMALL_OBJECT_MAX:
                more = os.read(fd, SMALL_OBJECT_MAX + 1 - len(data))
                if not more:
                    break
                data += more
    except OSError as exc:
        raise UsageError(f"cannot read {plan.source}: {exc.strerror}") from exc
    if len(data) > SMALL_OBJECT_MAX:
        os.lseek(fd, 0, os.SEEK_SET)  # sent from a staging copy after all: from the start
        return None
    return data


def _copy_out(fd: int, plan: _Plan, dest: Path) -> None:
    """Copy the open source into the staging file `dest`."""
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        out_fd = os.open(dest, flags, PRIVATE_FILE)  # staged content is nobody else's
        with os.fdopen(os.dup(fd), "rb") as src, os.fdopen(out_fd, "wb") as out:
            shutil.copyfileobj(src, out, _CHUNK)
    except OSError as exc:
        raise UsageError(f"cannot read {plan.source}: {exc.strerror}") from exc


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
