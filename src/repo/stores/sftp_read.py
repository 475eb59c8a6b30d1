"""Reading from the ``sftp://`` store: an object's bytes, pipelined, and the walk of its
directory tree that listings and the sweep of temporaries make."""

from __future__ import annotations

import contextlib
from collections import deque
from typing import TYPE_CHECKING

import asyncssh

from ..errors import NotFoundError
from .sftp_layout import CHUNK, IN_FLIGHT, META_DIR, TMP_PREFIX
from .sftp_session import is_transient

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from concurrent.futures import Future

    from .sftp_session import Session

__all__ = ["chunks_from", "walk"]


def chunks_from(session: Session, path: str, offset: int, size: int) -> Iterator[bytes]:
    """The file at `path` from `offset` to `size` (its size when it was looked at; objects
    never change, and the caller checks what it got), by pipelined SFTP reads: up to
    `IN_FLIGHT` + 1 chunks asked for at once, each as parallel requests."""
    sftp = session.run(session.checkout())
    broken = True
    pending: deque[tuple[Future[bytes], int]] = deque()
    try:
        f = session.run(sftp.open(path, "rb"))
        try:
            asked = offset
            while asked < size or pending:
                while asked < size and len(pending) <= IN_FLIGHT:
                    length = min(CHUNK, size - asked)
                    pending.append((session.submit(f.read(length, asked)), length))
                    asked += length
                fut, length = pending.popleft()
                chunk = fut.result()
                if chunk:
                    yield chunk
                if len(chunk) < length:
                    break  # shorter than it was: the caller's size check says so
        finally:
            for fut, _ in pending:
                fut.cancel()
            with contextlib.suppress(Exception):
                session.run(f.close())
        broken = False
    except BaseException as exc:
        broken = is_transient(exc)
        raise
    finally:
        session.loop_call(session.checkin, sftp, broken=broken)


def walk(
    readdir: Callable[[str], Sequence[asyncssh.SFTPName]], root: str, prefix: str, *, objects: bool
) -> Iterator[tuple[str, asyncssh.SFTPAttrs]]:
    """(key, attributes) of the regular files under the root whose key starts with
    `prefix`: objects, or (`objects=False`) temporaries. Symbolic links are neither
    followed nor listed: nothing outside the root is reached."""
    start = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
    if start and not all(s not in ("", ".", "..") for s in start.split("/")):
        return
    stack = [start]
    while stack:
        rel = stack.pop()
        here = f"{root}/{rel}" if rel else root
        try:
            names = readdir(here)
        except NotFoundError:
            continue
        for entry in names:
            name = str(entry.filename)
            if name in (".", "..") or any(c in name for c in "/\0\n"):  # no key's part
                continue
            key = f"{rel}/{name}" if rel else name
            kind = entry.attrs.type
            if kind == asyncssh.FILEXFER_TYPE_DIRECTORY:
                if not rel and name == META_DIR and objects:
                    continue
                if (key + "/").startswith(prefix) or prefix.startswith(key + "/"):
                    stack.append(key)
            elif (
                kind == asyncssh.FILEXFER_TYPE_REGULAR
                and key.startswith(prefix)
                and name.startswith(TMP_PREFIX) != objects
            ):
                yield key, entry.attrs
