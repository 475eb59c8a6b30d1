"""How long operations report progress: a listener the caller (the CLI) may draw."""

from __future__ import annotations

from typing import Protocol

__all__ = ["ProgressListener"]


class ProgressListener(Protocol):
    """Receives progress of a long operation (the CLI draws it; it may ignore it).

    `advance` may be called from worker threads, but never concurrently: calls are
    serialised by the caller.
    """

    def begin(self, total_bytes: int, total_files: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def file_done(self) -> None: ...
