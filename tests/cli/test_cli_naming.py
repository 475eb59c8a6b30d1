"""One way to name a version everywhere (PATH|ID), `repo history`, and `get -o` writing
where a user expects: a trailing / or an existing directory means "into it"."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest

import repo
from conftest import CliRun, write_config
from repo.cli import INTERRUPTED

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def run(tmp_path: Path, embedded_config: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> CliRun:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "daily.csv").write_bytes(b"v1\n")
    cli = CliRun(write_config(tmp_path / "cfg.json", embedded_config), tmp_path)
    assert cli("add", "daily.csv", "--as", "reports/daily.csv", "--publish").exit_code == 0
    (tmp_path / "daily.csv").write_bytes(b"v2, longer\n")
    assert cli("add", "daily.csv", "--as", "reports/daily.csv", "--publish").exit_code == 0
    return cli


def test_show_and_history_take_a_path_or_an_id(run: CliRun) -> None:
    by_path = run("show", "reports/daily.csv")
    by_id = run("show", "1")
    assert by_path.exit_code == by_id.exit_code == 0
    assert by_path.stdout == by_id.stdout
    assert by_path.stdout.startswith("reports/daily.csv\n\n  file       2 (published)\n")
    history = run("history", "2")
    assert history.exit_code == 0
    lines = history.stdout.splitlines()
    assert lines[0].split() == ["ID", "STATE", "SIZE", "UPDATED", "(UTC)", "PATH"]
    assert [line.split()[:3] for line in lines[1:]] == [  # newest first, as `show`
        ["2", "published", "11"],
        ["1", "expired", "3"],
    ]
    docs = json.loads(run("history", "reports/daily.csv", "--json").stdout)["files"]
    assert [(d["id"], d["state"]) for d in docs] == [(2, "published"), (1, "expired")]
    missing = run("history", "reports/nope.csv")
    assert missing.exit_code == 1
    assert missing.stderr.startswith("Error: ")


def test_list_and_find_spell_the_state_filter_the_same_way(run: CliRun) -> None:
    assert run("tag", "1", "t").exit_code == 0
    assert run("tag", "2", "t").exit_code == 0
    assert run("add", "-", "--as", "reports/daily.csv", "-t", "t", input=b"v3").exit_code == 0

    def ids(*argv: str) -> list[int]:
        result = run(*argv, "--json")
        assert result.exit_code == 0, (argv, result.stderr)
        return sorted(f["id"] for f in json.loads(result.stdout)["files"])

    for state, expected in (
        ("published", [2]),
        ("expired", [1]),
        ("unpublished", [3]),
        ("all", [1, 2, 3]),
    ):
        assert ids("list", "--state", state) == expected, state
        assert ids("find", "--all", "t", "--state", state) == expected, state
    assert ids("find", "--all", "t") == [2]  # the current versions by default, as list
    assert ids("find", "--all", "t", "--all-states") == [1, 2, 3]  # the first spelling


def test_get_into_a_directory_named_with_a_trailing_slash(run: CliRun, tmp_path: Path) -> None:
    result = run("get", "reports/daily.csv", "-o", "newdir/")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "saved newdir/daily.csv (11 B, file 2)\n"
    assert (tmp_path / "newdir" / "daily.csv").read_bytes() == b"v2, longer\n"
    again = run("get", "reports/daily.csv", "-o", "newdir")  # an existing directory: into it
    assert again.exit_code == 1
    assert again.stderr.splitlines() == [
        "Error: newdir/daily.csv already exists",
        "Try: use --force to overwrite it",
    ]


def test_get_into_a_missing_directory_names_the_whole_path(run: CliRun) -> None:
    result = run("get", "reports/daily.csv", "-o", "nodir/sub/file.csv")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: cannot write nodir/sub/file.csv: No such file or directory",
        "Try: check that its directory exists and is writable (a trailing / makes one)",
    ]


def test_removing_a_tag_the_file_lacks_says_so(run: CliRun) -> None:
    assert run("tag", "reports/daily.csv", "sales").exit_code == 0
    partly = run("tag", "reports/daily.csv", "sales", "region=eu", "--remove")
    assert partly.exit_code == 0
    assert partly.stdout == "1 tag(s) removed from reports/daily.csv (file 2): sales\n"
    assert partly.stderr == "Note: reports/daily.csv (file 2) had no tag region=eu\n"
    none = run("tag", "reports/daily.csv", "sales", "--remove")
    assert none.exit_code == 1
    assert none.stderr.splitlines() == [
        "Error: reports/daily.csv (file 2) has no tag sales",
        "Try: see its tags with: repo show 2",
    ]


def test_cache_clear_asks_first_unless_yes(run: CliRun, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("get", "reports/daily.csv", "-o", "-").exit_code == 0  # cached now
    unasked = run("cache", "clear", input="y\n")
    assert (unasked.exit_code, unasked.stderr) == (
        1,
        "Error: not on a terminal, so nothing can confirm clearing the cache: pass --yes\n",
    )
    monkeypatch.setattr("repo.cli.prompts.on_terminal", lambda: True)
    asked = run("cache", "clear", input="n\n")
    assert asked.exit_code == 1
    assert asked.stderr.startswith("Remove every cached copy on this host? [y/N]: ")
    assert run("cache", "clear", "--yes").stdout.startswith("removed 1 cached copies")


def test_restore_with_no_backup_yet_says_to_take_one(run: CliRun) -> None:
    result = run("restore", "--force")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[1] == (
        "Try: take one with `repo backup` while the catalog is there; if there should be "
        "some, check 'backup_s3_bucket' and the store settings"
    )


def test_ctrl_c_exits_130_and_says_what_it_left(
    tmp_path: Path, embedded_config: dict[str, str]
) -> None:
    cfg = write_config(tmp_path / "ctrl-c.json", embedded_config)
    env = {**os.environ, "HOME": str(tmp_path), "REPO_HOME": str(tmp_path / "home")}
    env.pop("REPO_CFG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "repo", "--config", str(cfg), "add", "-", "--as", "big.bin"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(b"x" * 65536)  # the command is reading standard input
        proc.stdin.flush()
        time.sleep(2)  # started, and waiting for more input
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert out == b""
    assert err.decode().splitlines()[-1] == f"Interrupted: {INTERRUPTED}"
    assert "Traceback" not in err.decode()
    with repo.Repo(embedded_config) as r:
        assert r.list("*", state="all") == []  # nothing recorded
