"""Archival storage classes on S3: moving an object to one in place, and thawing it.

A move is a CopyObject of the object onto its own key with ``StorageClass`` and
``MetadataDirective=COPY``: key, content and metadata stay; only the class changes. It is
verified before anyone records it (`move_to_class`). A restore is a RestoreObject
request; its progress shows in a HEAD's ``x-amz-restore`` header, never in the class,
which stays archival. boto3 makes these requests: obstore has none of them.
"""

from __future__ import annotations

import logging
import re
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from ..errors import ConflictError, StateError, StoreError, VerificationError
from ..integrity import normalize_etag
from ..storage_classes import needs_restore
from .base import ArchiveState
from .s3_client import opaque_encryption
from .s3_retry import again
from .s3_wire import s3_code

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from .s3_client import S3Connection

__all__ = ["COPY_LIMIT", "archive_state", "move_to_class", "parse_restore", "request_restore"]

logger = logging.getLogger(__name__)

#: The largest object one CopyObject request copies; larger ones need a multipart copy.
COPY_LIMIT = 5 * 1024**3
#: Parts of a multipart copy (at most 10,000 parts: 5 TiB objects fit).
COPY_PART = 512 * 1024**2

#: A storage class as S3 names them (``STANDARD_IA``, ``DEEP_ARCHIVE``...).
_CLASS_FORM = re.compile(r"[A-Z][A-Z_]{0,31}")
_MD5_ONLY = re.compile(r"[0-9a-f]{32}")
#: ``x-amz-restore``: ``ongoing-request="true"`` or ``ongoing-request="false",
#: expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"`` (AWS may add a restore-type).
_RESTORE_FORM = re.compile(
    r'\s*ongoing-request="(true|false)"\s*(?:,\s*expiry-date="([^"]{1,64})"\s*)?'
    r'(?:,\s*restore-type="[A-Za-z]{1,32}"\s*)?'
)


def archive_state(conn: S3Connection, key: str) -> ArchiveState:
    """The object's class and restore status, from one HEAD (no retrieval charge)."""
    return _state(key, _head(conn, key))


def parse_restore(header: object) -> tuple[bool | None, datetime | None]:
    """``(restoring, restored_until)`` from an ``x-amz-restore`` header; ``(None, None)``
    when there is none. A header of another shape is `StoreError`: it is input."""
    if header is None:
        return None, None
    found = _RESTORE_FORM.fullmatch(header) if isinstance(header, str) else None
    if found is None:
        raise StoreError(
            f"the server's x-amz-restore header is not understood: {str(header)[:100]!r}"
        )
    ongoing, expiry = found.group(1) == "true", found.group(2)
    if ongoing:
        return True, None
    if expiry is None:
        raise StoreError(
            f"the server's x-amz-restore header has no expiry date: {str(header)[:100]!r}"
        )
    try:
        until = parsedate_to_datetime(expiry)
    except (TypeError, ValueError):
        until = None
    if until is None or until.tzinfo is None:
        raise StoreError(f"the server's x-amz-restore expiry date is not a date: {expiry!r}")
    return False, until


def move_to_class(conn: S3Connection, key: str, storage_class: str, *, md5: str, size: int) -> str:
    """Copy `key` onto itself in `storage_class`, then check it (see `Archivable`)."""
    where = f"s3://{conn.bucket}/{key}"
    before = _head(conn, key)
    etag = before.get("ETag")
    _check_source(conn, where, before, md5=md5, size=size)
    current = _state(key, before).storage_class
    moved = current != storage_class
    if not moved:
        logger.info("%s is in %s already", where, storage_class)
    elif needs_restore(current):
        raise StateError(
            f"{where} is in {current} already; moving it between archival classes "
            "would need a restore first",
            hint="leave it where it is",
        )
    else:
        _copy(conn, key, before, storage_class=storage_class, etag=etag)
    after = _head(conn, key) if moved else before
    problems = _problems(conn, key, before, after, storage_class=storage_class, size=size)
    if not problems and moved and needs_restore(storage_class) and _readable(conn, key):
        problems.append("the object can still be read: the server ignored the class")
    verified = "source"
    after_etag = normalize_etag(after.get("ETag"))
    opaque = conn.opaque_etags or opaque_encryption(after)
    if not problems and not opaque and after_etag is not None and _MD5_ONLY.fullmatch(after_etag):
        # One CopyObject request of an object not encrypted with KMS or a customer key:
        # its ETag is the md5 of what it holds.
        if after_etag != md5:
            problems.append(f"its ETag {after_etag} is not the catalog's md5 {md5}")
        verified = "etag"
    if problems:
        put_back = _put_back(conn, key, before) if moved else ""
        raise StoreError(
            f"moving {where} to {storage_class} failed its check: {'; '.join(problems)}. "
            f"Nothing was recorded{put_back}",
            hint="this S3 server may not support storage classes (docs/archiving.md)",
        )
    return verified


def request_restore(conn: S3Connection, key: str, *, days: int, tier: str) -> bool:
    """Ask for a readable copy of `key` (see `Archivable.request_restore`)."""
    where = f"s3://{conn.bucket}/{key}"
    request = {"Days": days, "GlacierJobParameters": {"Tier": tier}}
    try:
        answer = conn.client().restore_object(Bucket=conn.bucket, Key=key, RestoreRequest=request)
    except Exception as exc:
        code = s3_code(exc)
        if code == "RestoreAlreadyInProgress":
            raise ConflictError(
                f"a restore of {where} is in progress already",
                hint="see how far it is with `repo thaw --status`, or wait with `--wait`",
            ) from exc
        if code == "GlacierExpeditedRetrievalNotAvailable":
            raise StoreError(
                f"S3 has no Expedited restore capacity for {where} now (503)",
                hint="retry later, or use --tier Standard",
            ) from exc
        if code == "InvalidObjectState":
            raise StateError(
                f"{where} is in no class that needs a restore (S3 answered InvalidObjectState)",
                hint="read it as it is",
            ) from exc
        raise conn.translate(exc, key) from exc
    status = answer.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if status == 202:
        return True
    if status == 200:
        return False
    raise StoreError(f"restoring {where}: the server answered status {status!r}, not 200 or 202")


