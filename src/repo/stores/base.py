"""The store interface: a flat namespace of immutable objects.

Every backend (one module each) implements `Store`. The same contract tests run against
all of them (tests/test_store_contract.py), so the repository code above never needs to
know which one it talks to.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

__all__ = ["DownloadResult", "ObjectInfo", "PutResult", "Store", "copy_hashing"]


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a store knows about one object."""

    key: str
    size: int
    etag: str | None = None
    last_modified: datetime | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PutResult:
    """A verified upload: our md5 and size of what was sent, and the store's ETag."""

    key: str
    md5: str
    size: int
    etag: str | None
    multipart: bool = False


@dataclass(frozen=True, slots=True)
class DownloadResult:
    """md5 and size of the bytes actually received."""

    md5: str
    size: int


class Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...


def copy_hashing(chunks: Iterable[bytes], out: Writable) -> DownloadResult:
    """Write `chunks` to `out`, hashing them on the way (the one pass over the bytes)."""
    md5 = hashlib.md5()
    size = 0
    for chunk in chunks:
        md5.update(chunk)
        size += len(chunk)
        out.write(chunk)
    return DownloadResult(md5=md5.hexdigest(), size=size)


@runtime_checkable
class Store(Protocol):
    """A bucket of immutable objects addressed by key.

    Keys are full object keys (they include `key_prefix`). Implementations translate their
    own errors into `repo.errors` types: a missing object is `NotFoundError`, everything
    else that goes wrong is `StoreError` (or `VerificationError` for checksums).
    """

    #: The URL this store was opened from (``s3://bucket/prefix``, ``file:///dir``).
    url: str
    #: Bucket name (S3) or root directory (local); recorded with every file.
    bucket: str
    #: Prefix under which this repository keeps its objects ("" or ending in "/").
    key_prefix: str

    def put_file(
        self, key: str, source: Path, *, metadata: Mapping[str, str] | None = None
    ) -> PutResult:
        """Create object `key` from a local file, hashing it in the same pass as sending it.

        Never overwrites: where the backend can detect an existing object it raises
        `ConflictError`. The store's answer (ETag) is checked against our md5; on mismatch
        the object is deleted (best effort) and `VerificationError` is raised, so a
        returned result always describes a complete, verified object.
        """
        ...

    def get_into(self, key: str, out: BinaryIO) -> DownloadResult:
        """Stream object `key` into the writable binary file `out`, hashing as it goes.

        Returns the md5 and size of the bytes written; comparing them with the catalog
        is the caller's job. Raises `NotFoundError` if the object does not exist.
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

    def delete_many(self, keys: Iterable[str]) -> int:
        """Delete these objects in batches; missing ones are no error. Returns the count."""
        ...

    def for_bucket(self, bucket: str) -> Store:
        """A store on another bucket of the same server and credentials (files record theirs)."""
        ...

    def close(self) -> None:
        """Release connections and threads."""
        ...
