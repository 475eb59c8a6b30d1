"""A second Ctrl-C quits at once, when the first cannot be acted on.

Python runs its SIGINT handler (which raises `KeyboardInterrupt`) in the main thread,
between bytecodes. A request to a store made in native code (obstore's calls, a hung
TLS read) holds the main thread until it answers or times out (`s3_timeout_seconds`,
retried), so the first Ctrl-C can wait that long, silently. Here a watcher thread hears
every SIGINT through the interpreter's wakeup file descriptor (written by its C-level
handler even while the main thread is busy): after the first, if the command has not
reacted within `PATIENCE` seconds, it says what is going on; at the second, it quits at
once (exit status 130). The catalog's transaction then ends with the process (rolled
back by the database); what the command had in flight in a store may stay there,
unrecorded, which `repo gc --orphans` finds.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType

__all__ = ["FORCED", "PATIENCE", "WAITING", "second_ctrl_c_quits"]

#: Seconds the command gets to react to a Ctrl-C before it is told why it has not.
PATIENCE = 2.0
WAITING = "Stopping: waiting for a request to the store to answer; Ctrl-C again quits now."
FORCED = (
    "Interrupted at once: the catalog is unchanged, but what was being written to a "
    "store may be left there; `repo gc --orphans` removes it."
)


class _Watch:
    def __init__(self, read_fd: int) -> None:
        self.read_fd = read_fd
        #: Set when the main thread ran the handler (the command is stopping).
        self.reacted = threading.Event()
        self.count = 0

    def handler(self, signum: int, frame: FrameType | None) -> None:
        self.reacted.set()
        self.count += 1
        if self.count == 1:
            raise KeyboardInterrupt
        # A later one is the watcher's to act on: the command is already stopping.

    def watch(self) -> None:
        heard = 0
        deadline: float | None = None
        while True:
            wait = None if deadline is None else max(0.0, deadline - _now())
            ready, _, _ = select.select([self.read_fd], [], [], wait)
            if not ready:  # the patience ran out
                deadline = None
                if not self.reacted.is_set():
                    _say(WAITING)
                continue
            try:
                data = os.read(self.read_fd, 64)
            except OSError:
                return
            if not data:
                return  # uninstalled: the write end is closed
            for number in data:
                if number != signal.SIGINT:
                    continue
                heard += 1
                if heard == 1:
                    deadline = _now() + PATIENCE
                else:
                    _say(FORCED)
                    os._exit(130)


def _now() -> float:
    return time.monotonic()


def _say(line: str) -> None:
    with contextlib.suppress(OSError):
        os.write(2, f"\n{line}\n".encode())


@contextlib.contextmanager
def second_ctrl_c_quits() -> Iterator[None]:
    """Within the block, Ctrl-C works as usual (`KeyboardInterrupt`), and a second one
    quits the process at once. Only in the main thread; elsewhere, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    watch = _Watch(read_fd)
    old_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    old_handler = signal.signal(signal.SIGINT, watch.handler)
    thread = threading.Thread(target=watch.watch, name="repo-ctrl-c", daemon=True)
    thread.start()
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_handler)
        signal.set_wakeup_fd(old_fd)
        os.close(write_fd)  # the watcher reads the end of the pipe and returns
        thread.join(timeout=1)
        os.close(read_fd)
