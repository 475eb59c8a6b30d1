"""`repo demo` (`make demo`): a tour in a throwaway repository, each step with the `repo`
command that does the same, and those commands really do the same."""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from click.testing import CliRunner

import repo
from conftest import write_config
from repo.cli import cli

if TYPE_CHECKING:
    import pytest

BIN = Path(sys.executable).parent


def _run_demo(
    tmp_path: Path, *args: str, path: str = "/usr/bin:/bin"
) -> subprocess.CompletedProcess[str]:
    """`repo [ARGS] demo` as a user runs it, its temporary directory under tmp_path/tmp."""
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    env = dict(os.environ, TMPDIR=str(tmp), PATH=path)
    out = subprocess.run(
        [str(BIN / "repo"), *args, "demo"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    return out


def _place(stdout: str) -> tuple[Path, Path]:
    """The directory and configuration file the demo says its commands run in."""
    match = re.search(r"^  \$ cd (\S+) && export REPO_CFG=(\S+)$", stdout, re.MULTILINE)
    assert match, stdout
    return Path(match[1]), Path(match[2])


def _commands(stdout: str) -> list[list[str]]:
    commands = [
        shlex.split(line[len("   $ ") :])
        for line in stdout.splitlines()
        if line.startswith("   $ ")
    ]
    assert commands
    assert all(c[0] == "repo" for c in commands)
    return [c[1:] for c in commands]


def _catalog(config: Path) -> list[tuple[str, str, list[str]]]:
    """Every version in the repository: path, state and tags, in the order added."""
    with repo.Repo(str(config)) as r:
        versions = sorted(r.list("*", state="all"), key=lambda f: f.file_id)
        return [(f.path, f.state, sorted(f.tags)) for f in versions]


def test_demo_output_whole(tmp_path: Path) -> None:
    out = _run_demo(tmp_path)
    directory, config = _place(out.stdout)
    day = re.search(r"--date (\d{4}-\d\d-\d\d) ", out.stdout)
    assert day
    text = out.stdout.replace(str(directory), "DIR").replace(day[1], "DAY")
    text = re.sub(r"md5 [0-9a-f]{32}", "md5 MD5", text)
    text = re.sub(r"~[0-9a-z]{26}\)", "~TOKEN)", text)
    assert text.splitlines() == [
        "A throwaway repository in DIR: a SQLite catalog and a directory store.",
        "Your own configuration ($REPO_CFG, ~/.repo_cfg) is not used.",
        "Each step shows the repo command that does the same. To run them yourself:",
        "  $ cd DIR && export REPO_CFG=DIR/config.json",
        "",
        "1. Added daily.csv as demo/reports/daily.csv, tagged, date-tagged, published:",
        "   file 1, 26 B, published, md5 MD5",
        "   $ repo add daily.csv --as demo/reports/daily.csv --tag demo --tag report"
        " --date DAY --publish",
        "2. Added notes.txt as demo/notes.txt and tagged its path (every version):",
        "   file 2, 21 B, published, md5 MD5, path tags team=ops",
        "   $ repo add notes.txt --as demo/notes.txt --tag demo --publish",
        "   $ repo tag demo/notes.txt --path-tag team=ops",
        "3. Published a new version of demo/reports/daily.csv:",
        "   file 3, 26 B, published, md5 MD5; file 1 is now expired",
        "   $ repo add daily.csv --as demo/reports/daily.csv --tag demo --tag report"
        " --tag revised --date DAY --publish",
        "4. Found by tags: all of demo and report, but not draft:",
        "   demo/reports/daily.csv (file 3)",
        "   $ repo find --all demo --all report --exclude draft",
        "   any of team=ops and revised: demo/notes.txt (file 2), demo/reports/daily.csv (file 3)",
        "   $ repo find --any team=ops --any revised",
        "5. Read back demo/reports/daily.csv, verified, through this host's cache:",
        "   'day,visits\\nDAY,150\\n'",
        "   (the read-only verified copy: DIR/local/cache/data/demo/reports/daily.csv~TOKEN)",
        "   $ repo cat demo/reports/daily.csv",
        "6. Every version of demo/reports/daily.csv, newest first:",
        "   file 3 published, file 1 expired",
        "   $ repo show demo/reports/daily.csv",
        "7. The current files under demo/:",
        "   demo/notes.txt (file 2), demo/reports/daily.csv (file 3)",
        "   $ repo list 'demo/*'",
        "8. What the catalog holds:",
        "   expired 1 file (26 B), published 2 files (47 B)",
        "   $ repo status",
        "",
        f"To run repo yourself: {BIN}/repo --help, or first `source {BIN}/activate`"
        " (then plain repo).",
        "Install it for everyday use: README.md, section Install (pipx install .).",
        "The demo repository stays in DIR; remove it with: rm -rf DIR",
    ]
    assert directory.parent == tmp_path / "tmp"
    assert config == directory / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600


def test_demo_leaves_the_configured_repository_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = tmp_path / "mine"
    mine_cfg = {"store": (mine / "store").as_uri(), "database": f"sqlite:///{mine / 'c.db'}"}
    monkeypatch.setenv("REPO_CFG", str(write_config(tmp_path / "mine.json", mine_cfg)))
    write_config(Path(os.environ["HOME"]) / ".repo_cfg", mine_cfg)
    out = _run_demo(tmp_path)
    assert "Your own configuration ($REPO_CFG, ~/.repo_cfg) is not used." in out.stdout
    assert not mine.exists()
    assert not (tmp_path / "home").exists()  # nor the embedded default's place


def test_printed_commands_do_what_the_steps_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replayed in a fresh repository, the printed commands leave the same versions, states
    and tags; and each runs against the demo's own repository, as the demo suggests."""
    out = _run_demo(tmp_path)
    directory, config = _place(out.stdout)
    commands = _commands(out.stdout)
    assert [c[0] for c in commands] == [
        "add", "add", "tag", "add", "find", "find", "cat", "show", "list", "status",
    ]  # fmt: skip
    replay = tmp_path / "replay"
    replay_cfg = {"store": (replay / "store").as_uri(), "database": f"sqlite:///{replay / 'c.db'}"}
    replay_config = write_config(tmp_path / "replay.json", replay_cfg)
    monkeypatch.chdir(directory)
    runner = CliRunner()
    for args in commands:
        result = runner.invoke(cli, args, env={"REPO_CFG": str(replay_config)}, prog_name="repo")
        assert result.exit_code == 0, (args, result.output)
    assert _catalog(replay_config) == _catalog(config)

    for args in commands:
        result = runner.invoke(cli, args, env={"REPO_CFG": str(config)}, prog_name="repo")
        assert result.exit_code == 0, (args, result.output)
    with repo.Repo(str(config)) as r:
        current = {f.path: f.file_id for f in r.list("demo/*")}
    assert current == {"demo/notes.txt": 5, "demo/reports/daily.csv": 6}


def test_demo_with_an_explicit_config_writes_into_that_repository(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine_cfg = {"store": (mine / "store").as_uri(), "database": f"sqlite:///{mine / 'c.db'}"}
    cfg = write_config(tmp_path / "mine.json", mine_cfg)
    out = _run_demo(tmp_path, "--config", str(cfg))
    lines = out.stdout.splitlines()
    assert lines[0] == f"Writing into the repository configured in {cfg} (--config)."
    directory, config = _place(out.stdout)
    assert config == cfg
    assert (
        lines[-1]
        == f"The demo's input files are in {directory}; remove them with: rm -rf {directory}"
    )
    assert sorted(os.listdir(directory)) == ["daily.csv", "notes.txt"]
    assert [p for p, _, _ in _catalog(cfg)] == [
        "demo/reports/daily.csv", "demo/notes.txt", "demo/reports/daily.csv",
    ]  # fmt: skip
    # A second run adds new versions to the same repository.
    _run_demo(tmp_path, "--config", str(cfg))
    assert [state for _, state, _ in _catalog(cfg)] == ["expired"] * 4 + ["published"] * 2
    json.loads(cfg.read_text())  # left as it was


def test_demo_says_plain_repo_when_it_is_on_path(tmp_path: Path) -> None:
    out = _run_demo(tmp_path, path=f"{BIN}:/usr/bin:/bin")
    assert "To run repo yourself: repo --help (it is on your PATH)." in out.stdout.splitlines()


def test_a_demo_that_fails_leaves_no_directory_behind(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"store": "file:///tmp/x", "database": "sqlite:///x.db", "colour": 1}')
    (tmp_path / "tmp").mkdir()
    out = subprocess.run(
        [str(BIN / "repo"), "--config", str(bad), "demo"],
        env=dict(os.environ, TMPDIR=str(tmp_path / "tmp")),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 1
    assert out.stderr.startswith("Error: ")
    assert os.listdir(tmp_path / "tmp") == []
