"""Starting the disk write of a file's pages early, so that its final fsync finds little left.

A large download is written into the page cache range by range and fsynced once at the
end (`RepoFile.save_as`: the file is renamed into place only once it is on disk). Left
to itself, the kernel writes those pages out late, and the fsync then waits for the
whole file: about 1 s per GiB here, after the last byte has arrived. Linux's
``sync_file_range(SYNC_FILE_RANGE_WRITE)`` asks for a range to be written out now,
without waiting and without dropping it from the page cache (a reader of the file
right after still reads memory), so the writing overlaps the download.

Python's `os` does not offer the call; it is taken from the C library through `ctypes`.
Elsewhere (or if the call fails) nothing is started, and the fsync does all the work, as
before: this only moves when the disk is written, never whether.
"""

from __future__ import annotations

import sys
from functools import cache
from typing import Any

__all__ = ["start_writeback"]

#: From <fcntl.h>: start writing the range's dirty pages, do not wait for them.
SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing bytes [offset, offset + length) of `fd` to disk."""
    call = _sync_file_range()
    if call is not None and length > 0:
        call(fd, offset, length, SYNC_FILE_RANGE_WRITE)  # a failure only means: later


@cache
def _sync_file_range() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    call.restype = ctypes.c_int
    return call
