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

Faults (tests/test_store_faults.py puts a fault-injecting proxy in front of real servers):

* obstore (object_store's ``RetryConfig``) retries every 5xx answer, SlowDown included,
  and connection failures before a request was sent, with exponential backoff and
  jitter; a GET whose body breaks off (reset, truncated, stalled past the read timeout)
  is resumed by obstore itself with a ranged GET. What it does not retry, we do, a few
  times with our own backoff (`_again`): a PUT whose connection failed after the body
  went out (object_store treats PUT as non-idempotent; ours is a create-only put and an
  object already there with our bytes is adopted), and a list or bulk-delete answer
  whose body broke off (both safe to repeat; a listing resumes after its last key).
* boto3 (multipart) runs in botocore's "standard" retry mode: 500/502/503/504,
  throttling codes (SlowDown) and connection errors, timeouts and broken answers are
  retried 5 times (6 attempts) with exponential backoff and jitter (1 s base for
  throttling, 50 ms otherwise); a repeated CompleteMultipartUpload whose first answer
  was lost is settled by `put_multipart` adopting the completed object.
* ``s3_timeout_seconds`` (`timeout`) is how long a request may wait for the server's next
  bytes; a stalled request is abandoned and retried like any transient fault, and
  obstore stops retrying 3 x `timeout` after the first attempt, so a dead server is a
  clear `StoreError` ("timed out") after a bounded time, never a hang.

Server-side encryption (``s3_sse``): every write asks for it, obstore's puts through
its ``server_side_encryption`` / ``sse_kms_key_id`` settings, boto3's multipart uploads
through their CreateMultipartUpload arguments (the code makes no server-side copies).
The ETag of an SSE-KMS object is not the md5 of its content on AWS, so with ``aws:kms``
an ETag that differs from our md5 is no evidence of damage: single-part puts then go
through boto3 with Content-MD5 and every part carries one, so the server itself refuses
a corrupted body (BadDigest), and an object left by an earlier attempt is adopted only
after its content is read back and hashed.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import fcntl
import hashlib
import io
import itertools
import logging
import os
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import obstore
import obstore.exceptions as obx
from obstore.store import S3Store as _ObStore

from ..errors import (
    ConflictError,
    NotFoundError,
    RepoError,
    StoreError,
    VerificationError,
)
from ..integrity import etag_matches, normalize_etag
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
from .s3_multipart import PART_CONCURRENCY, abort_stale_uploads, put_multipart
from .s3_wire import decode_meta, encode_meta, first_line, s3_code

__all__ = ["S3Store"]

logger = logging.getLogger(__name__)

MULTIPART_THRESHOLD = 16 * 1024 * 1024
PART_SIZE = 8 * 1024 * 1024
STREAM_CHUNK = 4 * 1024 * 1024
#: Objects above this size download as parallel ranged GETs (`S3Store._ranges`).
RANGE_THRESHOLD = 32 * 1024 * 1024
RANGE_PART = 4 * 1024 * 1024
#: Ranges into a file are larger: fewer requests (each costs boto3 milliseconds of CPU),
#: at 32 MiB of buffers; a stream keeps to `RANGE_PART` (its reader's memory is bounded).
FILE_RANGE_PART = 8 * 1024 * 1024
BOTO_READ_PIECE = 1024 * 1024
RANGE_CONCURRENCY = 4
DELETE_BATCH = 1000
READ_TIMEOUT_SECONDS = 60
SSE_ALGORITHMS = ("AES256", "aws:kms")
#: Attempts of our own (`_again`) at what the clients do not retry themselves.
ATTEMPTS = 4
FIRST_BACKOFF_SECONDS = 0.1

_T = TypeVar("_T")


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
        timeout: float = READ_TIMEOUT_SECONDS,
        sse: str | None = None,
        sse_kms_key_id: str | None = None,
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
        #: True once the server has answered a ranged GET with status 200 (rclone).
        self._ranges_by_boto = False
        self.sse = sse
        self.sse_kms_key_id = sse_kms_key_id
        self._store = self._make_obstore()
        self._boto: Any = None
        self._boto_lock = threading.Lock()

    def __repr__(self) -> str:
        where = f", endpoint={self.endpoint_url!r}" if self.endpoint_url else ""
        return f"S3Store({self.url!r}{where})"

    @property
    def etag_is_md5(self) -> bool:
        """Does a (single-part) object's ETag equal the md5 of its content?

        Not for SSE-KMS on AWS: there the ETag is derived from the ciphertext.
        """
        return self.sse != "aws:kms"

    def sse_arguments(self) -> dict[str, str]:
        """boto3 arguments that ask for the configured server-side encryption."""
        args: dict[str, str] = {}
        if self.sse is not None:
            args["ServerSideEncryption"] = self.sse
        if self.sse_kms_key_id is not None:
            args["SSEKMSKeyId"] = self.sse_kms_key_id
        return args

    # -- clients -------------------------------------------------------------------------

    def _make_obstore(self) -> Any:
        kwargs: dict[str, Any] = {"region": self.region}
        if self.endpoint_url:
            kwargs["endpoint"] = self.endpoint_url
            kwargs["virtual_hosted_style_request"] = False
        if self.sse is not None:
            kwargs["server_side_encryption"] = self.sse
        if self.sse_kms_key_id is not None:
            kwargs["sse_kms_key_id"] = self.sse_kms_key_id
        client_options: Any = {
            "connect_timeout": timedelta(seconds=min(10, self.timeout)),
            # object_store's default 30 s cap on a whole request would cut off any
            # download slower than 30 s; a stall is caught by the read timeout instead.
            "timeout": timedelta(hours=24),
            "read_timeout": timedelta(seconds=self.timeout),
            "pool_max_idle_per_host": "64",
        }
        if self.endpoint_url and self.endpoint_url.startswith("http://"):
            client_options["allow_http"] = True
        # Up to 5 retries, each wait drawn between 100 ms and twice the last one (capped
        # at 5 s), for at most 3 timeouts' worth of time since the first attempt.
        retry: Any = {
            "max_retries": 5,
            "retry_timeout": timedelta(seconds=3 * self.timeout),
            "backoff": {
                "init_backoff": timedelta(milliseconds=100),
                "max_backoff": timedelta(seconds=5),
                "base": 2,
            },
        }
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
                    connect_timeout=min(10, self.timeout),
                    read_timeout=self.timeout,
                    # Every body boto3 sends carries a Content-MD5, which is signed and
                    # which the server checks: hashing the body again with SHA-256 for
                    # the signature (what botocore does over http) would add nothing.
                    s3={
                        "payload_signing_enabled": False,
                        **({"addressing_style": "path"} if self.endpoint_url else {}),
                    },
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
        return self._put_single(key, body, metadata, progress)

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        progress: Progress | None = None,
    ) -> PutResult:
        check_small(data)
        return self._put_single(key, data, metadata, progress)

    def _put_single(
        self,
        key: str,
        body: bytes,
        metadata: Mapping[str, str] | None,
        progress: Progress | None,
    ) -> PutResult:
        md5 = hashlib.md5(body).hexdigest()
        meta = {k: encode_meta(v) for k, v in (metadata or {}).items()}
        put = self._put_checked_by_server if not self.etag_is_md5 else self._put_obstore
        try:
            etag = self._again(key, lambda: put(key, body, md5, meta))
        except (obx.AlreadyExistsError, obx.PreconditionError, _Exists):
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
        if self.etag_is_md5 and not etag_matches(etag, md5):
            fate = "was removed" if self.discard(key) else "is left for garbage collection"
            raise VerificationError(
                f"upload of {key!r} failed verification: the store's ETag {etag!r} is not "
                f"our md5 {md5}; the object {fate}",
                hint="retry; if it persists, the server or a proxy is corrupting data",
            )
        if progress is not None and body:
            progress(len(body))
        return PutResult(key=key, md5=md5, size=len(body), etag=normalize_etag(etag))

    def _put_obstore(self, key: str, body: bytes, md5: str, meta: dict[str, str]) -> str | None:
        result = obstore.put(
            self._store, key, body, mode="create", attributes=meta, use_multipart=False
        )
        etag: str | None = result.get("e_tag")
        return etag

    def _put_checked_by_server(
        self, key: str, body: bytes, md5: str, meta: dict[str, str]
    ) -> str | None:
        """A create-only put with Content-MD5, which the server checks against the body.

        For SSE-KMS, whose ETag cannot confirm the content (see the module docstring).
        """
        try:
            resp = self.client().put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentMD5=base64.b64encode(bytes.fromhex(md5)).decode(),
                IfNoneMatch="*",
                Metadata=meta,
                **self.sse_arguments(),
            )
        except Exception as exc:
            if s3_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise _Exists from exc
            raise
        etag: str | None = resp.get("ETag")
        return etag

    def _again(self, key: str, attempt: Callable[[], _T]) -> _T:
        """`attempt`, repeated with backoff while it fails in a way the client did not
        retry itself (see `_transient`), within `ATTEMPTS` and 3 timeouts of time."""
        started = time.monotonic()
        delay = FIRST_BACKOFF_SECONDS
        for number in range(1, ATTEMPTS + 1):
            try:
                return attempt()
            except Exception as exc:
                late = time.monotonic() - started + delay > 3 * self.timeout
                if number == ATTEMPTS or late or not _transient(exc):
                    raise
                logger.info("S3 request for %s failed (%s); retrying", key, first_line(exc))
            time.sleep(delay)
            delay *= 3
        raise AssertionError("unreachable")  # pragma: no cover

    def adopt_existing(
        self, key: str, size: int, md5: str, part_md5s: Sequence[bytes] = ()
    ) -> PutResult | None:
        """The object at `key` if it is exactly what we meant to write, else None."""
        try:
            info = self.head(key)
        except NotFoundError:
            return None
        if info.size == size and not self.etag_is_md5:
            # The ETag cannot tell (SSE-KMS): read the object back and hash it.
            got = hash_only(self.iter_bytes(key))
            if got.size == size and got.md5 == md5:
                logger.info("object %s was already written by an earlier attempt", key)
                return PutResult(
                    key=key, md5=md5, size=size, etag=info.etag, multipart=bool(part_md5s)
                )
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
        self, key: str, out: Writable, *, progress: Progress | None = None
    ) -> DownloadResult:
        try:
            result = obstore.get(self._store, key)
        except Exception as exc:
            raise self.translate(exc, key) from exc
        size = int(result.meta["size"])
        if size <= STREAM_CHUNK:
            # One piece either way: taken in one call, not a stream's two (each call
            # waits on the client's runtime, and a fetch makes thousands of them).
            try:
                body = result.bytes()
            except Exception as exc:
                raise self.translate(exc, key) from exc
            return copy_hashing((memoryview(body),), out, progress)
        if size <= RANGE_THRESHOLD:
            return copy_hashing(self._stream(result, key), out, progress)
        fd = _plain_file(out)
        if fd is None:
            return copy_hashing(self._ranges(result, key, size), out, progress)
        # A file: each range is written at its place by the thread that fetched it, in
        # parallel with the one md5 pass here (which only reads).
        assert isinstance(out, io.BufferedWriter | io.FileIO)
        out.flush()
        base = out.tell()
        got = hash_only(self._ranges(result, key, size, into=(fd, base)), progress)
        out.seek(base + got.size)
        return got

    def _ranges(
        self, result: Any, key: str, size: int, into: tuple[int, int] | None = None
    ) -> Iterator[bytes | memoryview]:
        """A large object in order, fetched as parallel ranged GETs (one TCP stream
        rarely fills a fast link). The first part (`RANGE_PART` bytes, or
        `FILE_RANGE_PART` into a file) comes from the response already open while the
        next ranges are fetched, `RANGE_CONCURRENCY` at a time;
        each is handed on, in order, to the caller's single hashing pass. Objects are
        never overwritten, so the ranges cannot mix two versions.

        Ranges land in a fixed set of reused buffers (a buffer goes back to the pool
        when the caller asks for the next piece, having written this one), so memory
        stays at `RANGE_CONCURRENCY` parts whatever the object's size.

        With `into` (a file descriptor and the offset the object starts at), every piece
        is also written there, at its place, before it is handed on.
        """
        stream = self._stream(result, key)
        pool = ThreadPoolExecutor(RANGE_CONCURRENCY, thread_name_prefix="repo-range")
        part = RANGE_PART if into is None else FILE_RANGE_PART
        free = [bytearray(part) for _ in range(RANGE_CONCURRENCY)]
        pending: deque[tuple[bytearray, Future[int]]] = deque()
        starts = iter(range(part, size, part))

        def fetch(start: int, buf: bytearray) -> int:
            got = self._range_into(key, start, size, buf)
            if into is not None:
                _write_at(into[0], memoryview(buf)[:got], into[1] + start)
            return got

        def submit(start: int) -> None:
            buf = free.pop()
            pending.append((buf, pool.submit(fetch, start, buf)))

        try:
            for start in itertools.islice(starts, RANGE_CONCURRENCY):
                submit(start)
            done = 0
            for chunk in stream:
                take = min(len(chunk), part - done)
                if into is not None:
                    _write_at(into[0], memoryview(chunk)[:take], into[1] + done)
                yield chunk[:take]
                done += take
                if done >= part:
                    break
            stream.close()  # the rest comes as ranges
            while pending:
                buf, future = pending.popleft()
                yield memoryview(buf)[: future.result()]
                free.append(buf)
                following = next(starts, None)
                if following is not None:
                    submit(following)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _range_into(self, key: str, start: int, size: int, buf: bytearray) -> int:
        """Fetch bytes [start, start + len(buf)) of `key` into `buf`; their length."""
        end = min(start + len(buf), size)
        try:
            if self._ranges_by_boto:
                got = self._boto_range_into(key, start, end, buf)
            else:
                try:
                    data = obstore.get_range(self._store, key, start=start, end=end)
                except Exception as exc:
                    if "non-partial" not in _chain(exc):
                        raise
                    # rclone answers a range with status 200 (and the right bytes), which
                    # object_store refuses: boto3 takes the answer as it is.
                    self._ranges_by_boto = True
                    got = self._boto_range_into(key, start, end, buf)
                else:
                    got = len(data)
                    if got <= len(buf):
                        buf[:got] = memoryview(data)
        except RepoError:
            raise
        except Exception as exc:
            raise self.translate(exc, key) from exc
        if got != end - start:
            raise StoreError(
                f"S3 download of {key!r} broke off: bytes {start}-{end} came back as {got} bytes",
                hint="retry; if it persists, the server or a proxy is cutting answers short",
            )
        return got

    def _boto_range_into(self, key: str, start: int, end: int, buf: bytearray) -> int:
        answer = self.client().get_object(
            Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end - 1}"
        )
        if not str(answer.get("ContentRange", "")).startswith(f"bytes {start}-{end - 1}/"):
            answer["Body"].close()
            raise StoreError(
                f"S3 download of {key!r}: the server did not answer the range {start}-{end}",
                hint="retry; a server that ignores ranges cannot serve parallel downloads",
            )
        view = memoryview(buf)
        got = 0
        with contextlib.closing(answer["Body"]) as body:
            while got < len(view):
                # In pieces: urllib3's readinto reads into a new buffer of the size
                # asked for and copies it over, so a whole range at once would double
                # the memory (and the page faults) of every range in flight.
                n = body.readinto(view[got : got + BOTO_READ_PIECE]) or 0
                if not n:
                    break
                got += n
            if got == len(view) and body.read(1):
                got += 1  # longer than asked: reported as a mismatch by the caller
        return got

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        try:
            result = obstore.get(self._store, key)
        except Exception as exc:
            raise self.translate(exc, key) from exc
        return self._stream(result, key)

    def _stream(self, result: Any, key: str) -> Generator[bytes, None, None]:
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
        # A page whose answer broke off is asked for again, after the last key yielded.
        directory = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        last: str | None = None
        failures = 0
        while True:
            try:
                pages = obstore.list(
                    self._store, prefix=directory or None, offset=last, chunk_size=1000
                )
                for batch in pages:
                    for meta in batch:
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
                if failures == ATTEMPTS or not _transient(exc):
                    raise self.translate(exc, prefix) from exc
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
            self._again(keys[0], lambda: obstore.delete(self._store, keys))
        except obx.NotFoundError:
            pass
        except Exception as exc:
            raise self.translate(exc, keys[0]) from exc

    def clean_temporaries(self, prefix: str, older_than: datetime, *, dry_run: bool = False) -> int:
        return abort_stale_uploads(self, prefix, older_than, dry_run)

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
            if code in ("SlowDown", "InternalError", "ServiceUnavailable", "503", "500"):
                return StoreError(
                    f"S3 request for {where} failed: {code}, still after retries with backoff",
                    hint="the server is overloaded or throttling; retry later",
                )
            return StoreError(f"S3 request for {where} failed: {code}")
        text = first_line(exc)
        if _refused(exc):
            # Checked before timeouts: the client's give-up message after retrying a
            # refused connection also mentions its retry timeout.
            server = self.endpoint_url or "the S3 endpoint"
            return StoreError(
                f"S3 request for {where} failed: cannot connect to {server} "
                "(connection refused, after retries)",
                hint=f"check that the S3 server at {server} is running (s3_endpoint_url)",
            )
        if _timed_out(exc):
            return StoreError(
                f"S3 request for {where} timed out: no answer from the server within "
                f"{self.timeout:g} s (s3_timeout_seconds), after retries",
                hint="check the server and the network, or raise s3_timeout_seconds",
            )
        if "bucket" in text.lower() and "not" in text.lower() and "exist" in text.lower():
            return StoreError(f"bucket {self.bucket!r} does not exist", hint="create it first")
        hint = None
        if self.endpoint_url and ("connect" in text.lower() or "error sending" in text.lower()):
            hint = f"check that the S3 server at {self.endpoint_url} is running (s3_endpoint_url)"
        return StoreError(f"S3 request for {where} failed: {text}", hint=hint)


