"""Progress bars as a terminal shows them: `repo` runs in a real pseudo-terminal of 60,
80 and 120 columns, and what it writes there goes through a terminal emulator (pyte), so
that what stays on the screen is checked, not the escape codes that got it there.

At every point of a transfer the bar fills at most one row (a line wider than the
terminal would wrap onto a second); at the end the screen holds the command's own lines
and nothing of the bar, also after Ctrl-C. `REPO_PROGRESS_DELAY=0` makes the bar appear
at once, and the test slows the command down while its bar is up (it stops the process
for nine tenths of the time), so a few MiB on the local disk are enough to see
the bar fill, its ETA and rate appear, and a Ctrl-C arrive mid-transfer.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyte
import pytest

import repo as repo_pkg
from conftest import write_config
from repo.cli import INTERRUPTED
from repo.cli.bars import DELAY_VARIABLE
from repo.cli.output import human_size

if TYPE_CHECKING:
    from pathlib import Path

MiB = 1024 * 1024
ROWS = 16
TIMEOUT = 60.0
WIDTHS = [60, 80, 120]
SIZE = 64 * MiB
TOTAL = r"64\.0 MiB"
PERCENT_TOTAL_ETA = rf" \d+% [\d.]+/{TOTAL} ETA \d:\d\d"
RATE = r" [\d.]+ [KMG]iB/s$"
FILES = 16

# Makes the pseudo-terminal the command's controlling terminal (Popen has made it a
# session leader), so that Ctrl-C typed there reaches it as SIGINT, as in a shell.
CONTROLLING_TTY = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)

# Anything of a bar: rich's bar glyphs, a percentage, a rate, an ETA, file counts.
BAR_TEXT = re.compile(r"[━╸╺]|\d%|ETA \d|[KMG]?i?B/s|\d+/\d+ files")


@dataclass
class Screen:
    """What one command left on a terminal of `cols` columns, and what it showed on the way."""

    cols: int
    returncode: int = -1
    states: list[list[str]] = field(default_factory=list)  # the rows after each read

    @property
    def final(self) -> list[str]:
        """The rows that hold anything, in order."""
        return [row for row in self.states[-1] if row]

    def bars(self) -> list[str]:
        """Every distinct bar row seen while the command ran."""
        seen = [row for rows in self.states for row in rows if BAR_TEXT.search(row)]
        return list(dict.fromkeys(seen))


def run_in_terminal(
    cmd: list[str],
    *,
    cols: int,
    cwd: Path,
    env: dict[str, str],
    until: str,
    interrupt: bool = False,
    narrow_to: int | None = None,
) -> Screen:
    """Run `cmd` in a new pseudo-terminal `cols` wide until it exits.

    While a bar is up and none of its rows has matched the pattern `until` yet, the
    command runs a tenth of the time, in slices of a few milliseconds (so that it is
    seen to move even where the disk is fast); then at full speed. With `interrupt`,
    Ctrl-C is typed when `until` matches; with `narrow_to`, the terminal is narrowed to
    that many columns once the bar is up.
    """
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, cols, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-c", CONTROLLING_TTY, *cmd],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=cwd,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    emulator = pyte.Screen(cols, ROWS)
    stream = pyte.ByteStream(emulator)
    seen = Screen(cols)
    slow = False  # a bar is on the screen and `until` has not matched yet
    matched = False
    deadline = time.monotonic() + TIMEOUT
    try:
        while True:
            if time.monotonic() > deadline:
                pytest.fail(f"{cmd[4:]} did not end within {TIMEOUT:.0f} s")
            ready, _, _ = select.select([master], [], [], 0.005)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every process holding the terminal has ended
                    break
                stream.feed(data)
                rows = [row.rstrip() for row in emulator.display]
                seen.states.append(rows)
                bar_rows = [row for row in rows if BAR_TEXT.search(row)]
                if not matched and any(re.search(until, row) for row in bar_rows):
                    matched = True
                    if interrupt:
                        os.write(master, b"\x03")
                slow = bool(bar_rows) and not matched
                if narrow_to is not None and bar_rows:
                    fcntl.ioctl(
                        master, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, narrow_to, 0, 0)
                    )
                    emulator.resize(ROWS, narrow_to)
                    seen.cols, narrow_to = narrow_to, None
            if slow and proc.poll() is None:
                _pause(proc.pid, 0.045)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        seen.returncode = proc.wait()
        os.close(master)
    return seen


def _pause(pgid: int, seconds: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.killpg(pgid, signal.SIGCONT)


@dataclass(frozen=True)
class Terminal:
    """`python -m repo` in a pseudo-terminal, on a local-directory store, with bars drawn
    from the start."""

    config: dict[str, str]
    config_path: Path
    cwd: Path
    env: dict[str, str]

    def __call__(self, *args: str, cols: int, until: str, **how: Any) -> Screen:
        cmd = [sys.executable, "-m", "repo", "--config", str(self.config_path), *args]
        return run_in_terminal(cmd, cols=cols, cwd=self.cwd, env=self.env, until=until, **how)


@pytest.fixture
def terminal(tmp_path: Path, embedded_config: dict[str, str]) -> Terminal:
    env = dict(os.environ)
    for name in ("REPO_CFG", "COLUMNS", "LINES"):
        env.pop(name, None)
    env.update(
        HOME=str(tmp_path / "userhome"),
        REPO_HOME=str(tmp_path / "home"),
        TERM="xterm-256color",
        **{DELAY_VARIABLE: "0"},
    )
    config_path = write_config(tmp_path / "repo_cfg.json", embedded_config)
    return Terminal(embedded_config, config_path, tmp_path, env)


def write_file(path: Path, size: int) -> Path:
    block = os.urandom(MiB)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        for start in range(0, size, MiB):
            out.write(block[: size - start])
    return path


def assert_one_row_at_most(screen: Screen) -> None:
    """At no point did the bar take more than one row (a wider line wraps onto a second)."""
    for rows in screen.states:
        assert sum(bool(BAR_TEXT.search(row)) for row in rows) <= 1, "\n".join(rows)


def assert_fits(screen: Screen) -> None:
    """The bar took one row at most, and left the last two columns free: for the "^C"
    the terminal shows when Ctrl-C is typed, which must not wrap."""
    assert_one_row_at_most(screen)
    assert all(len(row.removesuffix("^C")) <= screen.cols - 2 for row in screen.bars())


def rows_of(text: str, cols: int) -> list[str]:
    """`text` as a terminal `cols` wide shows it."""
    return [text[start : start + cols] for start in range(0, len(text), cols)]


@pytest.mark.parametrize("cols", WIDTHS)
def test_add_shows_percentage_total_eta_and_rate_then_only_its_result(
    terminal: Terminal, tmp_path: Path, cols: int
) -> None:
    write_file(tmp_path / "big.bin", SIZE)
    # The rate is the first to go when space is short: at 60 columns it has no room.
    full = PERCENT_TOTAL_ETA + (RATE if cols > 60 else "$")
    screen = terminal("add", "big.bin", cols=cols, until=full)
    assert screen.returncode == 0
    assert any(re.search(full, row) for row in screen.bars()), screen.bars()
    assert all(row.startswith("uploading ") for row in screen.bars()), screen.bars()
    assert_fits(screen)
    assert len(screen.final) == 1
    assert re.fullmatch(r"added big\.bin \(file 1, .+, unpublished\)", screen.final[0])


@pytest.mark.parametrize("cols", WIDTHS)
def test_get_shows_percentage_total_and_eta_then_only_its_result(
    terminal: Terminal, tmp_path: Path, cols: int
) -> None:
    with repo_pkg.Repo(config=terminal.config) as r:
        r.add("big.bin", str(write_file(tmp_path / "in.bin", SIZE)), publish=True)
    screen = terminal("get", "big.bin", "-o", "out.bin", cols=cols, until=PERCENT_TOTAL_ETA)
    assert screen.returncode == 0
    assert any(re.search(PERCENT_TOTAL_ETA, row) for row in screen.bars()), screen.bars()
    assert all(row.startswith("downloading ") for row in screen.bars()), screen.bars()
    assert_fits(screen)
    assert (tmp_path / "out.bin").stat().st_size == SIZE
    assert len(screen.final) == 1
    assert re.fullmatch(r"saved \S*out\.bin \(.+, file 1\)", screen.final[0])


@pytest.mark.parametrize("cols", WIDTHS)
def test_fetch_counts_files_then_leaves_only_its_summary(
    terminal: Terminal, tmp_path: Path, cols: int
) -> None:
    for n in range(FILES):
        write_file(tmp_path / "many" / f"f{n:02}.bin", SIZE // FILES)
    with repo_pkg.Repo(config=terminal.config) as r:
        r.add_tree(str(tmp_path / "many"), prefix="many/", publish=True)
    counts = PERCENT_TOTAL_ETA + rf" \d+/{FILES} files\b"
    screen = terminal("fetch", "many/*", cols=cols, until=counts)
    assert screen.returncode == 0
    assert any(re.search(counts, row) for row in screen.bars()), screen.bars()
    assert all(row.startswith("fetching ") for row in screen.bars()), screen.bars()
    assert_fits(screen)
    summary = f"{FILES} files, {human_size(SIZE)}: {FILES} downloaded, 0 already cached"
    assert screen.final == rows_of(summary, cols)


@pytest.mark.parametrize("command", ["add", "get", "fetch"])
def test_ctrl_c_erases_the_bar_before_saying_what_happened(
    terminal: Terminal, tmp_path: Path, command: str
) -> None:
    write_file(tmp_path / "big.bin", SIZE)
    if command != "add":
        with repo_pkg.Repo(config=terminal.config) as r:
            r.add("big.bin", str(tmp_path / "big.bin"), publish=True)
    args = {
        "add": ["add", "big.bin", "--as", "new.bin"],
        "get": ["get", "big.bin", "-o", "out.bin"],
        "fetch": ["fetch", "big.bin"],
    }
    # Typed once the bar has some way to go: the bar is the whole line, up to "^C".
    screen = terminal(*args[command], cols=60, until=r" [1-8]?\d% ", interrupt=True)
    assert screen.bars(), "no bar was drawn"
    assert_fits(screen)
    assert screen.final == rows_of(f"Interrupted: {INTERRUPTED}", 60)
    assert screen.returncode == 130


def test_bar_narrows_with_the_terminal(terminal: Terminal, tmp_path: Path) -> None:
    write_file(tmp_path / "big.bin", SIZE)
    fitting = r"^uploading .{30,48}$"  # fills the 58 columns the narrowed terminal leaves
    screen = terminal("add", "big.bin", cols=120, narrow_to=60, until=fitting)
    assert screen.returncode == 0
    assert screen.cols == 60
    assert_one_row_at_most(screen)
    assert len(screen.bars()[0]) == 118  # drawn at 120 columns first,
    assert any(re.search(fitting, row) for row in screen.bars())  # then redrawn to fit
    assert len(screen.final) == 1
    assert screen.final[0].startswith("added big.bin ")


def test_commands_that_draw_no_bar_never_load_the_drawing() -> None:
    check = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from repo.cli import cli\n"
        "from repo.cli.bars import ByteBar\n"
        "CliRunner().invoke(cli, ['--help'])\n"
        "bar = ByteBar('uploading', total=10, enabled=True)\n"
        "bar(10)\n"
        "bar.close()\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'rich', 'pyte'}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != DELAY_VARIABLE}
    done = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout == "[]\n"
