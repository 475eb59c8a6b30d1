"""Moving one version's bytes between this host and its store, verified both ways.

Uploads: `upload` sends a staging copy of a version that has a row (moving it to a fresh
key if a leftover holds its key), `put_new` sends the bytes of a version whose row does
not exist yet (`ingest`), `put_version` re-sends a known version (`recover`). Downloads:
`fetch` gives the verified local copy, `fetch_into` streams it into a writer, both
through this host's cache. Objects are never overwritten: every put is create-only.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from .errors import ArchivedError, ConflictError, NotFoundError
from .failover import read_any
from .integrity import check_download
from .paths import TOKEN_LENGTH, make_key, new_version_token
from .stores.local import make_directories

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .catalog import FileRecord
    from .session import Session
    from .stores.base import DownloadResult, Progress, PutResult, Store

__all__ = [
    "DEFAULT_WORKERS",
    "archived_reads",
    "cached_copy",
    "copy_metadata",
    "download",
    "fetch",
    "fetch_into",
    "put_copy",
    "put_new",
    "put_version",
    "upload",
]

logger = logging.getLogger(__name__)

#: Parallel transfers of an operation over many versions (add a tree, fetch, verify).
DEFAULT_WORKERS = 16


def _metadata(path: str, origin: str, created_at: datetime) -> dict[str, str]:
    """What an object carries about its version: a blind restore adopts it by this."""
    return {"repo-path": path, "repo-origin": origin, "repo-created": _iso(created_at)}


#: A tree's files share one creation time: written out once, not once per file.
_iso = functools.lru_cache(maxsize=4)(datetime.isoformat)


def put_version(
    session: Session, record: FileRecord, source: Path, progress: Progress | None = None
) -> PutResult:
    """Send one version's bytes to its store (no catalog work: safe in worker threads)."""
    store = session.locate(record)
    metadata = _metadata(record.path, record.origin, record.created_at)
    return store.put_file(record.key, source, metadata=metadata, progress=progress)


def put_copy(
    store: Store,
    record: FileRecord,
    key: str,
    source: Path | bytes,
    progress: Progress | None = None,
) -> PutResult:
    """Send one version's bytes (a file, or a small object in memory) to its copy at `key`
    in another `store` (already checked by `Session.locate_copy`), carrying the same
    metadata as its own object (`copy_metadata`)."""
    metadata = copy_metadata(record)
    if isinstance(source, bytes):
        return store.put_bytes(key, source, metadata=metadata, progress=progress)
    return store.put_file(key, source, metadata=metadata, progress=progress)


def copy_metadata(record: FileRecord) -> dict[str, str]:
    """The metadata every object of `record` carries, in whichever store."""
    return _metadata(record.path, record.origin, record.created_at)


def put_new(
    session: Session,
    path: str,
    key: str,
    body: Path | bytes,
    created_at: datetime,
    progress: Progress | None,
    store: Store | None = None,
) -> PutResult:
    """Store a version whose row does not exist yet at `key` in `store` (the default
    one unless placement says another), or at a fresh key if a leftover holds it (safe in
    worker threads)."""
    store = session.store if store is None else store
    metadata = _metadata(path, session.host, created_at)

    def put(at: str, report: Progress | None) -> PutResult:
        if isinstance(body, bytes):
            return store.put_bytes(at, body, metadata=metadata, progress=report)
        return store.put_file(at, body, metadata=metadata, progress=report)

    try:
        result = put(key, progress)
    except ConflictError:
        # A leftover holds the key (no row names it yet): take a fresh one. What the
        # failed attempt reported stays reported.
        result = put(make_key(store.key_prefix, path, new_version_token()), None)
    session.created_object(result.key, store)
    return result


def upload(
    session: Session,
    record: FileRecord,
    progress: Progress | None = None,
    *,
    mode: int | None = None,
) -> FileRecord:
    """Upload and verify the staging copy of `record`, record it (with the permission
    bits `mode`, if known), and keep the copy in the cache; returns the updated record."""
    source = _upload_source(session, record)
    try:
        result = put_version(session, record, source, progress)
    except ConflictError:
        # Something that is not ours sits at this version's key: the leftover of an
        # attempt that failed verification and could not be removed. The version moves
        # to a fresh key (the leftover is an orphan for garbage collection), once.
        record, source = _rekey(session, record, source)
        result = put_version(session, record, source, progress)
    session.created_object(record.key, session.locate(record))
    updated = session.catalog.mark_uploaded(
        record.file_id,
        md5=result.md5,
        size=result.size,
        when=datetime.now(UTC),
        verified_with=result.verified_with,
        mode=mode,
    )
    if source != session.cache.cache_path(record.key):
        session.copies.make_room(result.size)
        session.cache.adopt(source, record.key)
        session.staging.release(source)
        session.uploaded_in_transaction(record.key)
    # Recorded after commit: until then other sessions cannot see the file's row.
    session.copies.noted(record.file_id, fresh=True, flush=False, key=record.key)
    logger.info(
        "uploaded %s (file %s) to %s: %d bytes, md5 %s, verified by %s",
        record.path, record.file_id, record.key, result.size, result.md5, result.verified_with,
    )  # fmt: skip
    return updated


