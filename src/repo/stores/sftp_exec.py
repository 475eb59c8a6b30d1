"""Commands on the server, over the store's one SSH connection, for accounts that may run
them: ``md5sum`` of a stored file, and ``cat`` to take a large upload's bytes.

Why ``cat``: asyncssh sends bytes through an exec channel at up to twice the rate of its
SFTP writes (each SFTP write is a request and an answer, handled in Python; measured by
bench/sftp_transfers.py, docs/sftp-store.md), so for an account with a shell a large
object goes up as ``cat > TEMP``. Downloads measured no faster that way and stay SFTP,
as does everything else: the temporary file is created by SFTP (``O_EXCL``), flushed and
renamed by SFTP, and an account that may run no command (``ForceCommand internal-sftp``)
gets all of it over SFTP. Verification is the same either way: our md5 of the bytes, and
the server's.

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

if TYPE_CHECKING:
    from .sftp_session import Session, SshTarget

__all__ = [
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
