"""What a progress bar shows, drawn with rich: one line, fitted to the terminal's width
as it is at each redraw.

Imported only once a bar is about to be drawn (`bars.ByteBar`): rich costs tens of
milliseconds to import, which a command that finishes quickly should not pay.

rich does the terminal work: it asks the terminal for its size at every redraw, moves
the cursor back over what it drew last and erases it, and shows the cursor again on
`stop`. One thing no drawing can know: a terminal that re-wraps old lines when it is
narrowed (tmux does; xterm does not) turns a line wider than its new width into two
rows, and the upper one stays on the screen above the redrawn bar.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import TYPE_CHECKING, Protocol

from rich.console import Console
from rich.progress import Progress, Task
from rich.progress_bar import ProgressBar
from rich.table import Table

from .output import human_size

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from types import FrameType

    from rich.console import ConsoleOptions, RenderableType, RenderResult

__all__ = ["Counts", "LiveLine", "fitted"]

#: A bar narrower than this says less than the words it would push out.
MIN_BAR = 10
#: Columns left free at the end of the line: the terminal echoes Ctrl-C there as "^C",
#: and on a full line that would wrap and leave the bar behind when it is erased.
SPARE = 2
#: Redraws a second; `ByteBar` feeds the counts at about the same pace.
REFRESH_PER_SECOND = 10


class Counts(Protocol):
    """What the line reads besides the bytes rich keeps: the label and file counts."""

    label: str
    files_done: int
    files_total: int | None


class LiveLine:
    """One progress line on stderr, redrawn by rich's thread until `stop` erases it."""

    def __init__(self, counts: Counts, done: int, total: int | None) -> None:
        # rich prefers $COLUMNS to the terminal's size: an exported, stale value (the size
        # when the shell started) would draw lines that wrap after a resize.
        environ = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        console = Console(stderr=True, _environ=environ)
        self._progress = _OneLine(counts, console)
        self._task = self._progress.add_task(counts.label, total=total or None, completed=done)

    def start(self) -> None:
        """Draw the line; from now on rich's thread redraws it (and `stop` must be called)."""
        with _whole_writes():
            self._progress.start()

    def update(self, done: int, total: int | None) -> None:
        self._progress.update(self._task, completed=done, total=total or None)

    def stop(self) -> None:
        """Erase the line and leave the cursor at its start (rich's `transient`)."""
        with _whole_writes():
            self._progress.stop()


@contextlib.contextmanager
def _whole_writes() -> Iterator[None]:
    """Hold Ctrl-C back while the command's own thread writes the line.

    A write cut short stays in rich's buffer and comes out again after the line has been
    erased, leaving a bar on the screen above "Interrupted". (rich's thread, which does
    the redrawing, is never interrupted: Python raises KeyboardInterrupt in the main
    thread only.)
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[FrameType | None] = []
    previous = signal.signal(signal.SIGINT, lambda _signum, frame: caught.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught and callable(previous):
        previous(signal.SIGINT, caught[0])  # Python's own raises KeyboardInterrupt
    elif caught and previous == signal.SIG_DFL:
        raise KeyboardInterrupt


class _OneLine(Progress):
    def __init__(self, counts: Counts, console: Console) -> None:
        super().__init__(
            console=console,
            transient=True,
            # The command's own output (`repo cat` writes sys.stdout.buffer) must not go
            # through rich's proxies.
            redirect_stdout=False,
            redirect_stderr=False,
            refresh_per_second=REFRESH_PER_SECOND,
        )
        self._counts = counts

    def get_renderables(self) -> Iterable[RenderableType]:
        for task in self.tasks:
            yield _Line(self._counts, task)


class _Line:
    def __init__(self, counts: Counts, task: Task) -> None:
        self._counts = counts
        self._task = task

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        task, counts = self._task, self._counts
        words, extras = _words(task, counts.files_done, counts.files_total)
        shown, bar_width = fitted(options.max_width - SPARE, counts.label, words, extras)
        grid = Table.grid(padding=(0, 1))
        cells: list[RenderableType] = [counts.label]
        if bar_width:
            pulse = task.total is None
            bar = ProgressBar(
                total=task.total,
                completed=task.completed,
                width=bar_width,
                pulse=pulse,
                animation_time=task.get_time() if pulse else None,
            )
            cells.append(bar)
        cells.extend(shown)
        for _ in cells:
            grid.add_column(no_wrap=True)
        grid.add_row(*cells)
        yield grid


def fitted(width: int, label: str, words: list[str], extras: list[str]) -> tuple[list[str], int]:
    """What fits in `width` after `label`: the words shown, and the bar's width (0: none).

    Each list comes most important first. `extras` go, last first, before the bar gets
    narrower than `MIN_BAR`; then the bar goes before any of `words`; then `words` go,
    last first, until they fit. (rich crops a label wider than the terminal.)
    """
    shown = [*words, *extras]
    while True:
        used = len(label) + sum(len(word) + 1 for word in shown)
        room = width - used - 1  # the bar and its space
        if room >= MIN_BAR:
            return shown, room
        if len(shown) > len(words):
            shown.pop()
            continue
        while shown and used > width:
            used -= len(shown.pop()) + 1
        return shown, 0


def _words(task: Task, files_done: int, files_total: int | None) -> tuple[list[str], list[str]]:
    """The words beside the bar, most important first: the percentage, bytes (of the
    total), time left and file counts; and as an extra, the rate. In the line they read
    in that order too."""
    done = int(task.completed)
    words: list[str] = []
    if task.total:
        words.append(f"{min(done / task.total, 1.0):.0%}".rjust(4))
        words.append(_of(done, int(task.total)))
        left = task.time_remaining  # unknown until two samples: keep its place
        words.append("ETA -:--" if left is None else f"ETA {_clock(int(left))}")
    else:
        words.append(human_size(done))
    if files_total is not None:
        words.append(f"{files_done}/{files_total} files")
    speed = task.speed
    return words, [f"{human_size(int(speed))}/s"] if speed else []


def _of(done: int, total: int) -> str:
    """``90.0/200.0 MiB``; the unit is written once when both sizes share it."""
    shown_done, shown_total = human_size(done), human_size(total)
    done_number, _, done_unit = shown_done.partition(" ")
    if done_unit == shown_total.partition(" ")[2]:
        return f"{done_number}/{shown_total}"
    return f"{shown_done}/{shown_total}"


def _clock(seconds: int) -> str:
    """``0:07``, ``12:30``, ``1:02:03``: minutes and seconds, hours once there are any."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"
