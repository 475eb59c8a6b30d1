"""Single-part puts: create-only, retried, and kept only once verified.

``If-None-Match: *`` is a second guard behind our unique keys: a server that ignores it
still never sees a key written twice. An object counts when the server's ETag is our md5.
Where ETags are no md5s (SSE-KMS or SSE-C, configured or the bucket's default; S3
Express), the put goes through boto3 with a Content-MD5 and a CRC32 the server may check,
and the object is read back and hashed (`settle`), unless ``s3_upload_check: server``
says the server's check is enough. Which one vouched is recorded with the version.
Multipart uploads share the rest: settling, adopting an object an earlier attempt left,
and discarding one we cannot vouch for.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import zlib
from typing import TYPE_CHECKING

import obstore
import obstore.exceptions as obx

from ..errors import ConflictError, NotFoundError, VerificationError
from ..integrity import (
    ETAG,
    READ_BACK,
    SERVER_CHECKED,
    etag_matches,
    looks_like_md5,
    normalize_etag,
)
from .base import Progress, PutResult, hash_only
from .s3_client import opaque_encryption
from .s3_download import head, iter_bytes
from .s3_errors import ObjectExists
from .s3_retry import again
from .s3_wire import encode_meta, s3_code

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from .s3_client import S3Connection

__all__ = ["adopt_existing", "discard", "put_single", "settle"]

logger = logging.getLogger(__name__)


def put_single(
    conn: S3Connection,
    key: str,
    body: bytes,
    metadata: Mapping[str, str] | None,
    progress: Progress | None,
) -> PutResult:
    """Create `key` holding `body` in one request; `progress` is told once it is verified."""
    md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
    meta = {k: encode_meta(v) for k, v in (metadata or {}).items()}
    put = _put_checked_by_server if conn.opaque_etags else _put_obstore
    try:
        etag = again(key, lambda: put(conn, key, body, md5, meta), timeout=conn.timeout)
    except (obx.AlreadyExistsError, obx.PreconditionError, ObjectExists):
        # Only this version ever writes `key` (its token is random), so an object
        # already there with our bytes is ours, from an attempt whose answer was
        # lost. Anything else stays untouched: objects are never overwritten.
        adopted = adopt_existing(conn, key, len(body), md5)
        if adopted is not None:
            if progress is not None and body:
                progress(len(body))
            return adopted
        raise ConflictError(
            f"object {key!r} already exists with other content; objects are never overwritten"
        ) from None
    except Exception as exc:
        raise conn.translate(exc, key, writing=True) from exc
    verified_with = settle(conn, key, etag, md5, len(body))
    if progress is not None and body:
        progress(len(body))
    return PutResult(
        key=key, md5=md5, size=len(body), etag=normalize_etag(etag), verified_with=verified_with
    )


def settle(
    conn: S3Connection,
    key: str,
    etag: str | None,
    md5: str,
    size: int,
    part_md5s: Sequence[bytes] = (),
) -> str:
    """How the object just written at `key` is vouched for (one of `VERIFIED_WITH`).

    The ETag, where it is our md5 (or our parts' multipart ETag). Where it is no md5 (the
    server says so, or its form does), the object read back and hashed, or the server's
    own check where configured. Otherwise the object is not ours: it is removed (or left
    for garbage collection) and `VerificationError` raised.
    """
    if etag_matches(etag, md5, part_md5s):
        return ETAG
    if not conn.opaque_etags and looks_like_md5(etag) and conn.etag_is_md5(key):
        fate = "was removed" if discard(conn, key) else "is left for garbage collection"
        raise VerificationError(
            f"upload of {key!r} failed verification: the store's ETag {etag!r} is not "
            f"our md5 {md5}; the object {fate}",
            hint="retry; if it persists, the server or a proxy is corrupting data",
        )
    conn.learn_opaque_etags()
    if conn.trust_server_checks:
        return SERVER_CHECKED
    got = hash_only(iter_bytes(conn, key))
    if got.size != size or got.md5 != md5:
        fate = "was removed" if discard(conn, key) else "is left for garbage collection"
        raise VerificationError(
            f"upload of {key!r} failed verification: read back, it has {got.size} bytes "
            f"with md5 {got.md5}, we sent {size} bytes with md5 {md5}; the object {fate}",
            hint="retry; if it persists, the server or a proxy is corrupting data",
        )
    return READ_BACK


def _put_obstore(
    conn: S3Connection, key: str, body: bytes, md5: str, meta: dict[str, str]
) -> str | None:
    result = obstore.put(conn.ob, key, body, mode="create", attributes=meta, use_multipart=False)
    etag: str | None = result.get("e_tag")
    return etag


def _put_checked_by_server(
    conn: S3Connection, key: str, body: bytes, md5: str, meta: dict[str, str]
) -> str | None:
    """A create-only put with a Content-MD5 and a CRC32 the server may check.

    For buckets whose ETags cannot confirm the content (SSE-KMS and the like). AWS checks
    both; S3 Express takes only the CRC32; some servers check neither (`settle` reads
    the object back unless configured to trust the server). zlib computes the CRC in C.
    """
    crc = zlib.crc32(body).to_bytes(4, "big")
    try:
        resp = conn.client().put_object(
            Bucket=conn.bucket,
            Key=key,
            Body=body,
            ContentMD5=base64.b64encode(bytes.fromhex(md5)).decode(),
            ChecksumCRC32=base64.b64encode(crc).decode(),
            IfNoneMatch="*",
            Metadata=meta,
            **conn.sse_arguments(),
        )
    except Exception as exc:
        if s3_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
            raise ObjectExists from exc
        raise
    if opaque_encryption(resp):
        conn.learn_opaque_etags()
    etag: str | None = resp.get("ETag")
    return etag


def adopt_existing(
    conn: S3Connection, key: str, size: int, md5: str, part_md5s: Sequence[bytes] = ()
) -> PutResult | None:
    """The object at `key` if it is exactly what we meant to write, else None.

    Decided by the ETag where it is our md5, else by reading the object back and hashing
    it: an ETag that differs may be no md5 at all (SSE-KMS), and nothing is adopted or
    refused on a guess.
    """
    try:
        info = head(conn, key)
    except NotFoundError:
        return None
    if info.size != size:
        return None
    verified_with = ETAG
    if not etag_matches(info.etag, md5, part_md5s):
        got = hash_only(iter_bytes(conn, key))
        if got.size != size or got.md5 != md5:
            return None
        verified_with = READ_BACK
    logger.info("object %s was already written by an earlier attempt; keeping it", key)
    return PutResult(
        key=key,
        md5=md5,
        size=size,
        etag=info.etag,
        multipart=bool(part_md5s),
        verified_with=verified_with,
    )


def discard(conn: S3Connection, key: str) -> bool:
    """Delete an object we will not stand behind; True if it is gone."""
    try:
        obstore.delete(conn.ob, key)
    except Exception:
        logger.warning("could not remove unverified object %s; GC will find it", key)
        return False
    return True
