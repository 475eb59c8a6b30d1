"""This host's disk: the modes of what this library makes on it (only its user's,
whatever the umask, unless a set-group-ID directory shares it with a group), and the
checks of directories and files it trusts (`repo.stores.local`, the cache, staging)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

__all__ = [
    "PRIVATE_DIRECTORY",
    "PRIVATE_FILE",
    "READ_ONLY_FILE",
    "Modes",
    "directory_problem",
    "file_problem",
    "make_directories",
]

#: Directories and files this library makes on a local disk: only their user's, whatever
#: the umask (a second user of the host must not read another's copies).
PRIVATE_DIRECTORY = 0o700
PRIVATE_FILE = 0o600
READ_ONLY_FILE = 0o400


@dataclass(frozen=True, slots=True)
class Modes:
    """The modes of a directory store's directories, objects and sidecars: the owner's
    alone, but under a set-group-ID root also what the root gives its group."""

    directory: int = PRIVATE_DIRECTORY
    read_only: int = READ_ONLY_FILE
    writable: int = PRIVATE_FILE

    @classmethod
    def under(cls, root_mode: int) -> Modes:
        group = root_mode & 0o070 if root_mode & stat.S_ISGID else 0
        if not group:
            return cls()
        read = group & 0o040
        return cls(PRIVATE_DIRECTORY | stat.S_ISGID | group, 0o400 | read, 0o600 | read)


def make_directories(path: str | os.PathLike[str], mode: int = PRIVATE_DIRECTORY) -> None:
    """Make the directory `path`, and any missing parents, with exactly `mode` (not what
    the umask leaves of it); directories already there are left as they are."""
    path = os.fspath(path)
    try:
        os.mkdir(path, PRIVATE_DIRECTORY)  # never wider than `mode`, even for a moment
    except FileNotFoundError:
        parent = os.path.dirname(path)
        if not parent or parent == path:
            raise
        make_directories(parent, mode)
        make_directories(path, mode)
        return
    except FileExistsError:
        if os.path.isdir(path):
            return  # there already, or made meanwhile by another thread or process
        raise
    os.chmod(path, mode)  # exactly: the umask may have taken bits off


def directory_problem(st: os.stat_result) -> str | None:
    """What is wrong with a directory (its ``lstat``) that only we should be able to
    change; None if nothing."""
    if not stat.S_ISDIR(st.st_mode):
        return "is a symbolic link" if stat.S_ISLNK(st.st_mode) else "is not a directory"
    if st.st_uid != os.geteuid():
        return f"belongs to another user (uid {st.st_uid})"
    if st.st_mode & 0o022:
        return f"may be written by other users (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def file_problem(st: os.stat_result) -> str | None:
    """What is wrong with a file (its ``lstat``) that only we should have made."""
    if not stat.S_ISREG(st.st_mode):
        return "is a symbolic link" if stat.S_ISLNK(st.st_mode) else "is not a regular file"
    if st.st_uid != os.geteuid():
        return f"belongs to another user (uid {st.st_uid})"
    return None
