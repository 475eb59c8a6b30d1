"""How long operations report progress: a listener the caller (the CLI) may draw."""

from __future__ import annotations

import threading
from typing import Protocol

__all__ = ["ProgressListener", "Tally"]


class ProgressListener(Protocol):
    """Receives progress of a long operation (the CLI draws it; it may ignore it).

    `advance` may be called from worker threads, but never concurrently: calls are
    serialised by the caller.
    """

    def begin(self, total_bytes: int, total_files: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def file_done(self) -> None: ...


class Tally:
    """An operation's progress told to a listener (or to none) from worker threads, its
    calls serialised as `ProgressListener` requires; totals may grow as work is found."""

    def __init__(self, listener: ProgressListener | None) -> None:
        self.listener = listener
        self.files = 0
        self.bytes = 0
        self._lock = threading.Lock()

    def grow(self, files: int, nbytes: int) -> None:
        """`files` more files of `nbytes` bytes to do."""
        if self.listener is not None and files:
            self.files += files
            self.bytes += nbytes
            with self._lock:
                self.listener.begin(self.bytes, self.files)

    def moved(self, nbytes: int) -> None:
        if self.listener is not None and nbytes > 0:
            with self._lock:
                self.listener.advance(nbytes)

    def file_done(self, unreported: int = 0) -> None:
        """One file done, `unreported` of its bytes not told on the way (told now)."""
        if self.listener is not None:
            self.moved(unreported)
            with self._lock:
                self.listener.file_done()