def _head(conn: S3Connection, key: str) -> Mapping[str, Any]:
    try:
        answer: Mapping[str, Any] = conn.client().head_object(Bucket=conn.bucket, Key=key)
    except Exception as exc:
        raise conn.translate(exc, key) from exc
    return answer


def _state(key: str, answer: Mapping[str, Any]) -> ArchiveState:
    size = answer.get("ContentLength")
    if type(size) is not int or size < 0:
        raise StoreError(f"the server gave s3 object {key!r} no valid size: {size!r}")
    named = answer.get("StorageClass")
    if named is not None and (not isinstance(named, str) or not _CLASS_FORM.fullmatch(named)):
        raise StoreError(f"the server named a storage class that is none: {str(named)[:40]!r}")
    storage_class = None if named in (None, "STANDARD") else named
    restoring, until = parse_restore(answer.get("Restore"))
    return ArchiveState(
        key=key, size=size, storage_class=storage_class, restoring=restoring, restored_until=until
    )


def _check_source(
    conn: S3Connection, where: str, before: Mapping[str, Any], *, md5: str, size: int
) -> None:
    """The object to be moved is the version the catalog describes, as far as a HEAD says."""
    if before.get("ContentLength") != size:
        raise VerificationError(
            f"{where} holds {before.get('ContentLength')!r} bytes, not the catalog's {size}: "
            "not moved",
            hint="run `repo verify` to see what else differs",
        )
    etag = normalize_etag(before.get("ETag"))
    opaque = conn.opaque_etags or opaque_encryption(before)
    if not opaque and etag is not None and _MD5_ONLY.fullmatch(etag) and etag != md5:
        raise VerificationError(
            f"{where} has ETag {etag}, not the catalog's md5 {md5}: not moved",
            hint="run `repo verify` to see what else differs",
        )


def _copy(
    conn: S3Connection, key: str, before: Mapping[str, Any], *, storage_class: str, etag: Any
) -> None:
    """The in-place copy, pinned to the object just checked (``CopySourceIfMatch``)."""
    extra: dict[str, Any] = {
        "StorageClass": storage_class,
        "MetadataDirective": "COPY",
        **conn.sse_arguments(),
    }
    if isinstance(etag, str):
        extra["CopySourceIfMatch"] = etag
    source = {"Bucket": conn.bucket, "Key": key}
    client = conn.client()
    try:
        if before["ContentLength"] <= COPY_LIMIT:
            client.copy_object(Bucket=conn.bucket, Key=key, CopySource=source, **extra)
        else:
            from boto3.s3.transfer import TransferConfig

            config = TransferConfig(multipart_threshold=COPY_LIMIT, multipart_chunksize=COPY_PART)
            client.copy(source, conn.bucket, key, ExtraArgs=extra, Config=config)
    except Exception as exc:
        raise conn.translate(exc, key, writing=True) from exc


def _problems(
    conn: S3Connection,
    key: str,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    *,
    storage_class: str,
    size: int,
) -> list[str]:
    """What a HEAD after the copy shows went wrong."""
    problems = []
    shown = after.get("StorageClass") or "STANDARD"
    if shown != storage_class:
        problems.append(f"a HEAD shows class {str(shown)[:32]!r}")
    if after.get("ContentLength") != size:
        problems.append(f"a HEAD shows {after.get('ContentLength')!r} bytes, not {size}")
    if _lowered(after.get("Metadata")) != _lowered(before.get("Metadata")):
        problems.append("the server dropped or changed the object's metadata")
    return problems


def _lowered(metadata: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in (metadata or {}).items()}


def _readable(conn: S3Connection, key: str) -> bool:
    """Does a GET of the first byte work? On an archived object S3 refuses it (403
    InvalidObjectState): a refused request, billed as one, with no retrieval."""
    client = conn.client()
    try:
        answer = again(
            key,
            lambda: client.get_object(Bucket=conn.bucket, Key=key, Range="bytes=0-0"),
            timeout=conn.timeout,
        )
    except Exception as exc:
        code = s3_code(exc)
        if code == "InvalidObjectState":
            return False
        if code == "InvalidRange":  # an empty object that was not archived
            return True
        raise conn.translate(exc, key) from exc
    answer["Body"].close()
    return True


def _put_back(conn: S3Connection, key: str, before: Mapping[str, Any]) -> str:
    """Best effort: the object's class and metadata as they were before a failed move.
    Returns what to add to the error."""
    extra: dict[str, Any] = {
        "StorageClass": before.get("StorageClass") or "STANDARD",
        "MetadataDirective": "REPLACE",
        "Metadata": dict(before.get("Metadata") or {}),
        **conn.sse_arguments(),
    }
    if isinstance(before.get("ContentType"), str):
        extra["ContentType"] = before["ContentType"]
    source = {"Bucket": conn.bucket, "Key": key}
    try:
        conn.client().copy_object(Bucket=conn.bucket, Key=key, CopySource=source, **extra)
        after = conn.client().head_object(Bucket=conn.bucket, Key=key)
    except Exception as exc:
        logger.warning("putting s3://%s/%s back as it was failed: %s", conn.bucket, key, exc)
        return "; putting the object's class and metadata back failed too"
    if _lowered(after.get("Metadata")) != _lowered(before.get("Metadata")):
        return "; its metadata could not be put back"
    return "; the object was put back as it was"
