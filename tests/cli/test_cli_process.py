"""What only a real process shows: the exit status when the reader of the output goes
away (`repo cat big | head`), and what `-v` logs, at INFO, on stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

MiB = 1024 * 1024


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An embedded-default repository of its own, whatever the machine has configured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPO_")}
    env.update(REPO_HOME=str(tmp_path / "home"), HOME=str(tmp_path), REPO_HOST_NAME="h1")
    return env


def repo(env: dict[str, str], *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "repo", *argv],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("argv", [["cat", "big.bin"], ["get", "big.bin", "-o", "-"]])
def test_a_reader_that_stops_early_ends_it_quietly_with_cats_status(
    env: dict[str, str], tmp_path: Path, argv: list[str]
) -> None:
    (tmp_path / "big.bin").write_bytes(os.urandom(8 * MiB))  # far past a pipe's buffer
    added = repo(env, "add", "big.bin", "--publish", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    # What `repo cat big.bin | head -c 10` does: the reader takes 10 bytes and goes.
    proc = subprocess.Popen(
        [sys.executable, "-m", "repo", *argv],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    assert len(proc.stdout.read(10)) == 10
    proc.stdout.close()
    status = proc.wait(timeout=120)
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert (status, stderr) == (141, "")  # 128 + SIGPIPE, as the shell reports for cat


def test_verbose_says_what_happened(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "daily.csv").write_text("day,visits\n")
    added = repo(env, "-v", "add", "daily.csv", "--publish", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    assert added.stdout == "added daily.csv (file 1, 11 B, published)\n"
    lines = [line.split(":", 1)[0] for line in added.stderr.splitlines()]
    assert lines == [
        "INFO repo.session",  # which catalog
        "INFO repo.session",  # which store and host
        "INFO repo.ingest",  # uploaded, with key, size, md5 and how it was verified
        "INFO repo.ingest",  # published, and what it expired
        "INFO repo.journal",  # the change journal entry
    ]
    assert "uploaded daily.csv (file 1) from daily.csv to data/daily.csv~" in added.stderr
    assert "11 bytes, md5 " in added.stderr
    got = repo(env, "-v", "get", "daily.csv", "-o", "copy.csv", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert "INFO repo.transfers: downloaded daily.csv (file 1): 11 bytes, md5 verified" in (
        got.stderr.splitlines()
    )
    quiet = repo(env, "get", "daily.csv", "-o", "again.csv", cwd=tmp_path)
    assert (quiet.returncode, quiet.stderr) == (0, "")
