"""The `repo` command as a real process: big files stream through pipes in bounded memory,
and pipes closed early, bad usage and errors end the way the CLI promises.

Each run is a child `python -m repo` process; its peak RSS comes from `os.wait4`. The test
process never holds a big file either: it generates the input block by block and hashes
the output as it arrives.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from conftest import write_config
from repo.cli.output import human_size
from soak import SOAK

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

MiB = 1024 * 1024
BLOCK = MiB
BIG_SIZE = 200 * MiB
# Far below the file size: a command that holds the whole file cannot stay under it.
# (An S3 add keeps up to 8 reusable multipart buffers of 8 MiB: about 64 MiB of them.)
RSS_LIMIT = 150 * MiB
PIPE_FILE_SIZE = 4 * MiB  # well past a pipe buffer (64 KiB), so the writer must block
TIMEOUT = 180.0  # generous: a shared CI machine can be slow; a hang still ends


def blocks(size: int, seed: int) -> Iterator[bytes]:
    """`size` deterministic bytes in `BLOCK`-sized pieces, each one distinct."""
    base = random.Random(seed).randbytes(BLOCK)
    for number, start in enumerate(range(0, size, BLOCK)):
        block = hashlib.sha256(f"{seed}:{number}".encode()).digest() + base[32:]
        yield block[: size - start]


def md5_of(chunks: Iterable[bytes]) -> str:
    md5 = hashlib.md5()
    for chunk in chunks:
        md5.update(chunk)
    return md5.hexdigest()


def file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fp:
        yield from iter(lambda: fp.read(BLOCK), b"")


# The command's peak RSS, measured by a small launcher process that forks it. (Measured
# from here, `wait4` would also count the pytest process's own memory, which the child
# shares between fork and exec: the kernel keeps that high-water mark across exec.)
LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss))  # KiB on Linux
sys.exit(os.waitstatus_to_exitcode(status) % 256)
"""


@dataclass(frozen=True)
class Run:
    """How one `repo` process ended: exit code, output and peak memory."""

    returncode: int
    stdout: bytes  # kept only when asked (small outputs)
    stdout_md5: str
    stdout_size: int
    stderr: str
    peak_rss: int  # bytes


