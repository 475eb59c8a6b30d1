"""Ranged GETs over plain HTTP on a presigned URL, for servers obstore cannot take ranges from.

Some S3 servers (rclone's `serve s3`) answer a ranged GET with status 200, a correct
``Content-Range`` and the asked-for bytes; object_store refuses any range answered
without 206. Those ranges used to go through boto3, whose import, client and per-request
Python cost about 0.5 CPU s of every large download. Here each range is one request on a
URL obstore presigns (in Rust, per range, so a long download never outlives its
signature), sent with the standard library's `http.client` on a connection kept per
thread, and read straight into the caller's buffer.

Nothing in the answer is trusted: the status, the ``Content-Range`` (it must name exactly
the range asked for) and the length are checked, and the bytes are hashed by the caller
as before. A proxy configured in the environment is honoured by boto3 and obstore but
not by `http.client`: with one in effect for the endpoint, `usable` says no and the
caller keeps to boto3.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import ssl
import threading
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import obstore

from ..errors import NotFoundError, RepoError, StoreError
from .s3_errors import proxy_for

if TYPE_CHECKING:
    from .s3_client import S3Connection

__all__ = ["HttpRanges", "RangeRefused", "usable"]

#: A presigned URL is made per range and used at once: a short life is enough.
SIGNATURE_LIFE = timedelta(minutes=15)
#: At most this much of an error answer is read (to name its S3 code).
ERROR_BODY_LIMIT = 64 * 1024
READ_PIECE = 1024 * 1024
#: Statuses that say "ask again later" rather than "no".
TRANSIENT_STATUSES = frozenset((408, 429, 500, 502, 503, 504))
_CODE = re.compile(rb"<Code>([A-Za-z0-9.]{1,64})</Code>")


class RangeRefused(StoreError):
    """A range answered with an error status; `transient` if asking again may help."""

    def __init__(self, message: str, *, hint: str | None = None, transient: bool) -> None:
        super().__init__(message, hint=hint)
        self.transient = transient


def usable(conn: S3Connection) -> bool:
    """Can ranges of `conn`'s objects go over plain `http.client` (no proxy in effect for
    the endpoint, and obstore able to presign)?"""
    endpoint = conn.endpoint_url or f"https://s3.{conn.region or 'us-east-1'}.amazonaws.com"
    return proxy_for(endpoint) is None and urlsplit(endpoint).scheme in ("http", "https")


class HttpRanges:
    """Ranges of one object, each thread on its own kept-alive connection; `close` ends
    every connection (call it once the threads are done)."""

    def __init__(self, conn: S3Connection, key: str) -> None:
        self._conn = conn
        self._key = key
        self._local = threading.local()
        self._opened: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def into(self, start: int, end: int, buf: bytearray) -> int:
        """Bytes [start, end) of the object into `buf`; how many came (the caller checks
        the count). Raises `RangeRefused` for an error status, OSError or
        `http.client.HTTPException` for a connection that broke."""
        try:
            url = obstore.sign(self._conn.ob, "GET", self._key, SIGNATURE_LIFE)
        except Exception as exc:
            raise self._conn.translate(exc, self._key) from exc
        parts = urlsplit(url)
        client = self._client(parts.scheme, parts.hostname or "", parts.port)
        target = f"{parts.path}?{parts.query}" if parts.query else parts.path
        try:
            client.request("GET", target, headers={"Range": f"bytes={start}-{end - 1}"})
            answer = client.getresponse()
            if answer.status not in (200, 206):
                raise self._refused(answer, start, end)
            self._check_range(answer, start, end)
            got = _read_into(answer, memoryview(buf)[: end - start])
        except BaseException:
            self._drop(client)  # its state is unknown: the next range opens a new one
            raise
        if got != end - start:
            self._drop(client)  # broke off (or ran on): the caller asks again
        return got

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for client in opened:
            client.close()

    def _client(self, scheme: str, host: str, port: int | None) -> http.client.HTTPConnection:
        client: http.client.HTTPConnection | None = getattr(self._local, "client", None)
        if client is not None:
            return client
        timeout = self._conn.timeout
        if scheme == "https":
            client = http.client.HTTPSConnection(
                host, port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            client = http.client.HTTPConnection(host, port, timeout=timeout)
        self._local.client = client
        with self._lock:
            self._opened.append(client)
        return client

    def _drop(self, client: http.client.HTTPConnection) -> None:
        self._local.client = None
        client.close()
        with self._lock, contextlib.suppress(ValueError):
            self._opened.remove(client)

    def _check_range(self, answer: http.client.HTTPResponse, start: int, end: int) -> None:
        """The answer must be the range asked for: a server that ignores ranges answers
        200 with the whole object (and no ``Content-Range``)."""
        told = answer.getheader("Content-Range") or ""
        length = answer.getheader("Content-Length")
        if not told.startswith(f"bytes {start}-{end - 1}/") or length != str(end - start):
            raise StoreError(
                f"S3 download of {self._key!r}: the server did not answer the range "
                f"{start}-{end} (Content-Range {told[:80]!r}, Content-Length {length!r})",
                hint="retry; a server that ignores ranges cannot serve parallel downloads",
            )

    def _refused(self, answer: http.client.HTTPResponse, start: int, end: int) -> RepoError:
        body = answer.read(ERROR_BODY_LIMIT)
        found = _CODE.search(body)
        code = found.group(1).decode("ascii") if found else str(answer.status)
        where = f"s3://{self._conn.bucket}/{self._key}"
        if answer.status == 404 or code in ("NoSuchKey", "NoSuchBucket"):
            return NotFoundError(f"object {where} not found (it went while being read)")
        transient = answer.status in TRANSIENT_STATUSES or code in ("SlowDown", "InternalError")
        hint = "retry later" if transient else "check the credentials and the bucket's permissions"
        return RangeRefused(
            f"S3 download of {where}: bytes {start}-{end} answered {answer.status} ({code})",
            hint=hint,
            transient=transient,
        )


def _read_into(answer: http.client.HTTPResponse, view: memoryview) -> int:
    """Read the answer's body into `view`; its length, plus one if the body ran past it."""
    got = 0
    while got < len(view):
        n = answer.readinto(view[got : got + READ_PIECE])
        if not n:
            break
        got += n
    if got == len(view) and answer.read(1):
        got += 1  # longer than asked: the caller reports the mismatch
    return got
