"""The file objects ``repo://`` opens (src/repo/fs.py): a verified cached copy to read,
and a new version being written, published only when its writing ended well."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["CachedCopy", "VersionWriter"]


class CachedCopy(io.BufferedReader):
    """A verified cached copy open for reading. Readers that leave closing it to the
    garbage collector (pyarrow does) close it quietly, as fsspec's own files do."""

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


class VersionWriter(io.RawIOBase):
    """A file being written as a new version, spooled into the private file `spool`
    (open as `fd`); `publish` makes a version of the spool (and may remove it).

        `close()` publishes it (when the filesystem commits automatically; in an fsspec
        transaction, `commit()` does), unless an exception that was not already being
        handled when the file was opened is on its way out: a write cut short by an error
        (pandas and pyarrow close their files in ``finally``) publishes nothing. Leaving a
        ``with`` block by an exception, `discard()`, or dropping the file unclosed also
        publish nothing.
    """

    def __init__(
        self, fd: int, spool: Path, publish: Callable[[Path], None], *, autocommit: bool = True
    ) -> None:
        super().__init__()
        self.autocommit = autocommit
        self._spool_path = spool
        self._publish = publish
        self._out: io.BufferedWriter | None = os.fdopen(fd, "wb")
        self._handled_at_open = sys.exc_info()[1]

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self._out is None:
            raise ValueError("write to a closed file")
        return self._out.write(data)

    def tell(self) -> int:
        return self._out.tell() if self._out is not None else 0

    def flush(self) -> None:
        if self._out is not None and not self._out.closed:
            self._out.flush()

    def _finish_spool(self) -> None:
        if self._out is not None:
            out, self._out = self._out, None
            out.close()

    def close(self) -> None:
        if self.closed:
            return
        failing = sys.exc_info()[1]
        try:
            if failing is not None and failing is not self._handled_at_open:
                self.discard()
            elif self.autocommit:
                self.commit()
            else:
                self._finish_spool()  # the transaction commits or discards it
        finally:
            super().close()

    def commit(self) -> None:
        """Publish what was written as a new current version."""
        self._finish_spool()
        try:
            self._publish(self._spool_path)
        finally:
            self._spool_path.unlink(missing_ok=True)

    def discard(self) -> None:
        """Drop what was written; nothing is recorded."""
        self._finish_spool()
        self._spool_path.unlink(missing_ok=True)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.discard()
            super().close()
        else:
            self.close()

    def __del__(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self.discard()
                io.RawIOBase.close(self)