@dataclass(frozen=True)
class RepoCommand:
    """`python -m repo --config FILE ...` in its own HOME and REPO_HOME."""

    config: Path
    cwd: Path
    env: dict[str, str]

    def __call__(
        self,
        *args: str,
        stdin: Iterable[bytes] | None = None,
        keep_stdout: bool = True,
        close_stdout_after: int | None = None,
    ) -> Run:
        """Run to completion, feeding `stdin` from a thread and hashing stdout as it comes.

        With `close_stdout_after`, the read end of stdout is closed once that many bytes
        have arrived, like `repo cat ... | head -c N`.
        """
        rss_file = self.cwd / f".rss-{uuid.uuid4().hex}"
        argv = [
            sys.executable, "-c", LAUNCHER, str(rss_file),
            sys.executable, "-m", "repo", "--config", str(self.config), *args,
        ]  # fmt: skip
        proc = subprocess.Popen(
            argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # the watchdog kills the launcher and the command
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        watchdog = threading.Timer(TIMEOUT, kill)
        watchdog.start()
        errors: list[bytes] = []
        threads = [threading.Thread(target=_drain, args=(proc.stderr, errors))]
        if stdin is not None:
            threads.append(threading.Thread(target=_feed, args=(proc.stdin, stdin)))
        for thread in threads:
            thread.start()
        md5 = hashlib.md5()
        size = 0
        kept: list[bytes] = []
        try:
            while chunk := proc.stdout.read1(BLOCK):
                md5.update(chunk)
                size += len(chunk)
                if keep_stdout:
                    kept.append(chunk)
                if close_stdout_after is not None and size >= close_stdout_after:
                    break
        finally:
            proc.stdout.close()
            for thread in threads:
                thread.join()
            proc.stderr.close()
            proc.wait()
            watchdog.cancel()
        if timed_out.is_set():
            pytest.fail(f"`repo {' '.join(args)}` did not end within {TIMEOUT:.0f} s")
        return Run(
            returncode=proc.returncode,
            stdout=b"".join(kept),
            stdout_md5=md5.hexdigest(),
            stdout_size=size,
            stderr=errors[0].decode("utf-8", "replace") if errors else "",
            peak_rss=int(rss_file.read_text()) * 1024 if rss_file.exists() else -1,
        )


def _feed(pipe: Any, chunks: Iterable[bytes]) -> None:
    # A child that stops reading is no error here: its exit code and stderr say why.
    with contextlib.suppress(BrokenPipeError):
        try:
            for chunk in chunks:
                pipe.write(chunk)
        finally:
            pipe.close()


def _drain(pipe: Any, into: list[bytes]) -> None:
    into.append(pipe.read())


def command_for(tmp_path: Path, config: dict[str, Any], name: str) -> RepoCommand:
    env = dict(os.environ)
    env.pop("REPO_CFG", None)
    env["HOME"] = str(tmp_path / "userhome")
    env["REPO_HOME"] = str(tmp_path / "home")
    # Peak RSS as users see it (no allocator tuning): multipart uploads reuse a fixed pool
    # of part buffers, so an S3 add stays flat whatever the file size.
    return RepoCommand(
        config=write_config(tmp_path / f"{name}.json", config), cwd=tmp_path, env=env
    )


@pytest.fixture
def repo_cmd(tmp_path: Path, repo_config: dict[str, str]) -> RepoCommand:
    """The real `repo` command on one (catalog, store) combination."""
    return command_for(tmp_path, repo_config, "repo_cfg")


@pytest.fixture
def other_host_cmd(tmp_path: Path, repo_config: dict[str, str]) -> RepoCommand:
    """The same repository seen from another host: its own, empty cache."""
    config = dict(repo_config, local_root=str(tmp_path / "other-local"), host_name="other-host")
    return command_for(tmp_path, config, "other_cfg")


def mib(n: int) -> str:
    return f"{n / MiB:.0f} MiB"


# ------------------------------------------------------------- big streams


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
# S3 (multipart buffers) is where memory could grow; the directory store too with
# REPO_SOAK=1 (11 s more).
@pytest.mark.parametrize("store_url", ["rclone", "file"] if SOAK else ["rclone"], indirect=True)
def test_a_200_mib_stream_goes_through_add_cat_and_get_in_bounded_memory(
    repo_cmd: RepoCommand, other_host_cmd: RepoCommand, tmp_path: Path
) -> None:
    sent_md5 = md5_of(blocks(BIG_SIZE, seed=1))
    peaks: dict[str, int] = {}

    added = repo_cmd("add", "big.bin", "-", "--publish", stdin=blocks(BIG_SIZE, seed=1))
    assert (added.returncode, added.stderr) == (0, "")
    assert added.stdout == f"added big.bin (file 1, {human_size(BIG_SIZE)}, published)\n".encode()
    peaks["add -"] = added.peak_rss

    for name, command, args in [
        ("cat", repo_cmd, ("cat", "big.bin")),
        ("get -o -", repo_cmd, ("get", "big.bin", "-o", "-")),
        # Another host downloads from the store first, then streams its cached copy.
        ("cat (other host)", other_host_cmd, ("cat", "big.bin")),
    ]:
        out = command(*args, keep_stdout=False)
        got = (out.returncode, out.stderr, out.stdout_size, out.stdout_md5)
        assert got == (0, "", BIG_SIZE, sent_md5), name
        peaks[name] = out.peak_rss

    dest = tmp_path / "copy.bin"
    saved = repo_cmd("get", "big.bin", "-o", str(dest))
    assert (saved.returncode, saved.stderr) == (0, "")
    assert saved.stdout == f"saved {dest} ({human_size(BIG_SIZE)}, file 1)\n".encode()
    assert md5_of(file_chunks(dest)) == sent_md5
    peaks["get -o FILE"] = saved.peak_rss

    print("peak RSS:", ", ".join(f"{name} {mib(rss)}" for name, rss in peaks.items()))
    over = {name: mib(rss) for name, rss in peaks.items() if rss >= RSS_LIMIT}
    assert over == {}, f"these commands held too much of a {mib(BIG_SIZE)} file in memory"


# ------------------------------------------------- pipes, usage and errors


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)  # the catalog plays no part
@pytest.mark.parametrize("store_url", ["file", "moto"], indirect=True)
def test_reading_into_a_pipe_closed_early_ends_quietly_with_cats_status(
    repo_cmd: RepoCommand,
) -> None:
    added = repo_cmd("add", "pipe.bin", "-", "--publish", stdin=blocks(PIPE_FILE_SIZE, seed=2))
    assert (added.returncode, added.stderr) == (0, "")

    first = next(blocks(PIPE_FILE_SIZE, seed=2))[:10]
    for args in [("cat", "pipe.bin"), ("get", "pipe.bin", "-o", "-")]:
        out = repo_cmd(*args, close_stdout_after=10)
        assert (out.stdout[:10], out.stdout_size < PIPE_FILE_SIZE) == (first, True), args
        # What `cat` gives there (128 + SIGPIPE), and no "Broken pipe" or traceback.
        assert (out.returncode, out.stderr) == (141, ""), args


def test_add_without_arguments_is_a_usage_error(repo_cmd: RepoCommand) -> None:
    out = repo_cmd("add")
    assert (out.returncode, out.stdout) == (2, b"")
    assert out.stderr == (
        "Usage: repo add [OPTIONS] FILE...\n"
        "Try 'repo add --help' for help.\n"
        "\n"
        "Error: Missing argument 'FILE...'.\n"
    )


def test_cat_of_a_missing_path_says_so_in_two_lines(repo_cmd: RepoCommand) -> None:
    out = repo_cmd("cat", "missing/path")
    assert (out.returncode, out.stdout) == (1, b"")
    assert out.stderr == (
        "Error: no file at path 'missing/path'\nTry: see `repo list --state all`\n"
    )
    assert "Traceback" not in out.stderr
