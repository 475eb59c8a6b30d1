"""S3 failures as `repo.errors`: one clear error per failure, never a raw client exception.

Beyond the S3 error code (`s3_wire.s3_code`), obstore says what went wrong only in the
text of an exception and of its causes, so some kinds of failure are told by that text.
"""

from __future__ import annotations

import urllib.request
from urllib.parse import urlsplit

import obstore.exceptions as obx

from ..errors import (
    ArchivedError,
    ConflictError,
    NotFoundError,
    RepoError,
    StoreError,
    VerificationError,
)
from ..urls import mask_url
from .s3_wire import first_line, s3_code

__all__ = ["ObjectExists", "cause_text", "proxy_for", "translate"]


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
    """The `RepoError` for a failed request about `key` in `bucket`.

    Credentials in `endpoint_url` never show: the endpoint is named masked, and its
    password is taken out of whatever the client's own message repeats of the URL.
    """
    shown = mask_url(endpoint_url) if endpoint_url else None
    err = _translate(exc, key, bucket=bucket, endpoint_url=shown, timeout=timeout, writing=writing)
    secret = urlsplit(endpoint_url).password if endpoint_url else None
    if not secret or isinstance(exc, RepoError):
        return err
    hint = err.hint.replace(secret, "***") if err.hint else None
    return type(err)(err.message.replace(secret, "***"), hint=hint)


def _translate(
    exc: BaseException,
    key: str,
    *,
    bucket: str,
    endpoint_url: str | None,
    timeout: float,
    writing: bool = False,
) -> RepoError:
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
    if code == "InvalidObjectState":
        # A 403, but about the object's storage class, not the credentials.
        return ArchivedError(
            f"object {where} is archived and has no restored copy to read (InvalidObjectState)",
            hint="restore it first with `repo thaw`",
        )
    if code in ("RequestTimeTooSkewed", *_WRONG_REGION):
        # Answered as "forbidden" or "bad request", but not about the credentials.
        return _from_code(code, where)
    if isinstance(exc, obx.PermissionDeniedError | obx.UnauthenticatedError):
        return StoreError(
            f"access to {where} denied: {first_line(exc)}",
            hint="check s3_access_key / s3_secret_key and the bucket's permissions",
        )
    if code is not None:
        return _from_code(code, where)
    text = first_line(exc)
    server = endpoint_url or "the S3 endpoint"
    if _any_in(exc, _DNS):
        host = urlsplit(endpoint_url).hostname if endpoint_url else None
        return StoreError(
            f"S3 request for {where} failed: cannot resolve the server's name"
            + (f" {host!r}" if host else "")
            + " (DNS lookup failed)",
            hint="check the host name in s3_endpoint_url, and this host's DNS",
        )
    if _any_in(exc, _TLS):
        return StoreError(
            f"S3 request for {where} failed: the TLS handshake with {server} failed: "
            f"{_tls_reason(cause_text(exc))}",
            hint="check http:// against https:// in s3_endpoint_url, and the server's "
            "certificate (AWS_CA_BUNDLE names extra trusted certificates)",
        )
    if _refused(exc):
        # Checked before timeouts: the client's give-up message after retrying a
        # refused connection also mentions its retry timeout.
        check = f"check that the S3 server at {server} is running (s3_endpoint_url)"
        if (proxy := proxy_for(endpoint_url)) is not None:
            # The clients go through it: it may be the one refusing.
            check += f", and the proxy {proxy} the environment names (NO_PROXY skips it)"
        return StoreError(
            f"S3 request for {where} failed: cannot connect to {server} "
            "(connection refused, after retries)",
            hint=check,
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
    if code in ("SlowDown", "ServiceUnavailable", "503", "RequestTimeTooSkewed"):
        if code == "RequestTimeTooSkewed":
            return StoreError(
                f"S3 request for {where} failed: this host's clock is too far from the "
                "server's (RequestTimeTooSkewed)",
                hint="set this host's clock right (NTP)",
            )
        return StoreError(
            f"S3 request for {where} failed: {code}, still after retries with backoff",
            hint="the server is overloaded or throttling; retry later",
        )
    if code in _WRONG_REGION:
        return StoreError(
            f"S3 request for {where} failed: the bucket is in another region ({code})",
            hint="set s3_region to the bucket's region",
        )
    if code in ("NotImplemented", "501", "MethodNotAllowed", "405"):
        return StoreError(
            f"S3 request for {where} failed: the server does not support this request ({code})",
            hint="this S3 server lacks a feature repo needs; see docs/reliability.md",
        )
    if code in ("InternalError", "500"):
        # The same 500 on every retry is no overload: the server fails this request.
        return StoreError(
            f"S3 request for {where} failed: the server answered {code} on every attempt",
            hint="the server fails this request: check its logs (it may not support it)",
        )
    return StoreError(f"S3 request for {where} failed: {code}")


def proxy_for(endpoint_url: str | None) -> str | None:
    """The HTTP proxy the environment sets for `endpoint_url` (AWS's if None), masked;
    None if there is none or NO_PROXY skips it. obstore and boto3 go through it."""
    parts = urlsplit(endpoint_url or "https://s3.amazonaws.com")
    proxy = urllib.request.getproxies_environment().get(parts.scheme)
    # `proxy_bypass` reads NO_PROXY from the environment on Linux.
    if proxy is None or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return mask_url(proxy)


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


#: Words of a failed name lookup, in the texts of obstore (hyper/reqwest), botocore and
#: the C library.
_DNS = (
    "dns error",
    "failed to lookup address",
    "name or service not known",
    "nodename nor servname",
    "temporary failure in name resolution",
    "no address associated with hostname",
    "getaddrinfo failed",
    "failed to resolve",
)
#: Words of a failed TLS handshake or certificate check: Python's ssl module (botocore)
#: and rustls as obstore's debug text spells it.
_TLS = (
    "invalidcontenttype",
    "invalidcertificate",
    "peerincompatible",
    "alertreceived",
    "handshakefailure",
    "certificate verify failed",
    "invalid certificate",
    "unknownissuer",
    "certificate",
    "wrong version number",
    "sslerror",
    "ssl:",
    "tls handshake",
    "handshake failure",
    "invalid peer certificate",
)
#: S3 error codes that mean the bucket lives in another region than the one asked.
_WRONG_REGION = (
    "AuthorizationHeaderMalformed",
    "PermanentRedirect",
    "IllegalLocationConstraintException",
    "301",
)


def _any_in(exc: BaseException, words: tuple[str, ...]) -> bool:
    text = cause_text(exc)
    return any(word in text for word in words)


def _tls_reason(text: str) -> str:
    if "invalidcontenttype" in text or "wrong version number" in text or "wrong_version" in text:
        return "the server does not speak TLS there (an http:// server?)"
    if "certificate" in text or "unknownissuer" in text:
        return "its certificate is not trusted here"
    return "the server refused it"


def _refused(exc: BaseException) -> bool:
    text = cause_text(exc)
    return "connection refused" in text or "connectionrefused" in text


def _timed_out(exc: BaseException) -> bool:
    # obstore's retry report names its setting ``retry_timeout`` whatever went wrong: that
    # word is no time-out (a cut-off body failed in 1 ms, and was called one).
    text = cause_text(exc).replace("retry_timeout", "")
    return "timed out" in text or "timedout" in text or "timeout" in text
