"""This host's verified cache: read-only copies of versions, under ``local_root/cache/``
at their object key (staging copies being written are `staging`'s).

A cached file only ever appears under its final name complete and verified: downloads
go to a temporary file in the same directory, are hashed while streaming, and are
renamed into place (``os.replace``) only when md5 and size match. A cached file is
immutable like the object it copies, so a hit needs no hashing and no catalog access;
its size is checked as a cheap guard against truncation.

Eviction is least recently used first, by modification time (bumped on every hit), and
only ever removes a name: a reader that has the file open keeps reading it (POSIX).

Everything here is this user's alone (directories 0700, copies 0400, whatever the umask),
and nothing here is taken on trust: every directory from ``local_root`` down to a copy
must be a real directory of ours that nobody else may write (checked with ``lstat``, once
per directory and process: nobody else can change it afterwards), and a hit must be a
regular file of ours. A symbolic link or another user's file is refused
(`UntrustedDataError`), never followed, served or written through.

Temporary files (``.part-*``) hold an exclusive ``flock`` for as long as their writer
needs them, so a process killed mid-download leaves one that nobody holds.
`remove_partials` removes such leftovers once they are also older than a grace period
(by modification time, which every write moves on): a download in progress in any
process keeps its file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import stat
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import LocalDiskError, UntrustedDataError, local_disk_error
from .integrity import check_download
from .paths import TOKEN_LENGTH, safe_join, token_time
from .stores.base import Tee
from .stores.local import (
    READ_ONLY_FILE,
    directory_problem,
    file_problem,
    make_directories,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from .stores.base import Progress, Store, Writable

__all__ = ["CachedFile", "LocalCache", "own_directory"]

logger = logging.getLogger(__name__)

#: How long the in-memory count of cached bytes is trusted before a re-count.
TALLY_SECONDS = 30.0
#: Names of temporary files in the cache (downloads in progress, or cut off).
PARTIAL_PREFIX = ".part-"
#: Downloads up to this size are taken into memory and verified before their copy is
#: written (`LocalCache._download_small`).
SMALL_DOWNLOAD_MAX = 1024 * 1024
#: How fresh a cached copy's "last used" time (its mtime) must be for a read not to
#: refresh it: eviction is least recently used first, to within this.
USED_RESOLUTION_SECONDS = 60.0
#: What a refusal of ``local_root`` or one of its own directories tells the user.
OWN_HINT = (
    "this host's copies must be in directories of yours that no one else may write: "
    "`chmod go-w` it if it is yours, or use another 'local_root' (docs/security.md)"
)
#: What a refusal of something found in the cache tells the user.
PLANTED_HINT = (
    "something other than you put it in this host's cache: remove it, and check who may "
    "write to 'local_root' (docs/security.md)"
)


def _load_syncfs() -> Callable[[int], int] | None:
    """Linux's syncfs(2) (one file system), where the C library has it; else None."""
    import ctypes  # loaded on the first batch download, not by every command

    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


_SYNCFS: list[Callable[[int], int] | None] = []


