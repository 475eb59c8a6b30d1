"""Where a version copied out of the repository is written (`RepoFile.save_as`).

As with `cp`: an existing directory, or a name ending in "/", means "into that
directory" (made if missing), under the version's file name; anything else names the
file. A directory of another user's (not root's) is never written into: one created in
a shared place under the name asked for would receive the file.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from .errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["is_stream", "output_file", "write_in_place"]


def output_file(dest: str | os.PathLike[str], name: str, *, exact: bool = False) -> Path:
    """The file to write for `dest`; with `exact`, `dest` itself (never a directory)."""
    target = Path(dest)
    if not exact and str(dest).endswith(("/", os.sep)) and not target.exists():
        try:
            target.mkdir(parents=True)
        except OSError as exc:
            raise UsageError(
                f"cannot make the directory {target}: {exc.strerror}",
                hint="check the path, or name a file to write",
            ) from exc
    if target.is_dir() and not exact:
        owner = target.stat().st_uid
        if owner not in (os.geteuid(), 0):
            raise UsageError(
                f"{target} is a directory of another user's (uid {owner}); not writing into it",
                hint="name a file or a directory of your own",
            )
        target = target / name
    if target.is_dir():
        raise UsageError(f"{target} is a directory", hint="choose another destination")
    return target


def is_stream(target: Path, *, exact: bool = False) -> bool:
    """Whether `target` exists and is no regular file but something to write into, as
    `cp` does: a character device (``/dev/null``, a terminal) or a FIFO. A file is never
    renamed over one (as root, that would replace ``/dev/null`` itself). With `exact` (a
    place inside a directory `fetch -o` fills) nothing but a regular file is taken; a
    block device or a socket never is."""
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror}") from exc
    if stat.S_ISREG(mode):
        return False
    if not exact and (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
        return True
    raise UsageError(
        f"{target} exists and is not a regular file; not replacing it",
        hint="choose another destination",
    )


def write_in_place(
    target: Path, fill: Callable[[BinaryIO], object], *, mode: int, sync: bool = True
) -> None:
    """Write `target` through a temporary file beside it that `fill` writes, made `mode`
    (exactly) and fsynced unless not `sync`, then renamed over `target`: `target` is
    either untouched or complete."""
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    except OSError as exc:
        raise UsageError(
            f"cannot write {target}: {exc.strerror}",
            hint="check that its directory exists and is writable (a trailing / makes one)",
        ) from exc
    try:
        with os.fdopen(fd, "wb") as out:
            fill(out)
            out.flush()
            if sync:
                os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
