"""Multipart uploads of large files, on boto3.

obstore can neither send a part's Content-MD5 nor make a multipart upload conditional,
so large files go through boto3: every part carries its Content-MD5 (servers that check
it refuse a corrupted part), parts go up in parallel with a bounded read-ahead, and the
upload completes with ``If-None-Match: *``. The upload asks for the store's server-side
encryption, if any; with SSE-KMS the parts' ETags and the object's are not md5s, so the
parts' Content-MD5 (checked by servers that check it) guards each part and the completed
object is read back (`s3_put.settle`). The file is read
once, and each part is hashed twice in parallel with the reading and the sending: a
thread of its own takes the parts in order into the whole-file md5 (the content identity),
and the thread sending a part computes that part's md5 for its Content-MD5 (hashlib
releases the GIL). So a verified upload costs the slowest of reading, hashing and sending,
not their sum. The body is not hashed again for the
signature (`S3Connection.client` turns payload signing off: the signed Content-MD5 covers
it). At 8 MiB a part, boto3's per-request CPU does not matter.

Progress is reported per part, from the worker thread that sent it, once the part is
stored and its ETag verified (boto3's retries happen inside `upload_part`, so no part is
reported twice). The calls are serialised here, so the caller's callback needs no lock.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..errors import RepoError, VerificationError
from ..integrity import etag_matches, normalize_etag
from ..paths import token_time
from .base import Progress, PutResult
from .s3_client import opaque_encryption
from .s3_download import head
from .s3_put import adopt_existing, discard, settle
from .s3_wire import encode_meta, s3_code

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime
    from pathlib import Path

    from .s3_client import S3Connection

__all__ = ["PART_CONCURRENCY", "abort_stale_uploads", "put_multipart"]

logger = logging.getLogger(__name__)

PART_CONCURRENCY = 6
#: Pages of ListMultipartUploads read per clean-up (1000 uploads a page).
MAX_UPLOAD_PAGES = 100


def put_multipart(
    conn: S3Connection,
    key: str,
    source: Path,
    metadata: Mapping[str, str],
    part_size: int,
    progress: Progress | None = None,
) -> PutResult:
    """Upload `source` in parallel parts, each with Content-MD5; complete with If-None-Match."""
    client = conn.client()
    report = _SerialProgress(progress)
    meta = {k: encode_meta(v) for k, v in metadata.items()}
    try:
        created = client.create_multipart_upload(
            Bucket=conn.bucket, Key=key, Metadata=meta, **conn.sse_arguments()
        )
    except Exception as exc:
        raise conn.translate(exc, key, writing=True) from exc
    upload_id = created["UploadId"]
    if created.get("ResponseMetadata", {}).get("RetryAttempts", 0):
        # An earlier attempt may have created an upload whose answer was lost; its id
        # is unknown to us, but the key is ours alone, so any other upload to it is it.
        _abort_others(client, conn.bucket, key, upload_id)
    whole = hashlib.md5(usedforsecurity=False)
    futures: list[Future[dict[str, Any]]] = []
    # Each part's md5 by number, noted before the part is sent (a failed part's too: an
    # earlier attempt that completed is recognised by all of them).
    digests: dict[int, bytes] = {}
    size = 0
    read_all = False
    # Bounded memory: parts are read into at most PART_CONCURRENCY buffers that are reused,
    # so the reader waits for the network and the heap never churns through 8 MiB blocks
    # (which glibc would keep around, growing the process with the file).
    buffers = _BufferPool(PART_CONCURRENCY, part_size)

    def send(number: int, body: bytearray, hashed: Future[None]) -> dict[str, Any]:
        try:
            # Hashed here, in parallel with the other parts and with the reader's
            # whole-file md5 (hashlib lets go of the GIL).
            digest = digests[number] = hashlib.md5(body, usedforsecurity=False).digest()
            resp = client.upload_part(
                Bucket=conn.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
                ContentMD5=base64.b64encode(digest).decode(),
            )
        finally:
            length = len(body)
            hashed.result()  # the whole-file md5 has read it too: the buffer is free
            buffers.give_back(body)
        if opaque_encryption(resp):
            conn.learn_opaque_etags()
        elif not conn.opaque_etags and not etag_matches(resp.get("ETag"), digest.hex()):
            raise VerificationError(f"part {number} of {key!r} failed verification")
        report(length)
        return {"PartNumber": number, "ETag": resp["ETag"]}

    try:
        # The hasher outlives the senders (which wait for it before freeing a buffer).
        with (
            ThreadPoolExecutor(1, thread_name_prefix="repo-md5") as hasher,
            ThreadPoolExecutor(PART_CONCURRENCY, thread_name_prefix="repo-part") as pool,
        ):
            with open(source, "rb") as fp:
                number = 0
                while True:
                    buf = buffers.take()
                    got = fp.readinto(buf)
                    if not got:
                        buffers.give_back(buf)
                        read_all = True
                        break
                    # The last part is an exact-size copy, which takes over the slot.
                    body = buf[:got] if got < len(buf) else buf
                    number += 1
                    size += got
                    hashed = hasher.submit(whole.update, body)  # in order: one thread
                    futures.append(pool.submit(send, number, body, hashed))
                    if any(f.done() and f.exception() for f in futures):
                        break
            parts = [f.result() for f in futures]
        done = client.complete_multipart_upload(
            Bucket=conn.bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
            IfNoneMatch="*",
        )
    except BaseException as exc:
        part_md5s = [digests.get(n, b"") for n in range(1, len(futures) + 1)]
        completed = (
            isinstance(exc, Exception)
            and not isinstance(exc, RepoError)
            and read_all
            and adopt_existing(conn, key, size, whole.hexdigest(), part_md5s)
        )
        if completed:
            # The upload completed but its answer was lost (or this is a retry of one
            # that did): the object is exactly ours. Parts that failed this time were
            # never reported; report them now so a success always adds up to `size`.
            report(size - report.reported)
            # If this attempt did not complete (an earlier one did), its parts would
            # linger until a lifecycle rule; after a completed upload this is a no-op.
            _abort(client, conn.bucket, key, upload_id)
            return completed
        _abort(client, conn.bucket, key, upload_id)
        if isinstance(exc, RepoError) or not isinstance(exc, Exception):
            raise
        raise conn.translate(exc, key, writing=True) from exc
    md5 = whole.hexdigest()
    part_md5s = [digests[n] for n in range(1, len(futures) + 1)]
    etag = done.get("ETag")
    return PutResult(
        key=key,
        md5=md5,
        size=size,
        etag=normalize_etag(etag),
        multipart=True,
        verified_with=_verify_completed(conn, key, etag, md5, size, part_md5s),
    )


def _verify_completed(
    conn: S3Connection, key: str, etag: str | None, md5: str, size: int, part_md5s: list[bytes]
) -> str:
    """How the completed upload is vouched for (`s3_put.settle`). Where its ETag holds
    every part's md5, the object is exactly the parts sent, its size included: no HEAD
    (rclone hashes the whole object to answer one). Otherwise its size is checked first."""
    if etag_matches(etag, md5, part_md5s):
        return settle(conn, key, etag, md5, size, part_md5s)
    info = head(conn, key)
    if info.size != size:
        fate = "was removed" if discard(conn, key) else "is left for garbage collection"
        raise VerificationError(
            f"multipart upload of {key!r} failed verification ({info.size} bytes stored, "
            f"{size} sent); the object {fate}",
            hint="retry; if it persists, the server or a proxy is corrupting data",
        )
    return settle(conn, key, info.etag, md5, size, part_md5s)


class _SerialProgress:
    """The caller's callback, called one part at a time, with a count of what it was told."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self._lock = threading.Lock()
        self.reported = 0

    def __call__(self, nbytes: int) -> None:
        if self._progress is None or nbytes <= 0:
            return
        with self._lock:
            self.reported += nbytes
            self._progress(nbytes)


