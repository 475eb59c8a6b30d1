"""One upload to the ``sftp://`` store: send to a temporary name, check, rename into place.

The bytes go out pipelined (each chunk as parallel SFTP writes, the next chunk read and
hashed meanwhile) into ``.tmp-<token>`` beside the object's final name, opened with
``O_EXCL``. Then the file is flushed to the server's disk, checked (size, then md5 by
``md5sum`` on the server or by reading it back), and renamed with plain SFTP rename,
which refuses an existing name: an object someone else created is never replaced. The
sidecar with the md5 and user metadata is written last. A temporary file is removed on
any failure that leaves the connection up; one a broken connection strands is for
`SftpStore.clean_temporaries`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import posixpath
from collections import deque
from typing import TYPE_CHECKING, Any

import asyncssh

from ..errors import ConflictError, StoreError, VerificationError
from ..integrity import ETAG, READ_BACK
from .base import ObjectInfo, Progress, PutResult, hash_only
from .sftp_exec import (
    command_error,
    exit_of,
    finish_cat_in,
    runs_commands,
    send,
    server_md5,
    start_cat_in,
)
from .sftp_layout import (
    CAT_THRESHOLD,
    IN_FLIGHT,
    OBJECT_MODE,
    md5sum_timeout,
    meta_path,
    new_temp_name,
)
from .sftp_read import chunks_from
from .sftp_session import is_transient, translate

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from concurrent.futures import Future

    from .sftp_session import Session

__all__ = ["Upload"]

_CREATE_ONLY = asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_EXCL


class Upload:
    """A put of one object; `run` may be called again after a broken connection, and
    progress already reported is not reported twice."""

    def __init__(
        self,
        session: Session,
        root: str,
        key: str,
        path: str,
        metadata: dict[str, str],
        progress: Progress | None,
        *,
        head: Callable[[str], ObjectInfo],
        stored_md5: Callable[[str], str | None],
    ) -> None:
        self.session = session
        self.root = root
        self.head = head
        self.stored_md5 = stored_md5
        self.key = key
        self.path = path
        self.metadata = metadata
        self.progress = progress
        self.reported = 0

    def run(self, chunks: Iterator[bytes], size: int) -> PutResult:
        """Upload `chunks` (`size` bytes, as far as the caller knows: it picks the way)."""
        session = self.session
        sftp: asyncssh.SFTPClient = session.run(session.checkout())
        broken = True
        tmp: str | None = None
        try:
            directory = posixpath.dirname(self.path)
            tmp = new_temp_name(directory)
            md5, size = self._send(sftp, tmp, chunks, by_cat=size >= CAT_THRESHOLD)
            verified_with = self._check(sftp, tmp, md5, size)
            result = self._rename(sftp, tmp, md5, size, verified_with)
            tmp = None
            broken = False
            return result
        except BaseException as exc:
            broken = is_transient(exc)
            raise
        finally:
            if tmp is not None and not broken:
                with contextlib.suppress(Exception):
                    session.run(sftp.remove(tmp))
            session.loop_call(session.checkin, sftp, broken=broken)

    # -- sending -------------------------------------------------------------------------

    def _send(
        self, sftp: asyncssh.SFTPClient, tmp: str, chunks: Iterator[bytes], *, by_cat: bool
    ) -> tuple[str, int]:
        """Send `chunks` into a new file `tmp`, flushed to the server's disk; our md5 and
        size of what was sent."""
        session = self.session
        f = session.run(create(sftp, tmp, asyncssh.SFTPAttrs(permissions=0o600)))
        try:
            if by_cat and session.run(runs_commands(session)):
                md5, size = self._send_by_cat(tmp, chunks)
            else:
                md5, size = self._send_by_sftp(sftp, f, chunks)
            session.run(f.fsync())  # fsync@openssh.com: the file's data, whoever wrote it
            session.run(f.chmod(OBJECT_MODE))
        finally:
            with contextlib.suppress(Exception):
                session.run(f.close())
        return md5, size

    def _send_by_cat(self, tmp: str, chunks: Iterator[bytes]) -> tuple[str, int]:
        """Through ``cat > tmp``: each chunk is read and hashed while the last one drains."""
        session = self.session
        what = f"write of {self.key!r}"
        proc = session.run(start_cat_in(session, tmp))
        md5 = hashlib.md5(usedforsecurity=False)
        size = 0
        sending: tuple[Future[None], int] | None = None
        try:
            for chunk in chunks:
                md5.update(chunk)
                if sending is not None:
                    sending[0].result()
                    self._report(sending[1])
                sending = (session.submit(send(proc, chunk)), size + len(chunk))
                size += len(chunk)
            if sending is not None:
                sending[0].result()
                self._report(sending[1])
            status, err = session.run(finish_cat_in(proc))
        except Exception as exc:
            # cat stopped (a full disk): its exit status and stderr say why, not the pipe.
            status, err = session.run(exit_of(proc))
            if status not in (0, None):
                raise command_error(err, what, session.target) from exc
            raise
        finally:
            session.loop_call(proc.close)
        if status != 0:
            raise command_error(err, what, session.target)
        return md5.hexdigest(), size

    def _send_by_sftp(
        self, sftp: asyncssh.SFTPClient, f: asyncssh.SFTPClientFile, chunks: Iterator[bytes]
    ) -> tuple[str, int]:
        """Through pipelined SFTP writes (each chunk as parallel requests)."""
        session = self.session
        md5 = hashlib.md5(usedforsecurity=False)
        offset = 0
        pending: deque[tuple[Future[Any], int]] = deque()
        try:
            for chunk in chunks:
                md5.update(chunk)
                pending.append((session.submit(f.write(chunk, offset)), offset + len(chunk)))
                offset += len(chunk)
                while len(pending) > IN_FLIGHT:
                    self._settle(sftp, *pending.popleft())
            while pending:
                self._settle(sftp, *pending.popleft())
        finally:
            for fut, _end in pending:
                with contextlib.suppress(Exception):
                    fut.result()
        return md5.hexdigest(), offset

    def _report(self, end: int) -> None:
        """Tell `progress` about the bytes up to `end` not reported yet (a retry resends
        some: they are not told twice)."""
        if end > self.reported:
            if self.progress is not None:
                self.progress(end - self.reported)
            self.reported = end

    def _settle(self, sftp: asyncssh.SFTPClient, fut: Future[Any], end: int) -> None:
        try:
            fut.result()
        except asyncssh.SFTPError as exc:
            if exc.code == asyncssh.FX_FAILURE and self._disk_full(sftp):
                raise StoreError(
                    f"write of {self.key!r} failed: no space left on the server's disk "
                    f"({self.session.target.where}:{self.root})",
                    hint="free space on the server, or move the store to a larger disk",
                ) from exc
            raise
        self._report(end)

    def _disk_full(self, sftp: asyncssh.SFTPClient) -> bool:
        """Is the store's filesystem out of space (OpenSSH says only "Failure")?"""
        try:
            vfs = self.session.run(sftp.statvfs(self.root))
        except Exception:
            return False
        return bool(vfs.bavail * vfs.frsize < 1024 * 1024)

    # -- checking ------------------------------------------------------------------------

    def _check(self, sftp: asyncssh.SFTPClient, tmp: str, md5: str, size: int) -> str:
        """Is what the server holds what we sent? Returns what vouched for it."""
        stored = self.session.run(sftp.stat(tmp)).size or 0
        got = self.session.run(server_md5(self.session, tmp, md5sum_timeout(size)))
        verified_with = ETAG
        if got is None:
            got = hash_only(chunks_from(self.session, tmp, 0, stored)).md5
            verified_with = READ_BACK
        if stored != size or got != md5:
            raise VerificationError(
                f"upload of {self.key!r} failed verification: the server holds {stored} "
                f"bytes with md5 {got}, {size} bytes with md5 {md5} were sent",
                hint="the network or the server's disk damaged the bytes; retry",
            )
        return verified_with

    # -- into place ----------------------------------------------------------------------

    def _rename(
        self, sftp: asyncssh.SFTPClient, tmp: str, md5: str, size: int, verified_with: str
    ) -> PutResult:
        session = self.session
        try:
            session.run(sftp.rename(tmp, self.path))  # SSH_FXP_RENAME: fails if it exists
        except asyncssh.SFTPError as exc:
            if is_transient(exc) or not session.run(sftp.exists(self.path)):
                raise
            # Ours from an attempt whose answer was lost, or a crash before it was
            # recorded? Keep it. Anything else is someone else's: never replaced.
            info = self.head(self.key)
            existing = info.etag
            if existing is None and info.size == size:
                existing = self.stored_md5(self.key)
            if info.size != size or existing != md5:
                raise ConflictError(
                    f"object {self.key!r} already exists; objects are never overwritten"
                ) from None
            session.run(sftp.remove(tmp))
        self._write_meta(sftp, md5, size)
        return PutResult(key=self.key, md5=md5, size=size, etag=md5, verified_with=verified_with)

    def _write_meta(self, sftp: asyncssh.SFTPClient, md5: str, size: int) -> None:
        session = self.session
        meta = meta_path(self.root, self.key)
        doc = json.dumps({"md5": md5, "size": size, "metadata": self.metadata}).encode()
        tmp = new_temp_name(posixpath.dirname(meta))
        try:
            # Not flushed to disk: a sidecar lost in a crash of the server only costs
            # hashing the object again (`head` gives no md5 without it).
            f = session.run(create(sftp, tmp, asyncssh.SFTPAttrs()))
            try:
                session.run(f.write(doc, 0))
            finally:
                session.run(f.close())
            # A sidecar is ours to replace (a retry's); an object never is.
            session.run(sftp.posix_rename(tmp, meta))
            tmp = ""
        except asyncssh.SFTPError as exc:
            if is_transient(exc):
                raise
            raise translate(exc, f"write of {self.key!r}'s metadata", self.session.target) from exc
        finally:
            if tmp:
                with contextlib.suppress(Exception):
                    session.run(sftp.remove(tmp))


