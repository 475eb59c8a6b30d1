"""Progress bars for long transfers: on stderr, only on a terminal, only once an
operation has taken more than a moment, and gone from the screen when it ends.

When to draw lives here; what the line shows and the terminal work (width at each
redraw, erasing) is `bar_line`, on rich, imported only when a bar is first drawn so that
commands that draw none never load it.

``REPO_PROGRESS_DELAY`` (seconds, default 0.5) sets how long an operation runs before
its bar appears: tests of the drawn bar set it to 0 instead of moving more bytes.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .bar_line import LiveLine

__all__ = ["DELAY_VARIABLE", "ByteBar"]

DELAY_VARIABLE = "REPO_PROGRESS_DELAY"


def _delay(default: float) -> float:
    try:
        return max(float(os.environ[DELAY_VARIABLE]), 0.0)
    except (KeyError, ValueError):
        return default


class ByteBar:
    """A progress bar on stderr for one operation; nothing at all when stderr is piped.

    Usable as a plain bytes callback (``bar(n)``) and as a `ProgressListener`. `close`
    (in a ``finally``) erases it, also when Ctrl-C ends the operation.
    """

    DELAY = 0.5
    INTERVAL = 0.1  # how often the counts go to the drawing; it redraws at this pace too

    def __init__(self, label: str, total: int | None = None, *, enabled: bool | None = None):
        self.label = label
        self.total = total
        self.files_total: int | None = None
        self.files_done = 0
        self.done = 0
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.delay = _delay(self.DELAY)
        self._start = time.monotonic()
        self._last = 0.0
        self._line: LiveLine | None = None
        self._closed = False
        # Workers' calls are serialised by the library, but `close` comes from the
        # command's own thread, maybe while a worker is starting the line.
        self._lock = threading.Lock()

    @property
    def listener(self) -> ByteBar | None:
        """What to hand the library: None when nothing will be drawn, so that thousands
        of files moved by a pool of threads are not each reported under a lock."""
        return self if self.enabled else None

    @property
    def drawn(self) -> bool:
        """Whether the line is on the screen now."""
        return self._line is not None

    def begin(self, total_bytes: int, total_files: int) -> None:
        self.total = total_bytes
        self.files_total = total_files

    def advance(self, nbytes: int) -> None:
        self.done += nbytes
        self._tick()

    def __call__(self, nbytes: int) -> None:
        self.advance(nbytes)

    def file_done(self) -> None:
        self.files_done += 1
        self._tick()

    def _tick(self) -> None:
        if not self.enabled or self._closed:
            return
        now = time.monotonic()
        if now - self._last < self.INTERVAL or now - self._start < self.delay:
            return
        self._last = now
        line = self._line or self._draw()
        if line is not None:
            line.update(self.done, self.total)

    def _draw(self) -> LiveLine | None:
        from .bar_line import LiveLine

        with self._lock:
            if not self._closed and self._line is None:
                # Kept before it starts: an interruption while starting is still erased.
                self._line = LiveLine(self, self.done, self.total)
                self._line.start()
            return self._line

    def close(self) -> None:
        """Erase the line, if one was drawn; nothing is drawn after this."""
        with self._lock:
            self._closed = True
            line, self._line = self._line, None
        if line is not None:
            line.stop()
