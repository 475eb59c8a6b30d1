"""Single-part puts: create-only, retried, and kept only if the answer matches our md5.

``If-None-Match: *`` is a second guard behind our unique keys: a server that ignores it
still never sees a key written twice. With SSE-KMS the ETag is no md5, so the put goes
through boto3 with a Content-MD5 the server checks. Multipart uploads share the rest:
adopting an object an earlier attempt left, and discarding one we cannot vouch for.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from typing import TYPE_CHECKING

import obstore
import obstore.exceptions as obx

from ..errors import ConflictError, NotFoundError, VerificationError
from ..integrity import etag_matches, normalize_etag
from .base import Progress, PutResult, hash_only
from .s3_download import head, iter_bytes
from .s3_errors import ObjectExists
from .s3_retry import again
from .s3_wire import encode_meta, s3_code

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from .s3_client import S3Connection

__all__ = ["adopt_existing", "discard", "put_single"]

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
    put = _put_checked_by_server if not conn.etag_is_md5 else _put_obstore
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
    if conn.etag_is_md5 and not etag_matches(etag, md5):
        fate = "was removed" if discard(conn, key) else "is left for garbage collection"
        raise VerificationError(
            f"upload of {key!r} failed verification: the store's ETag {etag!r} is not "
            f"our md5 {md5}; the object {fate}",
            hint="retry; if it persists, the server or a proxy is corrupting data",
        )
    if progress is not None and body:
        progress(len(body))
    return PutResult(key=key, md5=md5, size=len(body), etag=normalize_etag(etag))


def _put_obstore(
    conn: S3Connection, key: str, body: bytes, md5: str, meta: dict[str, str]
) -> str | None:
    result = obstore.put(conn.ob, key, body, mode="create", attributes=meta, use_multipart=False)
    etag: str | None = result.get("e_tag")
    return etag


def _put_checked_by_server(
    conn: S3Connection, key: str, body: bytes, md5: str, meta: dict[str, str]
) -> str | None:
    """A create-only put with Content-MD5, which the server checks against the body.

    For SSE-KMS, whose ETag cannot confirm the content.
    """
    try:
        resp = conn.client().put_object(
            Bucket=conn.bucket,
            Key=key,
            Body=body,
            ContentMD5=base64.b64encode(bytes.fromhex(md5)).decode(),
            IfNoneMatch="*",
            Metadata=meta,
            **conn.sse_arguments(),
        )
    except Exception as exc:
        if s3_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
            raise ObjectExists from exc
        raise
    etag: str | None = resp.get("ETag")
    return etag


def adopt_existing(
    conn: S3Connection, key: str, size: int, md5: str, part_md5s: Sequence[bytes] = ()
) -> PutResult | None:
    """The object at `key` if it is exactly what we meant to write, else None."""
    try:
        info = head(conn, key)
    except NotFoundError:
        return None
    if info.size == size and not conn.etag_is_md5:
        # The ETag cannot tell (SSE-KMS): read the object back and hash it.
        got = hash_only(iter_bytes(conn, key))
        if got.size == size and got.md5 == md5:
            logger.info("object %s was already written by an earlier attempt", key)
            return PutResult(key=key, md5=md5, size=size, etag=info.etag, multipart=bool(part_md5s))
        return None
    if info.size == size and etag_matches(info.etag, md5, part_md5s):
        logger.info("object %s was already written by an earlier attempt; keeping it", key)
        return PutResult(key=key, md5=md5, size=size, etag=info.etag, multipart=bool(part_md5s))
    return None


def discard(conn: S3Connection, key: str) -> bool:
    """Delete an object we will not stand behind; True if it is gone."""
    try:
        obstore.delete(conn.ob, key)
    except Exception:
        logger.warning("could not remove unverified object %s; GC will find it", key)
        return False
    return True
