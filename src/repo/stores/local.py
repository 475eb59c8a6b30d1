"""A store in a local (or network-mounted) directory: ``file:///abs/path``.

Objects are plain read-only files at ``<root>/<key>``, so the store can be inspected with
ordinary tools. An object appears under its final name only when complete: it is written
to a temporary file on the same filesystem, fsynced, and then hard-linked into place.
`os.link` fails if the name exists, which gives the same create-only guarantee as S3's
``If-None-Match: *``. The md5 and user metadata live in a sidecar JSON document under
``<root>/.repo-meta/``, the store's stand-in for an ETag and ``x-amz-meta-*`` headers.
A put killed midway leaves its temp file in ``<root>/.repo-tmp/``; `clean_temporaries`
(garbage collection's orphan pass) removes those older than the grace period.

What the store makes is its user's alone, whatever the umask (directories 0700, objects
0400), unless its root is set-group-ID (``chmod 2770``): then its group shares what the
root gives it. The cache, staging area and scratch files follow the same rules
(`repo.stores.local_disk`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import stat
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ..errors import ConflictError, InvalidPathError, NotFoundError, StoreError
from ..paths import safe_join
from .base import (
    DownloadResult,
    ObjectInfo,
    Progress,
    PutResult,
    Writable,
    check_small,
    copy_hashing,
    hash_only,
)
from .local_disk import (
    PRIVATE_DIRECTORY,
    PRIVATE_FILE,
    READ_ONLY_FILE,
    Modes,
    directory_problem,
    file_problem,
    make_directories,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

__all__ = [
    "PRIVATE_DIRECTORY",
    "PRIVATE_FILE",
    "READ_ONLY_FILE",
    "LocalStore",
    "directory_problem",
    "file_problem",
    "make_directories",
]

logger = logging.getLogger(__name__)

CHUNK = 1024 * 1024
_META_DIR = ".repo-meta"
_TMP_DIR = ".repo-tmp"


class LocalStore:
    """Objects as files under a root directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        if not self.root.is_absolute():
            raise StoreError(f"local store root must be an absolute path, got {str(root)!r}")
        self.url = self.root.as_uri()
        self.bucket = str(self.root)
        self.key_prefix = ""
        self._modes: Modes | None = None

    def __repr__(self) -> str:
        return f"LocalStore({self.url!r})"

    # -- helpers -------------------------------------------------------------------------

    def _path(self, key: str) -> str:
        if not key or key.startswith((_META_DIR + "/", _TMP_DIR + "/")):
            raise InvalidPathError(f"invalid object key {key!r}")
        return safe_join(self.root, key)

    def _meta_path(self, key: str) -> str:
        return safe_join(self.root / _META_DIR, key + ".json")

    def _ensure_root(self) -> Modes:
        """Make the store's directories where missing; the modes of what goes in it."""
        try:
            if self._modes is None:
                make_directories(self.root)  # a root made here is private
                self._modes = Modes.under(os.stat(self.root).st_mode)
            make_directories(self.root / _TMP_DIR, self._modes.directory)
        except OSError as exc:
            raise StoreError(
                f"cannot create local store at {self.root}: {exc.strerror}",
                hint="check the 'store' path and its permissions",
            ) from exc
        return self._modes

    # -- Store ---------------------------------------------------------------------------

    def put_file(
        self,
        key: str,
        source: Path,
        *,
        metadata: Mapping[str, str] | None = None,
        progress: Progress | None = None,
    ) -> PutResult:
        try:
            src = open(source, "rb")  # noqa: SIM115 - closed below, whatever happens
        except FileNotFoundError:
            raise NotFoundError(f"local file {source} not found") from None
        except OSError as exc:
            raise StoreError(f"cannot read {source}: {exc.strerror}") from exc
        with src:  # also when the store fails before reading a byte
            return self._put_chunks(key, _read_chunks(src), metadata, progress)

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        progress: Progress | None = None,
    ) -> PutResult:
        check_small(data)
        return self._put_chunks(key, iter([data] if data else []), metadata, progress)

    def _put_chunks(
        self,
        key: str,
        chunks: Iterator[bytes],
        metadata: Mapping[str, str] | None,
        progress: Progress | None,
    ) -> PutResult:
        final = self._path(key)
        modes = self._ensure_root()
        fd, tmp = tempfile.mkstemp(dir=self.root / _TMP_DIR, prefix="put-")
        try:
            with os.fdopen(fd, "wb") as out:
                # Progress per chunk copied into the temp file: that copy is the transfer.
                written = copy_hashing(chunks, out, progress)
                out.flush()
                os.fsync(out.fileno())
                os.fchmod(out.fileno(), modes.read_only)
            digest, size = written.md5, written.size
            meta = {"md5": digest, "size": size, "metadata": dict(metadata or {})}
            try:
                self._link_into_place(tmp, final, key, modes)
            except ConflictError:
                # Ours from an attempt that crashed before it was recorded? Keep it.
                info = self.head(key)
                existing = info.etag
                if existing is None and info.size == size:  # crashed before its sidecar
                    existing = hash_only(self.iter_bytes(key)).md5
                if info.size == size and existing == digest:
                    self._write_meta(key, meta, modes)
                    return PutResult(key=key, md5=digest, size=size, etag=digest)
                raise
            self._write_meta(key, meta, modes)
        except OSError as exc:
            raise StoreError(f"local store write of {key!r} failed: {exc.strerror}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return PutResult(key=key, md5=digest, size=size, etag=digest)

    def _link_into_place(self, tmp: str, final: str, key: str, modes: Modes) -> None:
        for _attempt in range(3):
            make_directories(os.path.dirname(final), modes.directory)
            try:
                os.link(tmp, final)
            except FileExistsError:
                raise ConflictError(
                    f"object {key!r} already exists; objects are never overwritten"
                ) from None
            except FileNotFoundError:
                continue  # a concurrent delete pruned the directory; make it again
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
                # Filesystems without hard links: exclusive create, then copy-free rename.
                fd = os.open(final, os.O_CREAT | os.O_EXCL | os.O_WRONLY, modes.read_only)
                os.close(fd)
                os.replace(tmp, final)
            _fsync_dir(os.path.dirname(final))
            return
        raise StoreError(f"could not create directories for {key!r}")

    def _write_meta(self, key: str, doc: dict[str, object], modes: Modes) -> None:
        path = self._meta_path(key)
        make_directories(os.path.dirname(path), modes.directory)
        fd, tmp = tempfile.mkstemp(dir=self.root / _TMP_DIR, prefix="meta-")
        with os.fdopen(fd, "w", encoding="utf-8") as fp:
            json.dump(doc, fp)
            fp.flush()
            os.fsync(fp.fileno())
            if modes.writable != PRIVATE_FILE:  # mkstemp's already
                os.fchmod(fp.fileno(), modes.writable)
        os.replace(tmp, path)

    def _read_meta(self, key: str) -> dict[str, object]:
        try:
            with open(self._meta_path(key), encoding="utf-8") as fp:
                doc = json.load(fp)
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def get_into(
        self, key: str, out: Writable, *, progress: Progress | None = None
    ) -> DownloadResult:
        return copy_hashing(self.iter_bytes(key), out, progress)

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        path = self._path(key)
        try:
            src = open(path, "rb")  # noqa: SIM115 - closed by the generator
        except FileNotFoundError:
            raise NotFoundError(f"object {key!r} not found in {self.url}") from None
        except OSError as exc:
            raise StoreError(f"cannot read {key!r}: {exc.strerror}") from exc
        return _read_chunks(src)

    def head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise NotFoundError(f"object {key!r} not found in {self.url}") from None
        except OSError as exc:
            raise StoreError(f"cannot stat {key!r}: {exc.strerror}") from exc
        meta = self._read_meta(key)
        md5 = meta.get("md5")
        user = meta.get("metadata")
        return ObjectInfo(
            key=key,
            size=st.st_size,
            etag=md5 if isinstance(md5, str) and meta.get("size") == st.st_size else None,
            last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
            metadata=dict(user) if isinstance(user, dict) else {},
        )

    def etag_is_md5(self, key: str) -> bool:
        return True  # the ETag is the md5 this store computed as it wrote the object

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        root = str(self.root)

        def unreadable(exc: OSError) -> None:
            # A directory gone meanwhile (GC) is no error, nor a store not made yet; a
            # root that is no directory, or one that cannot be read, is: an empty
            # listing would say the store holds nothing.
            if isinstance(exc, FileNotFoundError):
                return
            raise StoreError(f"cannot list {exc.filename}: {exc.strerror}") from exc

        for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
            if dirpath == root:
                dirnames[:] = [d for d in dirnames if d not in (_META_DIR, _TMP_DIR)]
            rel_dir = os.path.relpath(dirpath, root)
            for name in filenames:
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if not key.startswith(prefix):
                    continue
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:
                    continue
                yield ObjectInfo(
                    key=key,
                    size=st.st_size,
                    last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
                )

    def delete_many(self, keys: Iterable[str]) -> int:
        count = 0
        for key in keys:
            count += 1
            for path in (self._path(key), self._meta_path(key)):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise StoreError(f"cannot delete {key!r}: {exc.strerror}") from exc
        return count

    def clean_temporaries(self, prefix: str, older_than: datetime, *, dry_run: bool = False) -> int:
        # Every write moves its temp file's modification time on, so one in progress is
        # young; a put killed midway leaves one that only ages.
        limit = older_than.timestamp()
        removed = 0
        try:
            names = os.listdir(self.root / _TMP_DIR)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise StoreError(f"cannot list {self.root / _TMP_DIR}: {exc.strerror}") from exc
        for name in names:
            path = self.root / _TMP_DIR / name
            try:
                st = os.lstat(path)
                if st.st_mtime >= limit or not stat.S_ISREG(st.st_mode):
                    continue
                if not dry_run:
                    os.unlink(path)
            except FileNotFoundError:
                continue  # finished meanwhile
            except OSError as exc:
                logger.warning("cannot remove temp file %s: %s", path, exc.strerror)
                continue
            removed += 1
        return removed

    def for_bucket(self, bucket: str) -> LocalStore:
        return self if bucket == self.bucket else LocalStore(bucket)

    def close(self) -> None:
        pass


def _read_chunks(src: BinaryIO) -> Iterator[bytes]:
    with src:
        while chunk := src.read(CHUNK):
            yield chunk


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