def sync_filesystem(path: str | os.PathLike[str]) -> None:
    """Flush the file system holding `path` to disk: one ``syncfs`` for a batch of files
    written without an fsync each (``sync`` where the C library lacks it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        if not _SYNCFS:
            _SYNCFS.append(_load_syncfs())
        syncfs = _SYNCFS[0]
        if syncfs is None or syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class CachedFile:
    """A verified copy in the cache; `last_access` is its modification time."""

    key: str
    size: int
    last_access: float
    path: Path


class LocalCache:
    """The verified cache of one host."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.cache_dir = self.root / "cache"
        self._tally: int | None = None  # bytes in the cache, as last counted plus since
        self._tally_at = 0.0
        self._cache_top = os.path.abspath(self.cache_dir)
        self._cache_root = self._cache_top + os.sep
        #: Directories found to be ours alone (see the module's docstring).
        self._trusted: set[str] = set()

    def cache_path(self, key: str) -> Path:
        return Path(self.cache_file(key))

    def cache_file(self, key: str) -> str:
        """`cache_path` as a string, cheaply: a key made of plain segments (as every key
        this library makes) is appended to the cache directory; anything else (dot
        segments, empty segments, absolute) goes through the full check, which refuses
        keys that would escape the cache."""
        if _plain(key):
            return self._cache_root + key
        return safe_join(self.cache_dir, key)

    def use(self, key: str, size: int | None) -> tuple[str | None, bool]:
        """The cached copy of `key` if present and of the expected size (else None), and
        whether this read moved the copy's "last read" time on (it does when that was
        more than `USED_RESOLUTION_SECONDS` ago): only then is the read news for the
        catalog's bookkeeping."""
        path = self.cache_file(key)
        try:
            if not self.trusted(os.path.dirname(path), create=False):
                return None, False
            st = os.lstat(path)
        except FileNotFoundError:
            return None, False
        if problem := file_problem(st):
            raise UntrustedDataError(f"cached copy {path} {problem}: not used", hint=PLANTED_HINT)
        if size is not None and st.st_size != size:
            # Truncated or damaged: never serve it; the next download replaces it.
            with contextlib.suppress(OSError):
                os.unlink(path)
            return None, False
        # The modification time is the cache's "last used" (for eviction): one cheap
        # system call, no catalog write; skipped while it is recent anyway, so a batch
        # of warm reads writes no metadata.
        if time.time() - st.st_mtime <= USED_RESOLUTION_SECONDS:
            return path, False
        with contextlib.suppress(OSError):
            os.utime(path)
        return path, True

    def trusted(self, directory: str, *, create: bool) -> bool:
        """Is `directory` (the cache directory or one below it) there, with every
        directory from ``local_root`` down to it ours alone? Missing ones are made if
        `create`, else the answer is False. Anything else raises `UntrustedDataError`
        (`LocalDiskError` for ``local_root`` itself)."""
        if directory in self._trusted:
            return True
        if directory == self._cache_top:
            above = own_directory(
                os.path.abspath(self.root), "local_root", create=create, follow=True
            )
        elif directory.startswith(self._cache_root):
            above = self.trusted(os.path.dirname(directory), create=create)
        else:
            raise UntrustedDataError(f"{directory} is outside the cache {self._cache_top}")
        if not above:
            return False
        try:
            st = os.lstat(directory)
        except FileNotFoundError:
            if not create:
                return False
            make_directories(directory)
            st = os.lstat(directory)
        if problem := directory_problem(st):
            raise UntrustedDataError(
                f"cache directory {directory} {problem}: not used", hint=PLANTED_HINT
            )
        self._trusted.add(directory)
        return True

    def _directory_for(self, final: str, *, again: bool = False) -> str:
        """The trusted directory of the cached copy `final`, made if missing; with
        `again`, checked afresh (it was removed since it was checked)."""
        if again:
            self._trusted.clear()
        directory = os.path.dirname(final)
        self.trusted(directory, create=True)
        return directory

    def evict(self, key: str) -> bool:
        """Remove the cached copy of `key` (open readers keep theirs); True if it was there."""
        path = self.cache_file(key)
        try:
            if not self.trusted(os.path.dirname(path), create=False):
                return False
            os.unlink(path)  # a name only: a link is removed, not followed
        except FileNotFoundError:
            return False
        return True

    def entries(self) -> list[CachedFile]:
        """Every verified copy in the cache (downloads in progress are not listed, nor
        anything that is not a file of ours: see `use`)."""
        out: list[CachedFile] = []
        base = self._cache_top
        if not self.trusted(base, create=False):
            return out
        # os.walk never descends into a linked directory; a linked file is left out below.
        for root, _dirs, names in os.walk(base):
            for name in names:
                if token_time(name) is None:
                    continue  # a download in progress (".part-...") or a stranger
                path = os.path.join(root, name)
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue
                if problem := file_problem(st):
                    logger.warning("left alone in the cache: %s %s", path, problem)
                    continue
                key = os.path.relpath(path, base).replace(os.sep, "/")
                out.append(CachedFile(key, st.st_size, st.st_mtime, Path(path)))
        return out

    def usage(self) -> tuple[int, int]:
        """(files, bytes) held in the cache."""
        entries = self.entries()
        self._tally, self._tally_at = sum(e.size for e in entries), time.monotonic()
        return len(entries), self._tally

    def make_room(self, size: int, limit: int | None) -> list[CachedFile]:
        """Evict least recently used copies until `size` more bytes fit under `limit`.

        The running total is kept in memory and re-counted from disk when it is stale
        (other processes share the cache) or when eviction looks necessary, so most
        downloads cost no directory walk. Returns what was evicted.
        """
        if limit is None:
            return []
        stale = self._tally is None or time.monotonic() - self._tally_at > TALLY_SECONDS
        if not stale and self._tally is not None and self._tally + size <= limit:
            self._tally += size
            return []
        evicted = self.evict_to(limit - size)
        if self._tally is not None:
            self._tally += size
        return evicted

    def evict_to(self, budget: int) -> list[CachedFile]:
        """Evict least recently used copies until at most `budget` bytes remain."""
        entries = sorted(self.entries(), key=lambda e: (e.last_access, e.key))
        total = sum(e.size for e in entries)
        evicted = []
        for entry in entries:
            if total <= max(budget, 0):
                break
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)  # readers with the file open keep reading it
            total -= entry.size
            evicted.append(entry)
        if evicted:
            logger.info(
                "evicted %d cached files (%d bytes)", len(evicted), sum(e.size for e in evicted)
            )
        self._tally, self._tally_at = total, time.monotonic()
        return evicted

    def clear(self) -> list[CachedFile]:
        """Evict every cached copy."""
        return self.evict_to(0)

    def remove_partials(self, older_than: float, *, dry_run: bool = False) -> int:
        """Remove temporary files last written before `older_than` (a timestamp) that no
        live process holds; returns how many were (or, in a dry run, would be) removed."""
        removed = 0
        if not self.trusted(self._cache_top, create=False):
            return 0
        for root, _dirs, names in os.walk(self._cache_top):
            for name in names:
                if not name.startswith(PARTIAL_PREFIX):
                    continue
                path = os.path.join(root, name)
                try:
                    if os.lstat(path).st_mtime >= older_than:
                        continue
                except FileNotFoundError:
                    continue
                if _remove_unheld(path, dry_run):
                    removed += 1
        if removed:
            logger.info("removed %d abandoned partial downloads from the cache", removed)
        return removed

    def download(
        self,
        store: Store,
        key: str,
        *,
        md5: str,
        size: int,
        progress: Progress | None = None,
        sync: bool = True,
        tee: Writable | None = None,
        name: str | None = None,
    ) -> Path:
        """Fetch `key` into the cache, verified; nothing is left behind on failure.

        With `sync` the copy is on disk before it takes its final name. A batch of
        downloads passes ``sync=False`` and calls `sync_to_disk` once at the end instead
        (an fsync costs milliseconds, many times a small file's whole download): a crash
        of the process loses nothing either way, and after a power cut a copy whose data
        never reached the disk shows up short or empty, which `use` refuses.

        With `tee`, every piece is also written there as it arrives (one pass for a
        reader that wants the bytes now): `tee` has seen bad bytes if this raises.

        `name`: the key the copy is cached under, when `key` is the version's copy in
        another store (a read that failed over); by default `key`.
        """
        name = key if name is None else name
        if tee is None and size <= SMALL_DOWNLOAD_MAX:
            self._download_small(
                store, key, md5=md5, size=size, progress=progress, sync=sync, name=name
            )
            return Path(self.cache_file(name))
        final = self.cache_file(name)
        try:
            try:
                fd, tmp = _held_temp(self._directory_for(final))
            except FileNotFoundError:
                fd, tmp = _held_temp(self._directory_for(final, again=True))
        except OSError as exc:
            raise local_disk_error(exc, f"writing to the local cache at {self.cache_dir}") from exc
        # The lock lives on the open file description; a duplicate keeps it until the
        # file has its final name (the writer's descriptor is closed before that).
        hold = os.dup(fd)
        try:
            with os.fdopen(fd, "wb") as out:
                got = store.get_into(key, out if tee is None else Tee(out, tee), progress=progress)
                check_download(key, got.md5, got.size, md5=md5, size=size)
                out.flush()
                if sync:
                    os.fsync(out.fileno())
                os.fchmod(out.fileno(), READ_ONLY_FILE)
            os.replace(tmp, final)  # over a planted link at `final`, never through it
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        finally:
            os.close(hold)
        return Path(final)

    def store_bytes(self, key: str, data: bytes) -> str:
        """Put a just-uploaded (and so verified) small version's bytes in the cache
        (as `adopt`, which does not sync either). Plain system calls: this runs once per
        file of a tree being added."""
        return self._write_new(self.cache_file(key), data, sync=False)

    def download_small(
        self,
        store: Store,
        key: str,
        *,
        md5: str,
        size: int,
        progress: Progress | None = None,
        sync: bool = True,
        name: str | None = None,
    ) -> bytes:
        """`download` of a version of at most `SMALL_DOWNLOAD_MAX` bytes, returning its
        verified bytes as well: a caller that also writes them elsewhere (`fetch -o`)
        need not read the copy back."""
        if size > SMALL_DOWNLOAD_MAX:
            raise ValueError(f"{size} bytes is no small download")
        return self._download_small(
            store, key, md5=md5, size=size, progress=progress, sync=sync, name=name or key
        )

    def _download_small(
        self,
        store: Store,
        key: str,
        *,
        md5: str,
        size: int,
        progress: Progress | None,
        sync: bool,
        name: str,
    ) -> bytes:
        """`download` of a small version: taken into memory, verified there, then
        written in one go (`_write_new`): a third of the system calls of a download
        through a temporary file, which counts when a fetch brings thousands."""
        buffer = _Bounded(size)
        got = store.get_into(key, buffer, progress=progress)
        check_download(key, got.md5, got.size, md5=md5, size=size)
        data = buffer.value()
        self._write_new(self.cache_file(name), data, sync=sync)
        return data

    def _write_new(self, final: str, data: bytes, *, sync: bool) -> str:
        """Write verified `data` as the cached copy `final`: under a temporary name,
        created read-only and held under ``flock`` until it is renamed into place."""
        name = os.path.basename(final)
        parent = self._directory_for(final)
        # The temporary name is derived, not drawn at random: this process and thread
        # are the only writers of this key's copy here until it is renamed.
        tmp = os.path.join(
            parent,
            f"{PARTIAL_PREFIX}{name[-TOKEN_LENGTH:]}-{_pid}-{threading.get_ident()}",
        )
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(tmp, flags, READ_ONLY_FILE)
        except FileNotFoundError:
            self._directory_for(final, again=True)  # removed since it was checked
            fd = os.open(tmp, flags, READ_ONLY_FILE)
        except FileExistsError:
            # Left by a process that died mid-write and had our pid (a container's,
            # after a restart) or by a namesake in another pid namespace: not ours to
            # remove (`remove_partials` does, once no process holds it).
            fd, tmp = _held_temp(parent)
            os.fchmod(fd, READ_ONLY_FILE)
        try:
            try:
                # Held until renamed, so `remove_partials` leaves it alone (the file is
                # written in microseconds: its age already protects it but with a grace of 0).
                fcntl.flock(fd, fcntl.LOCK_EX)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if sync:
                    os.fsync(fd)
                os.replace(tmp, final)
            finally:
                os.close(fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return final

    def sync_to_disk(self) -> None:
        """Flush the cache's file system to disk (after downloads made with ``sync=False``)."""
        sync_filesystem(self.cache_dir)

    def adopt(self, source: Path, key: str) -> Path:
        """Move a just-uploaded (and so verified) staging copy into the cache (the
        caller releases its staging directory)."""
        final = self.cache_file(key)
        self._directory_for(final)
        os.chmod(source, READ_ONLY_FILE)
        os.replace(source, final)
        return Path(final)


def own_directory(path: str, what: str, *, create: bool, follow: bool = False) -> bool:
    """Is `path` a directory only we may change? Made (private) if missing and `create`;
    False if missing otherwise; a one-line `LocalDiskError` naming `what` if it is not
    ours alone. A symbolic link is refused, except with `follow` (``local_root`` itself, a
    path the user chose): then the link must be ours or the system's, and its target is
    judged."""
    try:
        st = os.lstat(path)
        if follow and stat.S_ISLNK(st.st_mode) and st.st_uid in (os.geteuid(), 0):
            st = os.stat(path)
    except FileNotFoundError:
        if not create:
            return False
        try:
            make_directories(path)
            st = os.lstat(path)
        except OSError as exc:
            raise local_disk_error(exc, f"making {what} {path}") from exc
    if problem := directory_problem(st):
        raise LocalDiskError(f"{what} {path} {problem}: not used", hint=OWN_HINT)
    return True


def _plain(key: str) -> bool:
    """True if `key` is relative and every segment of it is a plain name (not empty, not
    starting with a dot), so that appending it to a directory needs no normalising."""
    return (
        bool(key)
        and key[0] != "/"
        and key[-1] != "/"
        and "//" not in key
        and "/." not in key
        and key[0] != "."
        and "\0" not in key
    )


#: This process's id, asked once (and again in a forked child), not once per file.
_pid = os.getpid()


def _note_pid() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_note_pid)


