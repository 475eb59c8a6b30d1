"""This host's staging area: private, writable copies of versions not yet uploaded.

Layout under ``local_root``::

    staging/<version token>/<file name>   a new version being written
    staging/.incoming-<token>             content being taken in (a stream, a tree's file)

A staging copy is the only copy of its bytes until its upload is verified; then it moves
into the verified cache (`LocalCache.adopt`) or is discarded. The staging directory is
this user's alone (0700, whatever the umask), like the rest of ``local_root``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from .errors import LocalDiskError, UntrustedDataError, local_disk_error
from .paths import TOKEN_LENGTH, is_token
from .stores.local import directory_problem, make_directories

__all__ = ["INCOMING_PREFIX", "StagingArea"]

#: Names of files being taken in, directly in the staging directory.
INCOMING_PREFIX = ".incoming-"


class StagingArea:
    """The staging directory of one host."""

    def __init__(self, root: Path) -> None:
        self.directory = Path(root) / "staging"

    def path_of(self, key: str) -> Path:
        """Where the staging copy of the version stored at `key` is written.

        Named by the key's version token only once it is one (a key read from the
        catalog must never name a place outside the staging directory).
        """
        token = key[-TOKEN_LENGTH:]
        name = key.rsplit("/", 1)[-1][: -(TOKEN_LENGTH + 1)] or "file"
        if not is_token(token) or key[-TOKEN_LENGTH - 1 : -TOKEN_LENGTH] != "~":
            raise UntrustedDataError(f"object key {key[:120]!r} does not end in a version token")
        if name in (".", "..") or "/" in name:
            name = "file"
        return self.directory / token / name

    def incoming(self, token: str) -> Path:
        """A file directly in the staging directory, for content being taken in."""
        return self.directory / f"{INCOMING_PREFIX}{token}"

    def prepare(self) -> Path:
        """Create the staging directory (private); a `LocalDiskError` if it cannot be,
        or if it is not ours alone (a link, another user's, writable by others)."""
        try:
            make_directories(self.directory)
            problem = directory_problem(os.lstat(self.directory))
        except OSError as exc:
            raise local_disk_error(exc, f"writing to the staging area at {self.directory}") from exc
        if problem:
            raise LocalDiskError(
                f"staging directory {self.directory} {problem}: not used",
                hint="use a 'local_root' of your own that no one else may write",
            )
        return self.directory

    def entries(self) -> list[tuple[str, Path, float]]:
        """(version token, directory, modification time) of every staging copy."""
        out: list[tuple[str, Path, float]] = []
        if not self.directory.is_dir():
            return out
        for child in self.directory.iterdir():
            with contextlib.suppress(FileNotFoundError):
                out.append((child.name, child, child.stat().st_mtime))
        return out

    def remove(self, entry: Path) -> None:
        """Remove a staging directory (or a half-taken-in ``.incoming-`` file)."""
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()

    def discard(self, copy: Path) -> None:
        """Remove one staging copy, and its version's directory once empty."""
        with contextlib.suppress(OSError):
            copy.unlink()
        self.release(copy)

    def release(self, copy: Path) -> None:
        """Remove the version directory of a copy that has left it, once empty."""
        if copy.parent == self.directory:
            return  # an incoming file: the staging directory itself stays
        with contextlib.suppress(OSError):
            copy.parent.rmdir()