class _Exists(Exception):
    """A create-only put found an object already at its key."""


def _chain(exc: BaseException) -> str:
    """The text of an exception and of its causes (obstore puts the reason last)."""
    texts = []
    seen: BaseException | None = exc
    for _ in range(8):  # bounded: a cause chain is short
        if seen is None:
            break
        texts.append(str(seen))
        seen = seen.__cause__ or seen.__context__
    return " | ".join(texts).lower()


def _refused(exc: BaseException) -> bool:
    text = _chain(exc)
    return "connection refused" in text or "connectionrefused" in text


def _timed_out(exc: BaseException) -> bool:
    text = _chain(exc)
    return "timed out" in text or "timeout" in text


def _transient(exc: BaseException) -> bool:
    """Did the request fail on the way (connection, broken or stalled answer), in a way
    the client gave up on without retrying, so that one more attempt may do?"""
    if isinstance(exc, RepoError | obx.NotFoundError | obx.AlreadyExistsError):
        return False
    if isinstance(exc, obx.PreconditionError | obx.PermissionDeniedError):
        return False
    if isinstance(exc, obx.UnauthenticatedError | _Exists) or s3_code(exc) is not None:
        return False
    text = _chain(exc)
    if "after" in text and "retries" in text:
        return False  # the client retried already, to the end of its budget
    return any(
        sign in text
        for sign in ("error sending request", "body error", "connection", "timed out", "timeout")
    )


def _plain_file(out: Writable) -> int | None:
    """The descriptor of `out` if it is a regular file we may write at offsets (not a
    pipe, not opened for appending), else None."""
    if not isinstance(out, io.BufferedWriter | io.FileIO):
        return None
    try:
        fd = out.fileno()
        plain = stat.S_ISREG(os.fstat(fd).st_mode) and out.seekable()
        appending = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND
    except (OSError, ValueError):
        return None
    return fd if plain and not appending else None


def _write_at(fd: int, data: memoryview, offset: int) -> None:
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written
