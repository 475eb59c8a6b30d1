"""Checksums: one-pass hashing and the ETag forms an S3 server may return.

Every byte is hashed exactly once, while it is being sent or received. A store's answer
counts only when it agrees with our own md5:

* a single-part object's ETag is the md5 of its body;
* a multipart object's ETag is ``md5(part md5s concatenated)-N`` (AWS, moto) or, on some
  servers (rclone's HEAD), the md5 of the whole body. Either is accepted, never neither.

Some servers' ETags are no md5 at all, though they look like one: AWS with SSE-KMS or
SSE-C, S3 Express directory buckets, encrypting MinIO. There an upload is read back and
hashed, and each version records which of `VERIFIED_WITH` vouched for its object.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

from .errors import VerificationError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "ETAG",
    "READ_BACK",
    "SERVER_CHECKED",
    "VERIFIED_WITH",
    "check_download",
    "etag_matches",
    "looks_like_md5",
    "multipart_etag",
    "normalize_etag",
]

#: The store's ETag (or the local store's own md5 of what it wrote) is our md5.
ETAG = "etag"
#: The ETag is no md5: the object was read back from the store and hashed.
READ_BACK = "read-back"
#: The ETag is no md5 and, as configured (``s3_upload_check: server``), the server's own
#: check of the Content-MD5 and CRC32 sent with the body was trusted.
SERVER_CHECKED = "server-checked"
#: What may vouch for an uploaded object (``files.verified_with``; NULL before version 4).
VERIFIED_WITH = (ETAG, READ_BACK, SERVER_CHECKED)

_MD5_FORM = re.compile(r"[0-9a-f]{32}(-[0-9]+)?")


def check_download(key: str, got_md5: str, got_size: int, *, md5: str, size: int) -> None:
    """Raise `VerificationError` unless a download of `key` got what the catalog says."""
    if got_size != size or got_md5 != md5:
        raise VerificationError(
            f"download of {key!r} failed verification: got {got_size} bytes with md5 "
            f"{got_md5}, the catalog says {size} bytes with md5 {md5}",
            hint="the stored object may be damaged; run a verify, or retry",
        )


def normalize_etag(etag: str | None) -> str | None:
    """Strip quotes and a weak-validator prefix; lower-case."""
    if etag is None:
        return None
    etag = etag.strip()
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"').lower() or None


def multipart_etag(part_md5s: Sequence[bytes]) -> str:
    """The ETag S3 gives a multipart object made of parts with these (raw) md5 digests."""
    return f"{hashlib.md5(b''.join(part_md5s), usedforsecurity=False).hexdigest()}-{len(part_md5s)}"


def etag_matches(etag: str | None, md5_hex: str, part_md5s: Sequence[bytes] = ()) -> bool:
    """Does the store's ETag agree with our md5 (of the whole body, or of its parts)?"""
    tag = normalize_etag(etag)
    if tag is None:
        return False
    if tag == md5_hex.lower():
        return True
    return bool(part_md5s) and tag == multipart_etag(part_md5s)


def looks_like_md5(etag: str | None) -> bool:
    """Is `etag` in the form of an md5 (plain, or multipart ``<md5>-N``)?

    The form proves nothing: an SSE-KMS ETag is 32 hex digits too.
    """
    tag = normalize_etag(etag)
    return tag is not None and _MD5_FORM.fullmatch(tag) is not None
