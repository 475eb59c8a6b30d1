"""RepoFile: one version of one path, its state and its actions."""

from __future__ import annotations

import logging
import os
from datetime import UTC, date, datetime
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from .destinations import is_stream, output_file, write_in_place
from .errors import (
    ConflictError,
    ImmutableError,
    NotFoundError,
    StateError,
    UsageError,
    VerificationError,
    at_boundary,
)
from .permissions import check_mode, current_umask, written_mode
from .stores.base import Progress, copy_hashing
from .stores.local import PRIVATE_FILE, make_directories
from .tags import date_tags, validate_tags
from .transfers import fetch, fetch_into, upload

if TYPE_CHECKING:
    from .catalog import FileRecord, HostCopy
    from .session import Session

__all__ = ["RepoFile"]

logger = logging.getLogger(__name__)

_READ_MODES = ("r", "rb", "rt")
_WRITE_MODES = ("w", "wb", "wt", "a", "ab", "at")
_CHUNK = 1024 * 1024


class RepoFile:
    """One version of a repository path.

    Attributes mirror the catalog row as this session last saw it; `refresh()` re-reads
    it. Changes are part of the repository's transaction (``Repo.commit()``).
    """

    def __init__(self, session: Session, record: FileRecord) -> None:
        self._session = session
        self._rec = record

    # -- catalog facts -------------------------------------------------------------------

    @property
    def file_id(self) -> int:
        return self._rec.file_id

    @property
    def path(self) -> str:
        return self._rec.path

    @property
    def bucket(self) -> str:
        return self._rec.bucket

    @property
    def key(self) -> str:
        return self._rec.key

    @property
    def state(self) -> str:
        """``"unpublished"``, ``"published"`` or ``"expired"``."""
        return self._rec.state

    @property
    def md5(self) -> str | None:
        return self._rec.md5

    @property
    def size(self) -> int | None:
        return self._rec.size

    @property
    def origin(self) -> str:
        """The host that created this version."""
        return self._rec.origin

    @property
    def created_at(self) -> datetime:
        return self._rec.created_at

    @property
    def uploaded_at(self) -> datetime | None:
        return self._rec.uploaded_at

    @property
    def verified_with(self) -> str | None:
        """What vouched for the stored object at upload: ``etag`` (the store's ETag is
        its md5), ``read-back`` or ``server-checked``; None if not uploaded, or uploaded
        before this was recorded."""
        return self._rec.verified_with

    @property
    def mode(self) -> int | None:
        """Permission bits recorded when added (``0o640``; None: unknown)."""
        return self._rec.mode

    @property
    def storage_class(self) -> str | None:
        """The archival class the object was moved to (``GLACIER``...), else None."""
        return self._rec.storage_class

    @property
    def archived_at(self) -> datetime | None:
        return self._rec.archived_at

    @property
    def published_at(self) -> datetime | None:
        return self._rec.published_at

    @property
    def expired_at(self) -> datetime | None:
        return self._rec.expired_at

    @property
    def uploaded(self) -> bool:
        return self._rec.md5 is not None

    @property
    def tags(self) -> list[str]:
        """File tags and path tags together, sorted."""
        own, via_path = self._session.catalog.tags_of(self.file_id)
        return sorted({*own, *via_path})

    @property
    def file_tags(self) -> list[str]:
        return self._session.catalog.tags_of(self.file_id)[0]

    @property
    def path_tags(self) -> list[str]:
        return self._session.catalog.tags_of(self.file_id)[1]

    @property
    def hosts(self) -> list[HostCopy]:
        """Hosts holding a verified copy of this version."""
        return self._session.catalog.copies_of(self.file_id)

    @property
    def record(self) -> FileRecord:
        """The catalog row as this session last saw it."""
        return self._rec

    def refresh(self) -> RepoFile:
        self._rec = self._session.catalog.get(self.file_id)
        return self

    # -- content -------------------------------------------------------------------------

    @property
    def staging_path(self) -> Path:
        return self._session.staging.path_of(self.key)

    def writable_path(self) -> Path:
        """The staging copy to write this version's content to (its directory created);
        refuses a version that is uploaded or no longer unpublished."""
        if self.uploaded:
            raise ImmutableError(
                f"{self.path} (file {self.file_id}) is uploaded; its content cannot change",
                hint="add a new version with Repo.add_file(path)",
            )
        if self.state != "unpublished":
            raise StateError(f"{self.path} (file {self.file_id}) is {self.state}")
        path = self.staging_path
        make_directories(path.parent)
        # Created private here: what is written next keeps the mode of the file it opens.
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        os.close(os.open(path, flags, PRIVATE_FILE))
        return path

    @at_boundary("writing a version")
    def touch(self, data: str | bytes | None = None) -> RepoFile:
        """Append `data` (text is UTF-8) to this version's local copy, creating it."""
        if data is not None and not isinstance(data, str | bytes | bytearray | memoryview):
            raise UsageError(f"touch() takes str or bytes, got {type(data).__name__}")
        path = self.writable_path()
        with open(path, "ab") as fp:
            if data is not None:
                fp.write(data.encode("utf-8") if isinstance(data, str) else data)
        return self

    @at_boundary("opening a version")
    def open(self, mode: str = "r", **kwargs: Any) -> IO[Any]:
        """Read (``"r"``, ``"rb"``) the verified copy, or write (``"w"``, ``"wb"``, ``"a"``,
        ``"ab"``) the local copy of a version that is not uploaded yet."""
        if mode in _WRITE_MODES:
            path = self.writable_path()
            if "b" not in mode:
                kwargs.setdefault("encoding", "utf-8")
            handle: IO[Any] = open(path, mode, **kwargs)  # noqa: SIM115 - caller closes
            return handle
        if mode in _READ_MODES:
            path = self.local_path
            if "b" in mode:
                binary: IO[Any] = open(path, "rb", **kwargs)  # noqa: SIM115
                return binary
            kwargs.setdefault("encoding", "utf-8")
            textual: IO[Any] = open(path, **kwargs)  # noqa: SIM115
            return textual
        raise UsageError(f"unsupported mode {mode!r}", hint="use 'r', 'rb', 'w', 'wb', 'a' or 'ab'")

    @at_boundary("reading a version")
    def read_bytes(self) -> bytes:
        with self.open("rb") as fp:
            data: bytes = fp.read()
        return data

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    @property
    @at_boundary("reading a version")
    def local_path(self) -> Path:
        """Path of the verified local copy (read-only), downloaded first if absent.

        Before upload, this is the staging copy being written on this host.
        """
        return self._local_path()

    def _local_path(self, progress: Progress | None = None) -> Path:
        if not self.uploaded:
            staging = self.staging_path
            if staging.exists():
                return staging
            raise NotFoundError(
                f"{self.path} (file {self.file_id}) has no content yet",
                hint="write it with touch() or open('w'), or read it on the host that made it",
            )
        return fetch(self._session, self._rec, progress)

    @at_boundary("reading a version")
    def write_to(
        self, out: BinaryIO, progress: Progress | None = None, *, keep_cached: bool = True
    ) -> int:
        """Stream the verified content into `out`; returns the bytes written.

        The local copy is hashed on the way out, so a cached copy damaged on disk
        since it was verified raises `VerificationError` (after the bytes were written:
        a consumer must treat the output as bad) and is evicted, so a retry downloads
        it afresh. `progress` sees the download, if one is needed. A version not cached
        yet goes to `out` as it downloads (and into the cache, verified, in the same
        pass): one read of the network, one md5; with ``keep_cached=False`` it goes to
        `out` only.
        """
        if self.uploaded:
            cached = fetch_into(self._session, self._rec, out, progress, keep_cached=keep_cached)
            if cached is None:
                assert self.size is not None  # noqa: S101 - uploaded, so sized (for mypy)
                return self.size
            path = cached
        else:
            path = self._local_path(progress)
        with open(path, "rb") as src:
            got = copy_hashing(iter(lambda: src.read(_CHUNK), b""), out)
        if self.uploaded and (got.md5 != self.md5 or got.size != self.size):
            self._session.cache.evict(self.key)
            raise VerificationError(
                f"the local copy of {self.path} (file {self.file_id}) is damaged: md5 "
                f"{got.md5}, expected {self.md5}; it was removed from the cache",
                hint="run the command again to download it afresh",
            )
        return got.size

    @at_boundary("copying a version out")
    def save_as(
        self,
        dest: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        progress: Progress | None = None,
        sync: bool = True,
        keep_cached: bool = False,
        exact: bool = False,
    ) -> Path:
        """Copy the verified content to a local file (`destinations.output_file`: into a
        directory if `dest` is one or ends in "/", unless `exact`).

        A cached copy is copied from; a version not cached is downloaded straight into
        the file, and no second copy is kept in the cache unless `keep_cached` is true.

        With ``sync=False`` the file is not fsynced before its rename: for batches
        (`Repo.fetch`), which flush the file system once at the end instead.

        Written to a temporary file beside the destination, checked, then renamed, so
        `dest` is either untouched or complete. A damaged cached copy is evicted and
        downloaded again once.
        """
        target = output_file(dest, PurePosixPath(self.path).name, exact=exact)
        if is_stream(target, exact=exact):  # /dev/null, a FIFO: written into, as cp does
            with open(target, "wb") as out:
                self.write_to(out, progress, keep_cached=keep_cached)
            return target
        if target.exists() and not overwrite:
            raise ConflictError(f"{target} already exists", hint="use --force to overwrite it")

        def fill(out: BinaryIO) -> None:
            try:
                self.write_to(out, progress, keep_cached=keep_cached)
            except VerificationError:
                out.seek(0)
                out.truncate()
                self.write_to(out, progress, keep_cached=keep_cached)

        # The bits recorded when the file was added, less this reader's umask.
        mode = written_mode(self._rec.mode, current_umask())
        write_in_place(target, fill, mode=mode, sync=sync)
        return target

    # -- state ---------------------------------------------------------------------------

    @at_boundary("uploading a version")
    def upload(self, progress: Progress | None = None, *, mode: int | None = None) -> RepoFile:
        """Upload and verify the local copy; a no-op if already uploaded.

        `progress`, if given, is called with the number of bytes sent as they go. `mode`
        (``0o640``), if given, is recorded as the version's permission bits, applied to
        the copies `save_as` and `Repo.fetch` write out.
        """
        if not self.uploaded:
            recorded = None if mode is None else check_mode(mode)
            self._rec = upload(self._session, self._rec, progress, mode=recorded)
        return self

    @at_boundary("publishing a version")
    def publish(self) -> RepoFile:
        """Upload if needed, then make this the current version of its path."""
        self.upload()
        updated, superseded = self._session.catalog.publish(self.file_id, when=datetime.now(UTC))
        if self._session.config.copies_on_publish:
            self._session.published.append(self.file_id)  # copied once committed
        logger.info(
            "published %s (file %s); expired %s",
            updated.path, updated.file_id, superseded or "none",
        )  # fmt: skip
        self._rec = updated
        return self

    def expire(self) -> RepoFile:
        """Take this version out of use; garbage collection purges it later."""
        self._rec = self._session.catalog.expire(self.file_id, when=datetime.now(UTC))
        logger.info("expired %s (file %s)", self.path, self.file_id)
        return self

    # -- tags ----------------------------------------------------------------------------

    def tag(self, *tags: str) -> RepoFile:
        """Add tags to this version."""
        names = validate_tags(tags, new=True)
        self._session.catalog.add_tags(self.file_id, names)
        return self

    def untag(self, *tags: str) -> RepoFile:
        names = validate_tags(tags)
        self._session.catalog.remove_tags(self.file_id, names)
        return self

    def tag_path(self, *tags: str) -> RepoFile:
        """Add tags to the path: they apply to every version of it, past and future."""
        names = validate_tags(tags, new=True)
        self._session.catalog.add_path_tags(self._rec.path_id, names)
        return self

    def untag_path(self, *tags: str) -> RepoFile:
        names = validate_tags(tags)
        self._session.catalog.remove_path_tags(self._rec.path_id, names)
        return self

    def tag_date(self, when: datetime | date, type: str = "day") -> RepoFile:
        """Add date tags (UTC) for `when`: ``hour`` adds hour, day, week and month tags;
        ``day`` adds day, week and month; ``week`` and ``month`` add just themselves."""
        return self.tag(*date_tags(when, type))

    # -- dunder --------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"<RepoFile {self.file_id} {self.path!r} {self.state}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RepoFile) and other.file_id == self.file_id

    def __hash__(self) -> int:
        return hash(self.file_id)

    def __fspath__(self) -> str:
        return os.fspath(self.local_path)