async def create(
    sftp: asyncssh.SFTPClient, path: str, attrs: asyncssh.SFTPAttrs
) -> asyncssh.SFTPClientFile:
    """Open a new file for writing (``O_EXCL``), making its directory where missing."""
    try:
        return await sftp.open(path, _CREATE_ONLY, attrs, encoding=None)
    except asyncssh.SFTPError as exc:
        if exc.code != asyncssh.FX_NO_SUCH_FILE:
            raise
    await make_directories(sftp, posixpath.dirname(path))
    return await sftp.open(path, _CREATE_ONLY, attrs, encoding=None)


async def make_directories(sftp: asyncssh.SFTPClient, path: str) -> None:
    """``mkdir -p``, asking only about the directories that are missing (asyncssh's
    makedirs asks about every one from the root down)."""
    try:
        await sftp.mkdir(path)
        return
    except asyncssh.SFTPError as exc:
        if exc.code == asyncssh.FX_NO_SUCH_FILE and path.count("/") > 1:
            await make_directories(sftp, posixpath.dirname(path))
        elif exc.code != asyncssh.FX_FAILURE or not await sftp.isdir(path):
            raise  # FAILURE is OpenSSH's answer for "exists"; made meanwhile is fine
        else:
            return
    try:
        await sftp.mkdir(path)
    except asyncssh.SFTPError as exc:
        if exc.code != asyncssh.FX_FAILURE or not await sftp.isdir(path):
            raise
