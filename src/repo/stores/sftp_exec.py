"""Commands on the server, over the store's one SSH connection, for accounts that may run
them: ``md5sum`` of a stored file, and ``cat`` to move an object's bytes.

Why ``cat``: asyncssh moves bytes through an exec channel at about twice the rate of its
SFTP requests (each SFTP write or read is a request and an answer, parsed in Python;
measured in bench/sftp_transfers.py's notes), so for an account with a shell an object
goes up as ``cat > TEMP`` and comes down as ``cat -- PATH``. Everything else stays SFTP:
the temporary file is created by SFTP (``O_EXCL``), flushed and renamed by SFTP, and an
account that may run no command (``ForceCommand internal-sftp``) gets all of it over SFTP.
Verification is the same either way: our md5 of the bytes, and the server's.

Whether the account runs commands is asked once per connection, with
``md5sum -- /dev/null``, whose one exact answer also proves md5sum is there. Paths are
validated keys under the root, passed shell-quoted; what a command prints is input:
md5sum's answer is parsed strictly, an error is shown as one printable line.
"""

from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING

import asyncssh

from ..errors import NotFoundError, StoreError
from .sftp_layout import CHUNK

if TYPE_CHECKING:
    from collections.abc import Iterator
    from concurrent.futures import Future

    from .sftp_session import Session, SshTarget

__all__ = [
    "cat_out",
    "command_error",
    "finish_cat_in",
    "runs_commands",
    "send",
    "server_md5",
    "start_cat_in",
]

PROBE_TIMEOUT = 20.0
#: A process that stops answering (a hung disk) does not hold a transfer forever.
IDLE_TIMEOUT = 300.0
_EMPTY = "d41d8cd98f00b204e9800998ecf8427e  /dev/null\n"
_MD5SUM_LINE = re.compile(r"([0-9a-f]{32}) [ *](.*)\n")
_PROBE_FAILED = (asyncssh.ChannelOpenError, asyncssh.ProcessError, asyncssh.TimeoutError)


async def runs_commands(session: Session) -> bool:
    """May the account run commands, md5sum among them? Asked once per session."""
    if session.commands is None:
        conn = await session.connection()
        try:
            done = await conn.run(
                "md5sum -- /dev/null",
                stdin=asyncssh.DEVNULL,
                encoding="utf-8",
                errors="replace",
                timeout=PROBE_TIMEOUT,
            )
        except _PROBE_FAILED:
            session.commands = False
        else:
            session.commands = done.exit_status == 0 and done.stdout == _EMPTY
    return session.commands


async def server_md5(session: Session, path: str, timeout: float) -> str | None:
    """md5 of the file at `path` as md5sum on the server reads it; None when the account
    runs no commands or the answer is not the one line expected (then: read it back)."""
    if not await runs_commands(session):
        return None
    conn = await session.connection()
    try:
        done = await conn.run(
            f"md5sum -- {shlex.quote(path)}",
            stdin=asyncssh.DEVNULL,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
        )
    except _PROBE_FAILED:
        return None
    found = _MD5SUM_LINE.fullmatch(str(done.stdout or ""))
    if done.exit_status != 0 or found is None or found.group(2) != path:
        return None
    return found.group(1)


# -- up: cat > TEMP -------------------------------------------------------------------


async def start_cat_in(session: Session, path: str) -> asyncssh.SSHClientProcess[bytes]:
    """A ``cat`` writing its input over the (existing, empty) file at `path`."""
    conn = await session.connection()
    return await conn.create_process(f"cat > {shlex.quote(path)}", encoding=None)


async def send(proc: asyncssh.SSHClientProcess[bytes], chunk: bytes) -> None:
    proc.stdin.write(chunk)
    await proc.stdin.drain()


async def finish_cat_in(proc: asyncssh.SSHClientProcess[bytes]) -> tuple[int | None, bytes]:
    """End the input; the exit status and what the command said on stderr."""
    proc.stdin.write_eof()
    done = await proc.wait(timeout=IDLE_TIMEOUT)
    err = done.stderr
    return done.exit_status, err if isinstance(err, bytes) else b""


async def exit_of(proc: asyncssh.SSHClientProcess[bytes]) -> tuple[int | None, bytes]:
    """How a command that stopped taking input ended (None: it did not end in 10 s)."""
    try:
        done = await proc.wait(timeout=10)
    except (asyncssh.TimeoutError, asyncssh.Error, OSError):
        return None, b""
    err = done.stderr
    return done.exit_status, err if isinstance(err, bytes) else b""


# -- down: cat -- PATH ----------------------------------------------------------------


def cat_out(session: Session, path: str, what: str) -> Iterator[bytes]:
    """The file at `path`, in order, from ``cat``: the next chunk is asked for before
    this one is handed over (one read at a time: reads of one stream must not overlap)."""
    proc = session.run(_start_cat_out(session, path))
    fut: Future[bytes] | None = session.submit(_read_some(proc))
    try:
        while fut is not None:
            chunk = fut.result()
            fut = session.submit(_read_some(proc)) if chunk else None
            if chunk:
                yield chunk
        status, err = session.run(_finish_cat_out(proc))
        if status != 0:
            raise command_error(err, what, session.target)
    finally:
        if fut is not None:
            fut.cancel()
        session.loop_call(proc.close)


async def _start_cat_out(session: Session, path: str) -> asyncssh.SSHClientProcess[bytes]:
    conn = await session.connection()
    return await conn.create_process(
        f"cat -- {shlex.quote(path)}", encoding=None, stdin=asyncssh.DEVNULL
    )


async def _read_some(proc: asyncssh.SSHClientProcess[bytes]) -> bytes:
    """Up to `CHUNK` bytes of the output (fewer only at its end; b"" after it)."""
    parts: list[bytes] = []
    size = 0
    while size < CHUNK:
        part = await proc.stdout.read(CHUNK - size)
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


async def _finish_cat_out(proc: asyncssh.SSHClientProcess[bytes]) -> tuple[int | None, bytes]:
    done = await proc.wait(timeout=IDLE_TIMEOUT)
    err = done.stderr
    return done.exit_status, err if isinstance(err, bytes) else b""


# -- what a failed command said --------------------------------------------------------


def command_error(stderr: bytes, what: str, target: SshTarget) -> Exception:
    """A command's failure as a repo error; its stderr, server input, as one safe line."""
    text = stderr.decode("utf-8", "replace")
    line = " ".join("".join(c if c.isprintable() else " " for c in text).split())[:200]
    lowered = line.lower()
    if "no space left" in lowered or "disk quota" in lowered:
        return StoreError(
            f"{what} failed: no space left on the server's disk ({target.where})",
            hint="free space on the server, or move the store to a larger disk",
        )
    if "permission denied" in lowered:
        return StoreError(
            f"{what} failed: permission denied on {target.where}",
            hint=f"check that the SSH user may read and write the store's directory on "
            f"{target.host}",
        )
    if "no such file" in lowered:
        return NotFoundError(f"{what} failed: no such file on {target.where}")
    return StoreError(f"{what} failed on {target.where}: {line or 'the command failed'}")