class _BufferPool:
    """Up to `count` reusable part buffers; `take` waits while all are in use."""

    def __init__(self, count: int, size: int) -> None:
        self._size = size
        self._free: list[bytearray] = []
        self._slots = threading.Semaphore(count)
        self._lock = threading.Lock()

    def take(self) -> bytearray:
        self._slots.acquire()
        with self._lock:
            return self._free.pop() if self._free else bytearray(self._size)

    def give_back(self, buf: bytearray) -> None:
        if len(buf) == self._size:
            with self._lock:
                self._free.append(buf)
        self._slots.release()


def abort_stale_uploads(
    conn: S3Connection, prefix: str, older_than: datetime, dry_run: bool
) -> int:
    """Abort incomplete multipart uploads of keys under `prefix` started before
    `older_than` (their parts are invisible, but stored and billed); returns how many.

    Old by both clocks, as for orphans: the server's ``Initiated`` and the time in the
    key's own version token (keys without one are left alone). Some servers report a
    made-up ``Initiated`` (moto), so the server's word alone never aborts an upload.
    """
    client = conn.client()
    args: dict[str, Any] = {"Bucket": conn.bucket, "Prefix": prefix}
    count = 0
    for _page in range(MAX_UPLOAD_PAGES):
        try:
            listed = client.list_multipart_uploads(**args)
        except Exception as exc:
            if s3_code(exc) == "NoSuchUpload":  # rclone's answer when there are none
                return count
            raise conn.translate(exc, prefix) from exc
        for upload in listed.get("Uploads", []):
            key, started = upload["Key"], upload.get("Initiated")
            made = token_time(key)
            if not key.startswith(prefix) or started is None or made is None:
                continue
            if started >= older_than or made >= older_than:
                continue
            if not dry_run:
                _abort(conn.client(), conn.bucket, upload["Key"], upload["UploadId"])
            count += 1
        if not listed.get("IsTruncated"):
            return count
        args.update(
            KeyMarker=listed.get("NextKeyMarker", ""),
            UploadIdMarker=listed.get("NextUploadIdMarker", ""),
        )
    return count


def _abort_others(client: Any, bucket: str, key: str, upload_id: str) -> None:
    try:
        listed = client.list_multipart_uploads(Bucket=bucket, Prefix=key)
    except Exception as exc:
        logger.warning("could not list multipart uploads of %s: %s", key, exc)
        return
    for upload in listed.get("Uploads", []):
        if upload.get("Key") == key and upload.get("UploadId") != upload_id:
            _abort(client, bucket, key, upload["UploadId"])


def _abort(client: Any, bucket: str, key: str, upload_id: str) -> None:
    try:
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except Exception as exc:
        if s3_code(exc) != "NoSuchUpload":  # the server already dropped it
            logger.warning("could not abort multipart upload of %s: %s", key, exc)
