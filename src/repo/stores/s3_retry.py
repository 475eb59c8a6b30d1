"""Retries of our own, for the failures the S3 clients give up on without retrying.

obstore does not repeat a PUT whose connection failed after the body went out (it takes
PUT as non-idempotent), nor a list or delete whose answer broke off. Ours are safe to
repeat: puts are create-only, and a listing resumes after its last key.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, TypeVar

import obstore.exceptions as obx

from ..errors import RepoError
from .s3_errors import ObjectExists, cause_text
from .s3_wire import first_line, s3_code

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ATTEMPTS", "FIRST_BACKOFF_SECONDS", "again", "transient"]

logger = logging.getLogger(__name__)

ATTEMPTS = 4
FIRST_BACKOFF_SECONDS = 0.1

_T = TypeVar("_T")


def again(key: str, attempt: Callable[[], _T], *, timeout: float) -> _T:
    """`attempt`, repeated with backoff while it fails in a way the client did not retry
    itself (see `transient`), within `ATTEMPTS` and 3 timeouts of time."""
    started = time.monotonic()
    delay = FIRST_BACKOFF_SECONDS
    for number in range(1, ATTEMPTS + 1):
        try:
            return attempt()
        except Exception as exc:
            late = time.monotonic() - started + delay > 3 * timeout
            if number == ATTEMPTS or late or not transient(exc):
                raise
            logger.info("S3 request for %s failed (%s); retrying", key, first_line(exc))
        time.sleep(delay)
        delay *= 3
    raise AssertionError("unreachable")  # pragma: no cover


def _error_document_cut_short(exc: BaseException) -> bool:
    """A botocore error on a request whose error answer has a body (not a HEAD), with no
    code but its HTTP status: botocore's stand-in when the error document could not be
    read, because it broke off on the way."""
    code = s3_code(exc)
    operation = getattr(exc, "operation_name", None)
    return (
        code is not None
        and code.isdigit()
        and isinstance(operation, str)
        and operation != "HeadObject"
        and isinstance(getattr(exc, "response", None), dict)
    )


def transient(exc: BaseException) -> bool:
    """Did the request fail on the way (connection, broken or stalled answer), in a way
    the client gave up on without retrying, so that one more attempt may do?"""
    # obstore raises the built-in FileNotFoundError for a 404 (a HEAD's has no body).
    if isinstance(exc, RepoError | obx.NotFoundError | FileNotFoundError | obx.AlreadyExistsError):
        return False
    if isinstance(exc, obx.PreconditionError | obx.PermissionDeniedError):
        return False
    if _error_document_cut_short(exc):
        return True
    if isinstance(exc, obx.UnauthenticatedError | ObjectExists) or s3_code(exc) is not None:
        return False
    text = cause_text(exc)
    if "after" in text and "retries" in text:
        return False  # the client retried already, to the end of its budget
    # Not a bare "timeout": every obstore error's text names its `retry_timeout` setting.
    return any(
        sign in text
        for sign in (
            "error sending request",
            "body error",
            "connection",
            "timed out",
            "read timeout",
            "connect timeout",
        )
    )
