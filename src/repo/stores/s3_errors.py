"""S3 failures as `repo.errors`: one clear error per failure, never a raw client exception.

Beyond the S3 error code (`s3_wire.s3_code`), obstore says what went wrong only in the
text of an exception and of its causes, so some kinds of failure are told by that text.
"""

from __future__ import annotations

import obstore.exceptions as obx

from ..errors import ConflictError, NotFoundError, RepoError, StoreError, VerificationError
from .s3_wire import first_line, s3_code

__all__ = ["ObjectExists", "cause_text", "translate"]


class ObjectExists(Exception):
    """A create-only put found an object already at its key."""


def translate(
    exc: BaseException,
    key: str,
    *,
    bucket: str,
    endpoint_url: str | None,
    timeout: float,
    writing: bool = False,
) -> RepoError:
    """The `RepoError` for a failed request about `key` in `bucket`."""
    where = f"s3://{bucket}/{key}"
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
        return StoreError(f"bucket {bucket!r} does not exist", hint="create it, or fix 'store'")
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
        return _from_code(code, where)
    text = first_line(exc)
    if _refused(exc):
        # Checked before timeouts: the client's give-up message after retrying a
        # refused connection also mentions its retry timeout.
        server = endpoint_url or "the S3 endpoint"
        return StoreError(
            f"S3 request for {where} failed: cannot connect to {server} "
            "(connection refused, after retries)",
            hint=f"check that the S3 server at {server} is running (s3_endpoint_url)",
        )
    if _timed_out(exc):
        return StoreError(
            f"S3 request for {where} timed out: no answer from the server within "
            f"{timeout:g} s (s3_timeout_seconds), after retries",
            hint="check the server and the network, or raise s3_timeout_seconds",
        )
    if "bucket" in text.lower() and "not" in text.lower() and "exist" in text.lower():
        return StoreError(f"bucket {bucket!r} does not exist", hint="create it first")
    hint = None
    if endpoint_url and ("connect" in text.lower() or "error sending" in text.lower()):
        hint = f"check that the S3 server at {endpoint_url} is running (s3_endpoint_url)"
    return StoreError(f"S3 request for {where} failed: {text}", hint=hint)


def _from_code(code: str, where: str) -> RepoError:
    if code in ("PreconditionFailed", "412"):
        return ConflictError(f"object {where} already exists; objects are never overwritten")
    if code in ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"):
        return VerificationError(f"the store rejected a corrupted body for {where} ({code})")
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


def cause_text(exc: BaseException) -> str:
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
    text = cause_text(exc)
    return "connection refused" in text or "connectionrefused" in text


def _timed_out(exc: BaseException) -> bool:
    text = cause_text(exc)
    return "timed out" in text or "timeout" in text
