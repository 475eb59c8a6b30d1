"""Amazon S3 and S3-compatible servers: ``s3://bucket/optional/prefix``.

The data path (single-part put, get, head, list, delete) runs on obstore, a binding of
Rust's ``object_store``: it costs about a seventh of boto3's CPU per request, which is
what lets small-file throughput approach s5cmd's. Single-part puts use
``If-None-Match: *`` (obstore's ``mode="create"``) as a second guard behind our unique
keys; servers that ignore the header (rclone) still never see a key written twice.

Multipart uploads (`s3_multipart`) run on boto3, which can send each part's Content-MD5
and complete conditionally.

Whatever the server says, a result counts only if its ETag agrees with our own md5
(`repo.integrity.etag_matches`); otherwise the object is deleted and the put fails.

Progress: a single-part put reports its whole size at once, after the object is stored
and verified (obstore sends the body in one call and says nothing until it is done);
multipart puts report each part as it is stored (`s3_multipart`); downloads report per
chunk as it is written out.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import obstore
import obstore.exceptions as obx
from obstore.store import S3Store as _ObStore

from ..errors import ConflictError, NotFoundError, RepoError, StoreError, VerificationError
from ..integrity import etag_matches, normalize_etag
from .base import DownloadResult, ObjectInfo, Progress, PutResult, copy_hashing
from .s3_multipart import PART_CONCURRENCY, put_multipart
from .s3_wire import decode_meta, encode_meta, first_line, s3_code

__all__ = ["S3Store"]

logger = logging.getLogger(__name__)

MULTIPART_THRESHOLD = 16 * 1024 * 1024
PART_SIZE = 8 * 1024 * 1024
STREAM_CHUNK = 4 * 1024 * 1024
DELETE_BATCH = 1000
READ_TIMEOUT_SECONDS = 60


class S3Store:
    """A bucket (and optional prefix) on S3 or an S3-compatible server."""

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
    ) -> None:
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
        self._store = self._make_obstore()
        self._boto: Any = None
        self._boto_lock = threading.Lock()

    def __repr__(self) -> str:
        where = f", endpoint={self.endpoint_url!r}" if self.endpoint_url else ""
        return f"S3Store({self.url!r}{where})"

    # -- clients -------------------------------------------------------------------------

    def _make_obstore(self) -> Any:
        kwargs: dict[str, Any] = {"region": self.region}
        if self.endpoint_url:
            kwargs["endpoint"] = self.endpoint_url
            kwargs["virtual_hosted_style_request"] = False
        client_options: Any = {
            "connect_timeout": timedelta(seconds=10),
            # object_store's default 30 s cap on a whole request would cut off any
            # download slower than 30 s; a stall is caught by the read timeout instead.
            "timeout": timedelta(hours=24),
            "read_timeout": timedelta(seconds=READ_TIMEOUT_SECONDS),
            "pool_max_idle_per_host": "64",
        }
        if self.endpoint_url and self.endpoint_url.startswith("http://"):
            client_options["allow_http"] = True
        retry: Any = {"max_retries": 5, "retry_timeout": timedelta(seconds=120)}
        if self._access_key and self._secret_key:
            kwargs["access_key_id"] = self._access_key
            kwargs["secret_access_key"] = self._secret_key
            return _ObStore(
                self.bucket, client_options=client_options, retry_config=retry, **kwargs
            )
        # No keys in the configuration: the standard AWS chain (env, profiles, instance role).
        import boto3
        from obstore.auth.boto3 import Boto3CredentialProvider

        provider = Boto3CredentialProvider(boto3.Session())
        return _ObStore(
            self.bucket,
            client_options=client_options,
            retry_config=retry,
            credential_provider=provider,
            **kwargs,
        )

    def client(self) -> Any:
        """The boto3 client (made on first use), for what obstore cannot do."""
        with self._boto_lock:
            if self._boto is None:
                import boto3
                from botocore.config import Config as BotoConfig

                cfg = BotoConfig(
                    region_name=self.region,
                    retries={"mode": "standard", "max_attempts": 5},
                    max_pool_connections=PART_CONCURRENCY * 2,
                    connect_timeout=10,
                    read_timeout=60,
                    s3={"addressing_style": "path"} if self.endpoint_url else {},
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                )
                self._boto = boto3.session.Session().client(
                    "s3",
                    endpoint_url=self.endpoint_url,
                    aws_access_key_id=self._access_key,
                    aws_secret_access_key=self._secret_key,
                    config=cfg,
                )
            return self._boto

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
            return put_multipart(self, key, source, metadata or {}, progress)
        with open(source, "rb") as fp:
            body = fp.read()
        md5 = hashlib.md5(body).hexdigest()
        attributes = {k: encode_meta(v) for k, v in (metadata or {}).items()}
        try:
            result = obstore.put(
                self._store,
                key,
                body,
                mode="create",
                attributes=attributes,
                use_multipart=False,
            )
        except (obx.AlreadyExistsError, obx.PreconditionError):
            # Only this version ever writes `key` (its token is random), so an object
            # already there with our bytes is ours, from an attempt whose answer was
            # lost. Anything else stays untouched: objects are never overwritten.
            adopted = self.adopt_existing(key, len(body), md5)
            if adopted is not None:
                if progress is not None and body:
                    progress(len(body))
                return adopted
            raise ConflictError(
                f"object {key!r} already exists with other content; objects are never overwritten"
            ) from None
        except Exception as exc:
            raise self.translate(exc, key, writing=True) from exc
        etag = result.get("e_tag")
        if not etag_matches(etag, md5):
            fate = "was removed" if self.discard(key) else "is left for garbage collection"
            raise VerificationError(
                f"upload of {key!r} failed verification: the store's ETag {etag!r} is not "
                f"our md5 {md5}; the object {fate}",
                hint="retry; if it persists, the server or a proxy is corrupting data",
            )
        if progress is not None and body:
            progress(len(body))
        return PutResult(key=key, md5=md5, size=len(body), etag=normalize_etag(etag))

    def adopt_existing(
        self, key: str, size: int, md5: str, part_md5s: Sequence[bytes] = ()
    ) -> PutResult | None:
        """The object at `key` if it is exactly what we meant to write, else None."""
        try:
            info = self.head(key)
        except NotFoundError:
            return None
        if info.size == size and etag_matches(info.etag, md5, part_md5s):
            logger.info("object %s was already written by an earlier attempt; keeping it", key)
            return PutResult(key=key, md5=md5, size=size, etag=info.etag, multipart=bool(part_md5s))
        return None

    def discard(self, key: str) -> bool:
        """Delete an object we will not stand behind; True if it is gone."""
        try:
            obstore.delete(self._store, key)
        except Exception:
            logger.warning("could not remove unverified object %s; GC will find it", key)
            return False
        return True

    def get_into(
        self, key: str, out: BinaryIO, *, progress: Progress | None = None
    ) -> DownloadResult:
        return copy_hashing(self.iter_bytes(key), out, progress)

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        try:
            result = obstore.get(self._store, key)
        except Exception as exc:
            raise self.translate(exc, key) from exc
        return self._stream(result, key)

    def _stream(self, result: Any, key: str) -> Iterator[bytes]:
        try:
            for chunk in result.stream(min_chunk_size=STREAM_CHUNK):
                yield bytes(chunk)
        except Exception as exc:
            raise self.translate(exc, key) from exc

    def head(self, key: str) -> ObjectInfo:
        try:
            result = obstore.get(self._store, key, options={"head": True})
        except Exception as exc:
            raise self.translate(exc, key) from exc
        meta = result.meta
        standard = {"Content-Type", "Content-Disposition", "Content-Encoding"}
        standard |= {"Content-Language", "Cache-Control"}
        user = {k: decode_meta(v) for k, v in result.attributes.items() if k not in standard}
        return ObjectInfo(
            key=key,
            size=meta["size"],
            etag=normalize_etag(meta.get("e_tag")),
            last_modified=meta.get("last_modified"),
            metadata=user,
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # object_store lists by whole path segments; list the enclosing "directory" and
        # filter, so a prefix that ends mid-segment still works.
        directory = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        try:
            for batch in obstore.list(self._store, prefix=directory or None, chunk_size=1000):
                for meta in batch:
                    if meta["path"].startswith(prefix):
                        yield ObjectInfo(
                            key=meta["path"],
                            size=meta["size"],
                            etag=normalize_etag(meta.get("e_tag")),
                            last_modified=meta.get("last_modified"),
                        )
        except Exception as exc:
            raise self.translate(exc, prefix) from exc

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
            obstore.delete(self._store, keys)
        except obx.NotFoundError:
            pass
        except Exception as exc:
            raise self.translate(exc, keys[0]) from exc

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
        )

    def close(self) -> None:
        if self._boto is not None:
            self._boto.close()
            self._boto = None

    # -- errors --------------------------------------------------------------------------

    def translate(self, exc: BaseException, key: str, *, writing: bool = False) -> RepoError:
        """One clear error per failure; never a raw obstore/botocore exception."""
        where = f"s3://{self.bucket}/{key}"
        if isinstance(exc, RepoError):
            return exc
        code = s3_code(exc)
        not_found = isinstance(exc, obx.NotFoundError | FileNotFoundError) or code in (
            "NoSuchKey",
            "NoSuchBucket",
            "404",
            "NotFound",
        )
        if not_found and (writing or code == "NoSuchBucket"):
            # Writing a new key can only miss because the bucket is not there.
            return StoreError(
                f"bucket {self.bucket!r} does not exist", hint="create it, or fix 'store'"
            )
        if not_found:
            return NotFoundError(f"object {where} not found")
        if isinstance(exc, obx.AlreadyExistsError | obx.PreconditionError):
            return ConflictError(f"object {where} already exists; objects are never overwritten")
        if isinstance(exc, obx.PermissionDeniedError | obx.UnauthenticatedError):
            return StoreError(
                f"access to {where} denied: {first_line(exc)}",
                hint="check s3_access_key / s3_secret_key and the bucket's permissions",
            )
        if code is not None:
            if code in ("PreconditionFailed", "412"):
                return ConflictError(
                    f"object {where} already exists; objects are never overwritten"
                )
            if code in ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"):
                return VerificationError(
                    f"the store rejected a corrupted body for {where} ({code})"
                )
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
                return StoreError(
                    f"access to {where} denied ({code})",
                    hint="check s3_access_key / s3_secret_key and the bucket's permissions",
                )
            return StoreError(f"S3 request for {where} failed: {code}")
        text = first_line(exc)
        if "bucket" in text.lower() and "not" in text.lower() and "exist" in text.lower():
            return StoreError(f"bucket {self.bucket!r} does not exist", hint="create it first")
        hint = None
        if self.endpoint_url and ("connect" in text.lower() or "error sending" in text.lower()):
            hint = f"check that the S3 server at {self.endpoint_url} is running (s3_endpoint_url)"
        return StoreError(f"S3 request for {where} failed: {text}", hint=hint)
