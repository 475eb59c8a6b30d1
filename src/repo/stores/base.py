"""The store interface: a flat namespace of immutable objects.

Every backend (one module each) implements `Store`. The same contract tests run against
all of them (tests/test_store_contract.py), so the repository code above never needs to
know which one it talks to.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..errors import UsageError
from ..integrity import ETAG
from ..storage_classes import needs_restore

if TYPE_CHECKING:
    from datetime import datetime
    from pathlib import Path

__all__ = [
    "SMALL_OBJECT_MAX",
    "Archivable",
    "ArchiveState",
    "DownloadResult",
    "ObjectInfo",
    "Progress",
    "PutResult",
    "ServerCopy",
    "Store",
    "Tee",
    "Writable",
    "archivable",
    "check_small",
    "copy_hashing",
    "hash_only",
    "server_copy",
]

#: Told the number of bytes just transferred: increments, never running totals.
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a store knows about one object."""

    key: str
    size: int
    etag: str | None = None
    last_modified: datetime | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ArchiveState:
    """Where an object stands as to archival, from a HEAD (free of retrieval charges).

    `storage_class` is None for the class objects are uploaded in (S3 names no class for
    STANDARD). `restoring` is True while a restore runs, False once a restored copy is
    readable (until `restored_until`), None when no restore was asked for.
    """

    key: str
    size: int
    storage_class: str | None
    restoring: bool | None = None
    restored_until: datetime | None = None

    @property
    def readable(self) -> bool:
        """Whether a GET of the object works now, without (another) restore."""
        return not needs_restore(self.storage_class) or self.restoring is False


@dataclass(frozen=True, slots=True)
class PutResult:
    """A verified upload: our md5 and size of what was sent, the store's ETag, and what
    vouched for the object (one of `repo.integrity.VERIFIED_WITH`)."""

    key: str
    md5: str
    size: int
    etag: str | None
    multipart: bool = False
    verified_with: str = ETAG


@dataclass(frozen=True, slots=True)
class DownloadResult:
    """md5 and size of the bytes actually received."""

    md5: str
    size: int


class Writable(Protocol):
    def write(self, data: bytes | memoryview, /) -> object: ...


class Tee:
    """Writes to two files: `first`, a local file a store may fill at offsets (ranges as
    they arrive, out of order, from several threads), and `second`, a reader's output,
    which gets every byte once, in order.

    A download into the cache for a reader who wants the bytes now (`repo get -o -`):
    stores that fetch ranges in parallel write them straight into `first` and hand only
    `second` the ordered pass; any other store just calls `write`.
    """

    def __init__(self, first: Writable, second: Writable) -> None:
        self.first = first
        self.second = second

    def write(self, data: bytes | memoryview, /) -> int:
        self.first.write(data)
        self.second.write(data)
        return len(data)


def copy_hashing(
    chunks: Iterable[bytes | memoryview], out: Writable, progress: Progress | None = None
) -> DownloadResult:
    """Write `chunks` to `out`, hashing them on the way (the one pass over the bytes).

    `progress`, if given, is told each non-empty chunk's length once it has been written.
    """
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    for chunk in chunks:
        md5.update(chunk)
        size += len(chunk)
        out.write(chunk)
        if progress is not None and chunk:
            progress(len(chunk))
    return DownloadResult(md5=md5.hexdigest(), size=size)


def hash_only(
    chunks: Iterable[bytes | memoryview], progress: Progress | None = None
) -> DownloadResult:
    """md5 and size of `chunks`, which are read and dropped (checking, not copying)."""
    return copy_hashing(chunks, _Sink(), progress)


class _Sink:
    def write(self, data: bytes | memoryview, /) -> int:
        return len(data)


def check_small(data: bytes) -> None:
    """`Store.put_bytes` takes at most `SMALL_OBJECT_MAX` bytes."""
    if len(data) > SMALL_OBJECT_MAX:
        raise UsageError(f"put_bytes takes at most {SMALL_OBJECT_MAX} bytes; use put_file")


#: The largest object `Store.put_bytes` takes (one request on S3, whatever its settings).
SMALL_OBJECT_MAX = 4 * 1024 * 1024


