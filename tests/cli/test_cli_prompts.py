"""Questions and prompts as a person at a terminal meets them: in a real pseudo-terminal,
answered by typing. (Off a terminal, the same commands refuse and say to pass --yes:
tests/cli/test_cli_admin.py, test_cli_naming.py, test_cli_erase.py.)"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

TIMEOUT = 60.0


class Terminal:
    """`python -m repo ARGV` with a pseudo-terminal as its stdin, stdout and stderr."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "repo", *argv],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        os.close(slave)
        self.seen = b""

    def wait_for(self, text: str) -> None:
        """Read until `text` is on the screen (fails after TIMEOUT)."""
        deadline = time.monotonic() + TIMEOUT
        while text.encode() not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"never saw {text!r}; saw {self.seen!r}"
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                self.seen += self._read()

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def finish(self) -> tuple[int, str]:
        """The exit status and everything the terminal showed, with \\r\\n as \\n."""
        status = self.proc.wait(timeout=TIMEOUT)
        while True:
            chunk = self._read()
            if not chunk:
                break
            self.seen += chunk
        os.close(self.master)
        return status, self.seen.decode().replace("\r\n", "\n")

    def _read(self) -> bytes:
        try:
            return os.read(self.master, 65536)
        except OSError:  # EIO: the other side is closed
            return b""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPO_")}
    env.update(REPO_HOME=str(tmp_path / "home"), HOME=str(tmp_path), REPO_HOST_NAME="h1")
    return env


def run(env: dict[str, str], cwd: Path, *argv: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "repo", *argv],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, (argv, done.stderr)
    return done.stdout


def test_add_from_a_terminal_says_it_waits_for_input(env: dict[str, str], tmp_path: Path) -> None:
    term = Terminal(["add", "-", "--as", "notes/typed.txt", "--publish"], env, tmp_path)
    term.wait_for("reading standard input (end it with Ctrl-D)")
    term.type("typed by hand\n")
    term.type("\x04")  # Ctrl-D: the end of input
    status, screen = term.finish()
    assert status == 0, screen
    assert screen.splitlines() == [
        "reading standard input (end it with Ctrl-D)",
        "typed by hand",  # the terminal's echo
        "added notes/typed.txt (file 1, 14 B, published)",
    ]
    assert run(env, tmp_path, "cat", "notes/typed.txt") == "typed by hand\n"


@pytest.mark.parametrize(("answer", "status"), [("n", 1), ("", 1), ("y", 0)])
def test_cache_clear_asks_and_takes_the_answer_typed(
    env: dict[str, str], tmp_path: Path, answer: str, status: int
) -> None:
    (tmp_path / "f.txt").write_text("content\n")
    run(env, tmp_path, "add", "f.txt", "--publish", "--cache")
    term = Terminal(["cache", "clear"], env, tmp_path)
    term.wait_for("[y/N]: ")
    term.type(answer + "\r")
    got, screen = term.finish()
    question = f"Remove every cached copy on this host? [y/N]: {answer}"
    if status:
        assert (got, screen.splitlines()) == (1, [question, "Aborted!"])
        assert '"file_count": 1' in run(env, tmp_path, "cache", "status", "--json")
    else:
        assert (got, screen.splitlines()) == (0, [question, "removed 1 cached copies (8 B)"])
        assert '"file_count": 0' in run(env, tmp_path, "cache", "status", "--json")


def test_purge_lists_what_goes_before_it_asks(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("api-key=12345\n")
    run(env, tmp_path, "add", "secret.txt", "--publish")
    term = Terminal(["purge", "secret.txt"], env, tmp_path)
    term.wait_for("[y/N]: ")
    term.type("y\r")
    status, screen = term.finish()
    assert status == 0, screen
    assert screen.splitlines() == [
        "will purge secret.txt (file 1, published, 14 B)",
        "Purge 1 version for good? Backups taken before keep their catalog rows [y/N]: y",
        "purged secret.txt (file 1, published, 14 B)",
        "purged 1 version (14 B)",
    ]
    assert run(env, tmp_path, "list", "--state", "all", "--json") == '{\n  "files": []\n}\n'


def test_destroy_says_what_it_keeps_and_stops_at_no(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("kept\n")
    run(env, tmp_path, "add", "f.txt", "--publish")
    term = Terminal(["destroy"], env, tmp_path)
    term.wait_for("[y/N]: ")
    term.type("n\r")
    status, screen = term.finish()
    assert status == 1
    assert "are NOT deleted [y/N]: n\nAborted!\n" in screen
    assert run(env, tmp_path, "cat", "f.txt") == "kept\n"
