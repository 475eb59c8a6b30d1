"""Amazon S3 and S3-compatible servers: ``s3://bucket/optional/prefix``.

Requests go through obstore (far less CPU per request than boto3), multipart uploads
through boto3 (a Content-MD5 per part), and every write is checked against our own md5.
Why, and how faults are retried: docs/s3-store.md.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import obstore
import obstore.exceptions as obx

from ..errors import NotFoundError, StoreError
from ..integrity import normalize_etag
from ..urls import mask_url
from . import s3_archive, s3_copy, s3_download
from .base import (
    ArchiveState,
    DownloadResult,
    ObjectInfo,
    Progress,
    PutResult,
    Store,
    Writable,
    check_small,
)
from .s3_client import S3Connection
from .s3_multipart import PART_CONCURRENCY, abort_stale_uploads, put_multipart
from .s3_put import put_single
from .s3_retry import ATTEMPTS, FIRST_BACKOFF_SECONDS, again, transient
from .s3_wire import first_line

if TYPE_CHECKING:
    import builtins
    from collections.abc import Iterable, Iterator, Mapping
    from datetime import datetime
    from pathlib import Path

__all__ = ["S3Store"]

logger = logging.getLogger(__name__)

MULTIPART_THRESHOLD = 16 * 1024 * 1024
PART_SIZE = 8 * 1024 * 1024
DELETE_BATCH = 1000
READ_TIMEOUT_SECONDS = 60
SSE_ALGORITHMS = ("AES256", "aws:kms")


class S3Store:
    """A bucket (and optional prefix) on S3 or an S3-compatible server.

    It wires the pieces: clients in `s3_client`, puts in `s3_put` and `s3_multipart`,
    reads in `s3_download`, retries in `s3_retry`, errors in `s3_errors`, archival
    classes in `s3_archive` (it is also a `base.Archivable`), copies between buckets of
    one server in `s3_copy` (a `base.ServerCopy`).
    """

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        part_size: int = PART_SIZE,
        timeout: float = READ_TIMEOUT_SECONDS,
        sse: str | None = None,
        sse_kms_key_id: str | None = None,
        trust_server_checks: bool = False,
    ) -> None:
        if sse is not None and sse not in SSE_ALGORITHMS:
            raise StoreError(f"unsupported server-side encryption {sse!r}; use AES256 or aws:kms")
        if sse_kms_key_id is not None and sse != "aws:kms":
            raise StoreError("an SSE-KMS key id needs server-side encryption 'aws:kms'")
        if timeout <= 0:
            raise StoreError(f"the S3 timeout must be positive, got {timeout!r}")
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise StoreError(f"not an s3:// URL: {url!r}")
        self.url = url.rstrip("/")
        self.bucket = parts.netloc
        prefix = parts.path.strip("/")
        self.key_prefix = f"{prefix}/" if prefix else ""
        self.endpoint_url = endpoint_url
        self.region = (
            region
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
        )
        self._access_key = access_key
        self._secret_key = secret_key
        self.multipart_threshold = max(multipart_threshold, part_size)
        self.part_size = part_size
        self.timeout = timeout
        self.sse = sse
        self.sse_kms_key_id = sse_kms_key_id
        self.trust_server_checks = trust_server_checks
        self._conn = S3Connection(
            bucket=self.bucket,
            endpoint_url=endpoint_url,
            region=self.region,
            access_key=access_key,
            secret_key=secret_key,
            timeout=timeout,
            sse=sse,
            sse_kms_key_id=sse_kms_key_id,
            boto_connections=PART_CONCURRENCY * 2,
            trust_server_checks=trust_server_checks,
        )

    def __repr__(self) -> str:
        where = f", endpoint={mask_url(self.endpoint_url)!r}" if self.endpoint_url else ""
        return f"S3Store({self.url!r}{where})"

    def client(self) -> Any:
        """The boto3 client (made on first use), for what obstore cannot do."""
        return self._conn.client()

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
            size = os.stat(source).st_size
        except FileNotFoundError:
            raise NotFoundError(f"local file {source} not found") from None
        if size > self.multipart_threshold:
            return put_multipart(self._conn, key, source, metadata or {}, self.part_size, progress)
        with open(source, "rb") as fp:
            body = fp.read()
        return put_single(self._conn, key, body, metadata, progress)

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        progress: Progress | None = None,
    ) -> PutResult:
        check_small(data)
        return put_single(self._conn, key, data, metadata, progress)

    def get_into(
        self, key: str, out: Writable, *, progress: Progress | None = None
    ) -> DownloadResult:
        return s3_download.get_into(self._conn, key, out, progress)

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        return s3_download.iter_bytes(self._conn, key)

    def head(self, key: str) -> ObjectInfo:
        return s3_download.head(self._conn, key)

    def etag_is_md5(self, key: str) -> bool:
        return self._conn.etag_is_md5(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # object_store lists by whole path segments; list the enclosing "directory" and
        # filter, so a prefix that ends mid-segment still works.
        # A page whose answer broke off is asked for again, after the last key yielded:
        # S3 lists in key order. A server that does not cannot resume so (keys after
        # the last one yielded may have been skipped): that listing fails instead.
        directory = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        last: str | None = None
        in_order = True
        failures = 0
        while True:
            try:
                pages = obstore.list(
                    self._conn.ob, prefix=directory or None, offset=last, chunk_size=1000
                )
                for batch in pages:
                    for meta in batch:
                        if last is not None and meta["path"] <= last:
                            in_order = False
                        last = meta["path"]
                        if meta["path"].startswith(prefix):
                            yield ObjectInfo(
                                key=meta["path"],
                                size=meta["size"],
                                etag=normalize_etag(meta.get("e_tag")),
                                last_modified=meta.get("last_modified"),
                            )
                    failures = 0
                return
            except Exception as exc:
                failures += 1
                if failures == ATTEMPTS or not transient(exc):
                    raise self._conn.translate(exc, prefix) from exc
                if not in_order:
                    raise StoreError(
                        f"listing {prefix!r} in bucket {self.bucket} broke off "
                        f"({first_line(exc)}), and the server lists keys out of order, so "
                        "it cannot resume where it stopped",
                        hint="retry; nothing was changed",
                    ) from exc
                logger.info("listing %s broke off (%s); resuming", prefix, first_line(exc))
            time.sleep(FIRST_BACKOFF_SECONDS * 3 ** (failures - 1))

    def delete_many(self, keys: Iterable[str]) -> int:
        batch: list[str] = []
        count = 0
        for key in keys:
            batch.append(key)
            if len(batch) == DELETE_BATCH:
                self._delete_batch(batch)
                count += len(batch)
                batch = []
        if batch:
            self._delete_batch(batch)
            count += len(batch)
        return count

    def _delete_batch(self, keys: builtins.list[str]) -> None:
        try:
            again(keys[0], lambda: obstore.delete(self._conn.ob, keys), timeout=self.timeout)
        except obx.NotFoundError:
            pass
        except Exception as exc:
            raise self._conn.translate(exc, keys[0]) from exc

    def clean_temporaries(self, prefix: str, older_than: datetime, *, dry_run: bool = False) -> int:
        return abort_stale_uploads(self._conn, prefix, older_than, dry_run)

    def for_bucket(self, bucket: str) -> S3Store:
        if bucket == self.bucket:
            return self
        return S3Store(
            f"s3://{bucket}",
            endpoint_url=self.endpoint_url,
            region=self.region,
            access_key=self._access_key,
            secret_key=self._secret_key,
            multipart_threshold=self.multipart_threshold,
            part_size=self.part_size,
            timeout=self.timeout,
            sse=self.sse,
            sse_kms_key_id=self.sse_kms_key_id,
            trust_server_checks=self.trust_server_checks,
        )

    def close(self) -> None:
        self._conn.close()

    # -- ServerCopy ----------------------------------------------------------------------

    def can_copy_from(self, source: Store, size: int) -> bool:
        # Same server, same credentials (so one request may read the one and write the
        # other), another bucket, and within what one CopyObject request copies.
        return (
            isinstance(source, S3Store)
            and source.bucket != self.bucket
            and source.endpoint_url == self.endpoint_url
            and source.region == self.region
            and source._access_key == self._access_key
            and source._secret_key == self._secret_key
            and 0 <= size <= s3_copy.COPY_LIMIT
        )

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
        if not self.can_copy_from(source, size):
            raise StoreError(f"{self.url} cannot copy from {source.url} on the server")
        return s3_copy.copy_object(
            self._conn, source.bucket, source_key, key, md5=md5, size=size, metadata=metadata
        )

    # -- Archivable ----------------------------------------------------------------------

    def move_to_class(self, key: str, storage_class: str, *, md5: str, size: int) -> str:
        return s3_archive.move_to_class(self._conn, key, storage_class, md5=md5, size=size)

    def archive_state(self, key: str) -> ArchiveState:
        return s3_archive.archive_state(self._conn, key)

    def request_restore(self, key: str, *, days: int, tier: str) -> bool:
        return s3_archive.request_restore(self._conn, key, days=days, tier=tier)
