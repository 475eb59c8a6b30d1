"""What `-v` logs, at INFO, on stderr, in a real process (the exit status when the
reader of the output goes away is in test_cli_streaming)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path


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