@runtime_checkable
class Store(Protocol):
    """A bucket of immutable objects addressed by key.

    Keys are full object keys (they include `key_prefix`). Implementations translate their
    own errors into `repo.errors` types: a missing object is `NotFoundError`, everything
    else that goes wrong is `StoreError` (or `VerificationError` for checksums).

    `put_file` and `get_into` take an optional `progress` callback (`Progress`), told
    the number of bytes just transferred, so a caller can draw a progress bar:

    - On success the increments add up to exactly the object's size (an empty object
      reports nothing). A backend reports bytes only once they are safely done (written,
      or stored and verified), and never reports the same bytes twice: retries happen
      before a report. On failure, whatever was reported before it stays reported.
    - Granularity is the backend's: per chunk for local files and downloads, per part
      for multipart uploads, the whole object at once for single-part uploads.
    - It may be called from the calling thread or from the store's worker threads
      (multipart parts), but calls for one transfer never overlap: the store serialises
      them, so the callback needs no lock of its own unless the caller shares it between
      transfers it runs concurrently.
    - It should return quickly and not raise; an exception from it fails the transfer.
    """

    #: The URL this store was opened from (``s3://bucket/prefix``, ``file:///dir``).
    url: str
    #: Bucket name (S3) or root directory (local); recorded with every file.
    bucket: str
    #: Prefix under which this repository keeps its objects ("" or ending in "/").
    key_prefix: str

    def put_file(
        self,
        key: str,
        source: Path,
        *,
        metadata: Mapping[str, str] | None = None,
        progress: Progress | None = None,
    ) -> PutResult:
        """Create object `key` from a local file, hashing it in the same pass as sending it.

        Never overwrites: where the backend can detect an existing object it raises
        `ConflictError`. The store's answer (ETag) is checked against our md5; on mismatch
        the object is deleted (best effort) and `VerificationError` is raised, so a
        returned result always describes a complete, verified object. `progress` is told
        the bytes sent, as described on the class.
        """
        ...

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        progress: Progress | None = None,
    ) -> PutResult:
        """Create object `key` holding `data`, on the same terms as `put_file`.

        For small objects already in memory (`add_tree` reads each small file once and
        sends, hashes and caches the same bytes). At most `SMALL_OBJECT_MAX` bytes.
        """
        ...

    def get_into(
        self, key: str, out: Writable, *, progress: Progress | None = None
    ) -> DownloadResult:
        """Stream object `key` into the writable binary file `out`, hashing as it goes.

        Returns the md5 and size of the bytes written; comparing them with the catalog
        is the caller's job. Raises `NotFoundError` if the object does not exist.
        `progress` is told each chunk's length once it is written to `out`.
        """
        ...

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        """Stream object `key` in chunks, without verifying (the caller hashes)."""
        ...

    def head(self, key: str) -> ObjectInfo:
        """Size, ETag and user metadata of `key`; `NotFoundError` if it does not exist."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with `prefix`, paging as needed (any order)."""
        ...

    def etag_is_md5(self, key: str) -> bool:
        """Is `head(key).etag`, where it looks like an md5, really the md5 of the content?

        Asked when one differs from the md5 expected: S3 with SSE-KMS or SSE-C, or an S3
        Express bucket, gives ETags that look like md5s and are not.
        """
        ...

    def delete_many(self, keys: Iterable[str]) -> int:
        """Delete these objects in batches; missing ones are no error. Returns the count."""
        ...

    def clean_temporaries(self, prefix: str, older_than: datetime, *, dry_run: bool = False) -> int:
        """Remove what writes cut off (a killed process) left behind, if begun before
        `older_than`; returns how many were (or, in a dry run, would be) removed.

        Local: temp files in the store's own temp directory (by modification time; the
        `prefix` does not apply). S3: incomplete multipart uploads of keys starting with
        `prefix` (by their start). Never touches an object. A listing the server refuses
        (some servers cannot list multipart uploads) raises `StoreError`; the caller says
        what was not done.
        """
        ...

    def for_bucket(self, bucket: str) -> Store:
        """A store on another bucket of the same server and credentials (files record theirs)."""
        ...

    def close(self) -> None:
        """Release connections and threads."""
        ...


@runtime_checkable
class Archivable(Protocol):
    """A store with archival storage classes (S3): an optional part of the interface.

    Asked with ``isinstance(store, Archivable)``; a store without archival classes (a
    local directory) simply does not have these methods. Errors as for `Store`.
    """

    def move_to_class(self, key: str, storage_class: str, *, md5: str, size: int) -> str:
        """Move object `key` to `storage_class` in place: same key, same content, same
        metadata. Verified before it returns: a HEAD shows the class, `size` and the
        metadata, and the content is still `md5` where the ETag can tell (``"etag"`` is
        returned); where it cannot (a multipart or SSE-KMS object), the copy's source was
        pinned by its ETag, checked against `md5` and `size` first (``"source"``). Raises
        `StoreError` when the server did not apply the class, after putting back what it
        changed where it can; nothing is then to be recorded.
        """
        ...

    def archive_state(self, key: str) -> ArchiveState:
        """The object's storage class and restore status, from one HEAD."""
        ...

    def request_restore(self, key: str, *, days: int, tier: str) -> bool:
        """Ask for a readable copy of archived object `key` for `days` days, at `tier`.

        Returns True when a restore started, False when a restored copy was there
        already (its expiry is moved to `days` from now). A restore already running is
        `ConflictError`; a tier without capacity now (Expedited) is `StoreError`.
        """
        ...


def archivable(store: Store) -> Archivable:
    """`store` as an `Archivable`, or a `UsageError` saying it has no archival classes
    (a local directory, or any backend without them)."""
    if not isinstance(store, Archivable):
        raise UsageError(
            f"the store {store.url} has no archival storage classes",
            hint="archival needs an S3 store (s3://...)",
        )
    return store


@runtime_checkable
class ServerCopy(Protocol):
    """A store that can copy an object from another store without the bytes passing
    through this host (S3's CopyObject): an optional part of the interface."""

    def can_copy_from(self, source: Store, size: int) -> bool:
        """Can an object of `size` bytes in `source` be copied here by the server?"""
        ...

    def copy_from(
        self,
        source: Store,
        source_key: str,
        key: str,
        *,
        md5: str,
        size: int,
        metadata: Mapping[str, str],
    ) -> PutResult:
        """Create object `key` as a copy of `source_key` in `source`, with `metadata`.

        On the same terms as `Store.put_file`: never overwrites (`ConflictError`), and a
        returned result describes an object checked against `md5` and `size` (by its ETag
        where that is an md5, else read back); a copy that is not is deleted and
        `VerificationError` raised. A copy the server refuses is `StoreError`: stream it.
        """
        ...


def server_copy(store: Store, source: Store, size: int) -> ServerCopy | None:
    """`store` if it can copy an object of `size` bytes from `source` on the server."""
    if isinstance(store, ServerCopy) and store.can_copy_from(source, size):
        return store
    return None
