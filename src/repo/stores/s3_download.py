"""Reading objects: head, whole or streamed GETs, and large objects as parallel ranges.

One TCP stream rarely fills a fast link, so objects above `RANGE_THRESHOLD` come as
ranged GETs in parallel, handed on in order to the caller's single hashing pass. Into a
file (or a cache file teed to a reader, `Tee`), each range is written at its offset by
the thread that fetched it, so the ordered pass only hashes (and feeds the reader). A
range that breaks off is asked for again. Progress is reported per chunk as it is
written out.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import io
import itertools
import logging
import os
import stat
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import obstore

from ..errors import RepoError, StoreError
from ..integrity import normalize_etag
from .base import (
    DownloadResult,
    ObjectInfo,
    Progress,
    Tee,
    Writable,
    copy_hashing,
    hash_only,
)
from .s3_errors import cause_text
from .s3_http_ranges import HttpRanges, RangeRefused, usable
from .s3_retry import ATTEMPTS, FIRST_BACKOFF_SECONDS, again, transient
from .s3_wire import decode_meta, first_line

if TYPE_CHECKING:
    from collections.abc import Generator, Iterator

    from .s3_client import S3Connection

__all__ = ["get_into", "head", "iter_bytes"]

logger = logging.getLogger(__name__)

STREAM_CHUNK = 4 * 1024 * 1024
#: Objects above this size download as parallel ranged GETs (`_ranges`).
RANGE_THRESHOLD = 32 * 1024 * 1024
RANGE_PART = 4 * 1024 * 1024
#: Ranges into a file are larger: fewer requests (each costs boto3 milliseconds of CPU),
#: at 32 MiB of buffers; a stream to a reader keeps to `RANGE_PART` (bounded memory).
FILE_RANGE_PART = 8 * 1024 * 1024
BOTO_READ_PIECE = 1024 * 1024
RANGE_CONCURRENCY = 4

#: Standard headers obstore lists among an object's attributes; the rest is user metadata.
_STANDARD_HEADERS = frozenset(
    ("Content-Type", "Content-Disposition", "Content-Encoding", "Content-Language", "Cache-Control")
)


def head(conn: S3Connection, key: str) -> ObjectInfo:
    """Size, ETag and user metadata of `key`; `NotFoundError` if it does not exist."""
    try:
        result = _open(conn, key, head=True)
    except Exception as exc:
        raise conn.translate(exc, key) from exc
    meta = result.meta
    user = {k: decode_meta(v) for k, v in result.attributes.items() if k not in _STANDARD_HEADERS}
    return ObjectInfo(
        key=key,
        size=meta["size"],
        etag=normalize_etag(meta.get("e_tag")),
        last_modified=meta.get("last_modified"),
        metadata=user,
    )


def iter_bytes(conn: S3Connection, key: str) -> Iterator[bytes]:
    """Object `key` in chunks, unverified (the caller hashes)."""
    try:
        result = _open(conn, key)
    except Exception as exc:
        raise conn.translate(exc, key) from exc
    return _stream(conn, result, key)


def get_into(
    conn: S3Connection, key: str, out: Writable, progress: Progress | None = None
) -> DownloadResult:
    """Object `key` written to `out`, with the md5 and size of what was written."""
    try:
        result = _open(conn, key)
    except Exception as exc:
        raise conn.translate(exc, key) from exc
    size = int(result.meta["size"])
    if size <= STREAM_CHUNK:
        # One piece either way: taken in one call, not a stream's two (each call
        # waits on the client's runtime, and a fetch makes thousands of them).
        try:
            body = result.bytes()
        except Exception as exc:
            raise conn.translate(exc, key) from exc
        return copy_hashing((memoryview(body),), out, progress)
    if size <= RANGE_THRESHOLD:
        return copy_hashing(_stream(conn, result, key), out, progress)
    file, reader = (out.first, out.second) if isinstance(out, Tee) else (out, None)
    fd = _plain_file(file)
    if fd is None:
        return copy_hashing(_ranges(conn, result, key, size), out, progress)
    # A file: each range is written at its place by the thread that fetched it, in
    # parallel with the one md5 pass here (which only reads, and writes a tee's reader
    # its bytes in order). `_plain_file` checked the type of `file`; mypy needs telling.
    assert isinstance(file, io.BufferedWriter | io.FileIO)  # noqa: S101
    file.flush()
    base = file.tell()
    # A reader's stream keeps to `RANGE_PART` buffers (`get -o -` stays small).
    part = FILE_RANGE_PART if reader is None else RANGE_PART
    pieces = _ranges(conn, result, key, size, into=(fd, base), part=part)
    got = hash_only(pieces, progress) if reader is None else copy_hashing(pieces, reader, progress)
    file.seek(base + got.size)
    return got


def _open(conn: S3Connection, key: str, *, head: bool = False) -> Any:
    """The answer to a GET (or HEAD) of `key`, asked again if it broke off on the way:
    obstore does not repeat a request whose answer (an error's included) was cut short,
    and a GET is safe to repeat. A clean 404 is an answer, never repeated."""
    options: Any = {"head": True} if head else None
    return again(key, lambda: obstore.get(conn.ob, key, options=options), timeout=conn.timeout)


def _stream(conn: S3Connection, result: Any, key: str) -> Generator[bytes, None, None]:
    try:
        for chunk in result.stream(min_chunk_size=STREAM_CHUNK):
            yield bytes(chunk)
    except Exception as exc:
        raise conn.translate(exc, key) from exc


def _ranges(
    conn: S3Connection,
    result: Any,
    key: str,
    size: int,
    into: tuple[int, int] | None = None,
    part: int | None = None,
) -> Iterator[bytes | memoryview]:
    """A large object in order, fetched as parallel ranged GETs. The first part
    (`RANGE_PART` bytes, or `FILE_RANGE_PART` into a file) comes from the response
    already open while the next ranges are fetched, `RANGE_CONCURRENCY` at a time;
    each is handed on, in order, to the caller's single hashing pass. Objects are
    never overwritten, so the ranges cannot mix two versions.

    Ranges land in a fixed set of reused buffers (a buffer goes back to the pool
    when the caller asks for the next piece, having written this one), so memory
    stays at `RANGE_CONCURRENCY` parts whatever the object's size.

    With `into` (a file descriptor and the offset the object starts at), every piece
    is also written there, at its place, before it is handed on.
    """
    stream = _stream(conn, result, key)
    pool = ThreadPoolExecutor(RANGE_CONCURRENCY, thread_name_prefix="repo-range")
    plain = HttpRanges(conn, key) if usable(conn) else None
    part = part or (RANGE_PART if into is None else FILE_RANGE_PART)
    free = [bytearray(part) for _ in range(RANGE_CONCURRENCY)]
    pending: deque[tuple[bytearray, Future[int]]] = deque()
    starts = iter(range(part, size, part))

    def fetch(start: int, buf: bytearray) -> int:
        got = _range_again(conn, key, start, size, buf, plain)
        if into is not None:
            _write_at(into[0], memoryview(buf)[:got], into[1] + start)
        return got

    def submit(start: int) -> None:
        buf = free.pop()
        pending.append((buf, pool.submit(fetch, start, buf)))

    try:
        for start in itertools.islice(starts, RANGE_CONCURRENCY):
            submit(start)
        done = 0
        for chunk in stream:
            take = min(len(chunk), part - done)
            if into is not None:
                _write_at(into[0], memoryview(chunk)[:take], into[1] + done)
            yield chunk[:take]
            done += take
            if done >= part:
                break
        stream.close()  # the rest comes as ranges
        while pending:
            buf, future = pending.popleft()
            yield memoryview(buf)[: future.result()]
            free.append(buf)
            following = next(starts, None)
            if following is not None:
                submit(following)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if plain is not None:
            plain.close()


class _BrokeOff(StoreError):
    """A range came back shorter or longer than asked."""


def _range_again(
    conn: S3Connection, key: str, start: int, size: int, buf: bytearray, plain: HttpRanges | None
) -> int:
    """`_range_into`, asked again (with backoff) if it broke off or failed on the way: a
    range is idempotent, and objects are never overwritten, so a second answer holds the
    same bytes. What is written to `buf` (and the file) is only kept once whole."""
    delay = FIRST_BACKOFF_SECONDS
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return _range_into(conn, key, start, size, buf, plain)
        except RepoError as exc:
            if attempt == ATTEMPTS or not _worth_again(exc):
                raise
            logger.info("range %d of %s failed (%s); retrying", start, key, first_line(exc))
        time.sleep(delay)
        delay *= 3
    raise AssertionError("unreachable")  # pragma: no cover


def _worth_again(exc: RepoError) -> bool:
    """Did the range break off or fail on the way (not a definite answer such as a
    missing object)? botocore's IncompleteReadError is a body that ended early."""
    cause = exc.__cause__
    if isinstance(exc, _BrokeOff):
        return True
    if isinstance(exc, RangeRefused):
        return exc.transient
    if isinstance(cause, OSError | http.client.HTTPException):
        return True  # a plain-HTTP range whose connection broke (`HttpRanges`)
    return cause is not None and (transient(cause) or type(cause).__name__ == "IncompleteReadError")


def _range_into(
    conn: S3Connection, key: str, start: int, size: int, buf: bytearray, plain: HttpRanges | None
) -> int:
    """Fetch bytes [start, start + len(buf)) of `key` into `buf`; their length."""
    end = min(start + len(buf), size)
    try:
        if conn.ranges_answered_200:
            got = _range_answered_200(conn, key, start, end, buf, plain)
        else:
            try:
                data = obstore.get_range(conn.ob, key, start=start, end=end)
            except Exception as exc:
                if "non-partial" not in cause_text(exc):
                    raise
                # rclone answers a range with status 200 (and the right bytes), which
                # object_store refuses: `HttpRanges` (or boto3) take the answer as it is.
                conn.ranges_answered_200 = True
                got = _range_answered_200(conn, key, start, end, buf, plain)
            else:
                got = len(data)
                if got <= len(buf):
                    buf[:got] = memoryview(data)
    except RepoError:
        raise
    except Exception as exc:
        raise conn.translate(exc, key) from exc
    if got != end - start:
        raise _BrokeOff(
            f"S3 download of {key!r} broke off: bytes {start}-{end} came back as {got} bytes",
            hint="retry; if it persists, the server or a proxy is cutting answers short",
        )
    return got


def _range_answered_200(
    conn: S3Connection, key: str, start: int, end: int, buf: bytearray, plain: HttpRanges | None
) -> int:
    """A range from a server obstore cannot take ranges from: over plain HTTP where no
    proxy is in the way (a fraction of boto3's CPU), else through boto3."""
    if plain is not None:
        return plain.into(start, end, buf)
    return _boto_range_into(conn, key, start, end, buf)


def _boto_range_into(conn: S3Connection, key: str, start: int, end: int, buf: bytearray) -> int:
    answer = conn.client().get_object(Bucket=conn.bucket, Key=key, Range=f"bytes={start}-{end - 1}")
    if not str(answer.get("ContentRange", "")).startswith(f"bytes {start}-{end - 1}/"):
        answer["Body"].close()
        raise StoreError(
            f"S3 download of {key!r}: the server did not answer the range {start}-{end}",
            hint="retry; a server that ignores ranges cannot serve parallel downloads",
        )
    view = memoryview(buf)
    got = 0
    with contextlib.closing(answer["Body"]) as body:
        while got < len(view):
            # In pieces: urllib3's readinto reads into a new buffer of the size
            # asked for and copies it over, so a whole range at once would double
            # the memory (and the page faults) of every range in flight.
            n = body.readinto(view[got : got + BOTO_READ_PIECE]) or 0
            if not n:
                break
            got += n
        if got == len(view) and body.read(1):
            got += 1  # longer than asked: reported as a mismatch by the caller
    return got


def _plain_file(out: Writable) -> int | None:
    """The descriptor of `out` if it is a regular file we may write at offsets (not a
    pipe, not opened for appending), else None."""
    if not isinstance(out, io.BufferedWriter | io.FileIO):
        return None
    try:
        fd = out.fileno()
        plain = stat.S_ISREG(os.fstat(fd).st_mode) and out.seekable()
        appending = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND
    except (OSError, ValueError):
        return None
    return fd if plain and not appending else None


def _write_at(fd: int, data: memoryview, offset: int) -> None:
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written
