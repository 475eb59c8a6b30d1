"""Server-side copies between two buckets of one S3 server (CopyObject): no byte passes
through this host.

Only between stores on the same endpoint, with the same credentials and region
(`S3Store.can_copy_from`), and up to `COPY_LIMIT` (one CopyObject request); the caller
streams anything else. The copy is create-only as a put is: ``If-None-Match: *`` (AWS
honours it on CopyObject; a server that ignores it still never sees a key written twice,
since every copy's key is the version's own, claimed in the catalog first). Its metadata
is replaced by the version's, as a put would send it. It counts only once checked against
the version's md5 and size: the new object's ETag where that is a plain md5 (not under
SSE-KMS or SSE-C), else a HEAD for its size and the object read back and hashed. A copy
that fails its check is deleted and `VerificationError` raised; the source is not judged
(the caller's streaming fallback checks it).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from ..errors import ConflictError, VerificationError
from ..integrity import ETAG, READ_BACK, normalize_etag
from .base import PutResult, hash_only
from .s3_archive import COPY_LIMIT
from .s3_client import opaque_encryption
from .s3_download import head, iter_bytes
from .s3_put import discard
from .s3_retry import again
from .s3_wire import encode_meta, s3_code

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .s3_client import S3Connection

__all__ = ["COPY_LIMIT", "copy_object"]

logger = logging.getLogger(__name__)

_MD5_ONLY = re.compile(r"[0-9a-f]{32}")
_EXISTS = ("PreconditionFailed", "412", "ConditionalRequestConflict")


def copy_object(
    conn: S3Connection,
    source_bucket: str,
    source_key: str,
    key: str,
    *,
    md5: str,
    size: int,
    metadata: Mapping[str, str],
) -> PutResult:
    """Copy `source_key` of `source_bucket` (same server) to `key` in `conn`'s bucket,
    create-only, then check it holds `size` bytes with md5 `md5` (see the module).

    `ConflictError` when an object is at `key` already (the server refused to overwrite
    it); `StoreError` (or `NotFoundError` for a missing source) when the server would not
    copy; `VerificationError` when the copy is not the version (it is deleted)."""
    extra: dict[str, Any] = {
        "MetadataDirective": "REPLACE",
        "Metadata": {k: encode_meta(v) for k, v in metadata.items()},
        "IfNoneMatch": "*",
        **conn.sse_arguments(),
    }
    client = conn.client()
    where = {"Bucket": source_bucket, "Key": source_key}
    try:
        answer = again(
            key,
            lambda: client.copy_object(Bucket=conn.bucket, Key=key, CopySource=where, **extra),
            timeout=conn.timeout,
        )
    except Exception as exc:
        if s3_code(exc) in _EXISTS:
            raise ConflictError(
                f"object {key!r} already exists; objects are never overwritten"
            ) from exc
        raise conn.translate(exc, key, writing=True) from exc
    if opaque_encryption(answer):
        conn.learn_opaque_etags()
    etag = normalize_etag((answer.get("CopyObjectResult") or {}).get("ETag"))
    if not conn.opaque_etags and etag is not None and _MD5_ONLY.fullmatch(etag):
        # One CopyObject request, not encrypted with KMS or a customer's key: the ETag is
        # the md5 of what the new object holds, computed by the server.
        if etag == md5:
            return PutResult(key=key, md5=md5, size=size, etag=etag, verified_with=ETAG)
        if conn.etag_is_md5(key):
            raise _bad(conn, key, f"its ETag {etag} is not the version's md5 {md5}")
    info = head(conn, key)
    if info.size != size:
        raise _bad(conn, key, f"a HEAD shows {info.size} bytes, not {size}")
    got = hash_only(iter_bytes(conn, key))
    if (got.md5, got.size) != (md5, size):
        raise _bad(conn, key, f"read back, it has {got.size} bytes with md5 {got.md5}")
    return PutResult(key=key, md5=md5, size=size, etag=etag, verified_with=READ_BACK)


def _bad(conn: S3Connection, key: str, why: str) -> VerificationError:
    fate = "was removed" if discard(conn, key) else "is left for garbage collection"
    return VerificationError(
        f"the server-side copy to s3://{conn.bucket}/{key} is not the version: {why}; "
        f"the object {fate}",
        hint="the copy is made again from a checked source; `repo verify` checks the others",
    )