class _Bounded:
    """Collects a small download in memory, up to `limit` bytes: anything past that is
    counted by the caller's hashing but not kept (its size then fails verification)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept = 0
        self.pieces: list[bytes] = []

    def write(self, data: bytes | memoryview, /) -> int:
        n = len(data)
        if self.kept + n <= self.limit:
            self.pieces.append(bytes(data))
            self.kept += n
        else:
            self.kept = self.limit + 1  # keep nothing more
        return n

    def value(self) -> bytes:
        return self.pieces[0] if len(self.pieces) == 1 else b"".join(self.pieces)


def _held_temp(directory: str) -> tuple[int, str]:
    """A new ``.part-`` file in `directory`, open and under an exclusive ``flock``.

    `remove_partials` may have removed the name between its creation and the lock (with
    a grace of 0): then the file is made again.
    """
    for _attempt in range(5):
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=PARTIAL_PREFIX)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.path.samestat(os.fstat(fd), os.stat(tmp)):
                return fd, tmp
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise OSError(errno.EAGAIN, "temporary files keep disappearing", str(directory))


def _remove_unheld(path: str, dry_run: bool) -> bool:
    """Remove a temporary file unless a live process holds its lock; True if removed
    (or, in a dry run, removable)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False  # gone already, or not ours to open
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a download in progress
        # Still under that name? (It may have been finished and renamed meanwhile.)
        try:
            if not os.path.samestat(os.fstat(fd), os.lstat(path)):
                return False
        except FileNotFoundError:
            return False
        if not dry_run:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        return True
    finally:
        os.close(fd)