def _upload_source(session: Session, record: FileRecord) -> Path:
    source = session.staging.path_of(record.key)
    if not source.exists():
        # Uploaded before, but that transaction was rolled back: the verified copy
        # moved into the cache then, and holds the same bytes.
        cached = session.cache.cache_path(record.key)
        if not cached.exists():
            raise NotFoundError(
                f"{record.path} (file {record.file_id}) has no content to upload",
                hint="write it first with touch() or open('w')",
            )
        source = cached
    return source


def _rekey(session: Session, record: FileRecord, source: Path) -> tuple[FileRecord, Path]:
    new_key = record.key[:-TOKEN_LENGTH] + new_version_token()
    logger.warning("object %s is taken by a leftover; uploading to %s", record.key, new_key)
    updated = session.catalog.rekey(record.file_id, old_key=record.key, new_key=new_key)
    staging = session.staging.path_of(new_key)
    make_directories(staging.parent)
    # A link, not a move: a rollback restores the old key, whose staging copy stays.
    os.link(source, staging)
    return updated, staging


def cached_copy(session: Session, record: FileRecord) -> Path | None:
    """This host's verified copy of `record`, if it has one (a cache hit)."""
    session.check_readable(record)  # its key names the cached file: only a key of ours may
    hit, news = session.cache.use(record.key, record.size)
    if hit is None:
        return None
    logger.info("%s (file %s): this host's cached copy", record.path, record.file_id)
    if news:  # else the catalog's last access is less than a minute old too
        session.copies.noted(record.file_id, fresh=False, key=record.key)
    return Path(hit)


def fetch(session: Session, record: FileRecord, progress: Progress | None = None) -> Path:
    """The verified local copy of an uploaded version, downloading it if needed."""
    hit = cached_copy(session, record)
    return hit if hit is not None else download(session, record, progress)


def fetch_into(
    session: Session,
    record: FileRecord,
    out: BinaryIO,
    progress: Progress | None = None,
    *,
    keep_cached: bool = True,
) -> Path | None:
    """The cached copy of `record` if there is one (the caller reads it); otherwise
    download it into `out`, and into the cache in the same pass if `keep_cached`
    (verified at the end; on a mismatch `out` has had bad bytes and nothing is cached),
    and return None."""
    hit = cached_copy(session, record)
    if hit is not None:
        return hit
    if not keep_cached:
        # Only uploaded versions are downloaded, and those have both (for mypy).
        assert record.md5 is not None  # noqa: S101
        assert record.size is not None  # noqa: S101
        md5, size = record.md5, record.size
        counted = _Counted(out)

        def stream(store: Store, key: str) -> DownloadResult:
            got = store.get_into(key, counted, progress=progress)
            check_download(key, got.md5, got.size, md5=md5, size=size)
            return got

        with archived_reads(record):
            # Bytes written to `out` cannot be taken back: a failure moves on to the
            # next copy only while none were.
            got = read_any(session, record, stream, can_retry=counted.untouched)
        logger.info(
            "downloaded %s (file %s): %d bytes, md5 verified", record.path, record.file_id, got.size
        )
        return None
    # The reader's output is what must be durable, not this copy.
    download(session, record, progress, sync=False, tee=out)
    return None


def download(
    session: Session,
    record: FileRecord,
    progress: Progress | None = None,
    *,
    sync: bool = True,
    tee: BinaryIO | None = None,
) -> Path:
    """Download `record` into this host's cache, verified, and note the new copy."""
    # Only uploaded versions are downloaded, and those have both (for mypy).
    assert record.md5 is not None  # noqa: S101
    assert record.size is not None  # noqa: S101
    session.copies.make_room(record.size)
    md5, size = record.md5, record.size
    counted = None if tee is None else _Counted(tee)

    def into_cache(store: Store, key: str) -> Path:
        return session.cache.download(
            store,
            key,
            md5=md5,
            size=size,
            progress=progress,
            sync=sync,
            tee=counted,
            name=record.key,
        )

    with archived_reads(record):
        # With `tee`, bytes reach the reader as they come: a failure moves on to the next
        # copy only while none did.
        path = read_any(
            session, record, into_cache, can_retry=None if counted is None else counted.untouched
        )
    session.copies.noted(record.file_id, fresh=True, key=record.key)
    logger.info(
        "downloaded %s (file %s) into this host's cache: %d bytes, md5 verified",
        record.path, record.file_id, record.size,
    )  # fmt: skip
    return path


@contextlib.contextmanager
def archived_reads(record: FileRecord) -> Iterator[None]:
    """A store's refusal to read an archived object, said about `record`'s version, with
    the command that thaws it (by path for the current version, else by id)."""
    try:
        yield
    except ArchivedError as exc:
        where = record.storage_class or "an archival class"
        target = shlex.quote(record.path) if record.state == "published" else str(record.file_id)
        raise ArchivedError(
            f"{record.path} (file {record.file_id}) is archived in {where} and has no "
            "restored copy to read",
            hint=f"repo thaw {target}",
        ) from exc


class _Counted:
    """A reader's output, and whether anything was written to it yet."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.written = 0

    def write(self, data: bytes | memoryview, /) -> int:
        self.written += len(data)
        return self._out.write(data)

    def untouched(self) -> bool:
        return self.written == 0
