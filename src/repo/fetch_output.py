"""Where a fetch writes its versions: the destination directory, checked before anything
is downloaded, and each file written beside its final name, then renamed into place
(see `repo.fetch`)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .cache import sync_filesystem
from .errors import ConflictError, UsageError, VerificationError
from .failover import read_any
from .paths import safe_join
from .permissions import current_umask, written_mode
from .transfers import archived_reads

if TYPE_CHECKING:
    from .catalog import FileRecord, Replica
    from .failover import LostCopy
    from .file import RepoFile
    from .session import Session

__all__ = ["FetchOutput"]


class FetchOutput:
    """The destination directory of a fetch: where each version goes, checked before
    anything is downloaded, and the writing of each file (safe in worker threads)."""

    def __init__(self, dest: Path, chosen: list[RepoFile], *, overwrite: bool) -> None:
        self.dest = dest
        self.overwrite = overwrite
        names = {rf.path for rf in chosen}
        for rf in chosen:
            parts = rf.path.split("/")
            clash = next(
                ("/".join(parts[:i]) for i in range(1, len(parts)) if "/".join(parts[:i]) in names),
                None,
            )
            if clash is not None:
                raise UsageError(
                    f"{clash} and {rf.path} cannot both be written under {dest}: one is a "
                    "directory of the other",
                    hint="fetch them in two runs, into different directories",
                )
        #: Each version's file, by path (`RepoFile.save_as` with ``exact``).
        self.targets = {rf.path: Path(safe_join(dest, rf.path)) for rf in chosen}
        for target in self.targets.values():
            self._check(target)  # before anything is downloaded; again before each write
        self._umask = current_umask()
        self._made: set[str] = set()
        self._lock = threading.Lock()
        self.wrote = False

    def _check(self, target: Path) -> None:
        """Refuse a place taken by something that is no regular file (nothing but a
        regular file is ever written inside the directory), or by any file unless
        overwriting (`destinations.is_stream`, `RepoFile.save_as`)."""
        try:
            mode = os.stat(target).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return  # a file in the way of its directory is found when that is made
        except OSError as exc:
            raise UsageError(f"cannot write {target}: {exc.strerror}") from exc
        if stat.S_ISDIR(mode):
            raise UsageError(f"{target} is a directory", hint="choose another destination")
        if not stat.S_ISREG(mode):
            raise UsageError(
                f"{target} exists and is not a regular file; not replacing it",
                hint="choose another destination",
            )
        if not self.overwrite:
            raise ConflictError(f"{target} already exists", hint="use --force to overwrite it")

    def write(self, rec: FileRecord, data: bytes) -> None:
        """Write verified `data` as `rec`'s file."""
        fd, tmp, target = self._open(rec)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def copy(
        self,
        session: Session,
        rec: FileRecord,
        *,
        copies: list[Replica] | None = None,
        lost: list[LostCopy] | None = None,
    ) -> None:
        """Copy `rec`'s cached copy out, hashing it on the way: a copy damaged on disk
        since it was verified is evicted and downloaded again, once (as is one evicted
        meanwhile), from any good copy (`failover.read_any`: `copies` read beforehand
        and `lost` for worker threads)."""
        # Only uploaded versions are fetched, and those have both (for mypy).
        assert rec.md5 is not None  # noqa: S101
        assert rec.size is not None  # noqa: S101
        md5, size = rec.md5, rec.size
        for attempt in (1, 2):
            fd, tmp, target = self._open(rec)
            try:
                try:
                    got = _copy_hashing(session.cache.cache_file(rec.key), fd)
                finally:
                    os.close(fd)
                if got == (rec.md5, rec.size):
                    os.replace(tmp, target)
                    return
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            os.unlink(tmp)
            if got is not None:
                session.cache.evict(rec.key)
                if attempt == 2:
                    raise VerificationError(
                        f"the local copy of {rec.path} (file {rec.file_id}) is damaged: md5 "
                        f"{got[0]}, expected {rec.md5}; it was removed from the cache",
                        hint="run the command again to download it afresh",
                    )
            with archived_reads(rec):
                read_any(
                    session,
                    rec,
                    lambda store, key: session.cache.download(
                        store, key, md5=md5, size=size, sync=False, name=rec.key
                    ),
                    copies=copies,
                    lost=lost,
                )
        raise UsageError(
            f"the cached copy of {rec.path} (file {rec.file_id}) keeps disappearing",
            hint="check what removes files from this host's cache, then run again",
        )

    def _open(self, rec: FileRecord) -> tuple[int, str, Path]:
        """A new temporary file beside `rec`'s target (its directory made if missing),
        open for writing, with the permission bits recorded for `rec` less the umask."""
        target = self.targets[rec.path]
        self._check(target)
        parent = str(target.parent)
        if parent not in self._made:
            try:
                os.makedirs(parent, exist_ok=True)
            except OSError as exc:
                raise UsageError(f"cannot write to {parent}: {exc.strerror}") from exc
            with self._lock:
                self._made.add(parent)
        # Derived, not drawn at random: until the rename only this thread writes it.
        tmp = os.path.join(parent, f".{target.name}.{os.getpid()}-{threading.get_ident()}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        mode = written_mode(rec.mode, self._umask)
        try:
            fd = os.open(tmp, flags, mode)  # already less the umask
        except FileExistsError:  # left by a process that died and had our pid
            fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.")
            os.fchmod(fd, mode)
        except OSError as exc:
            raise UsageError(f"cannot write {target}: {exc.strerror}") from exc
        self.wrote = True
        return fd, tmp, target

    def sync(self, *, already: Path | None) -> None:
        """Flush the destination's file system to disk, unless it is the one `already`
        flushed (one ``syncfs`` covers every file on it)."""
        if already is not None:
            with contextlib.suppress(OSError):
                if os.stat(self.dest).st_dev == os.stat(already).st_dev:
                    return
        sync_filesystem(self.dest)


def _copy_hashing(source: str, fd: int) -> tuple[str, int] | None:
    """Copy the file `source` into `fd`; its md5 and size (None: there is no `source`)."""
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    try:
        src = open(source, "rb", buffering=0)  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return None
    with src:
        while chunk := src.read(_CHUNK):
            md5.update(chunk)
            size += len(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
    return md5.hexdigest(), size


_CHUNK = 1024 * 1024
