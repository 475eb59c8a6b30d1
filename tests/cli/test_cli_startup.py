"""Commands that need no catalog and no store start without loading the libraries that
reach them: SQLAlchemy, psycopg, boto3, obstore, asyncssh (start-up time; bench/startup.py).

Each check runs `repo` in a fresh interpreter, as `python -m repo` does, and reports at
exit which of those modules got imported. Timing is left to the benchmark: a test here
only says what was loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import click
import pytest

from repo.cli import cli

if TYPE_CHECKING:
    from pathlib import Path

#: The libraries a command reaches its catalog or its store (S3, SFTP) through.
HEAVY = ("sqlalchemy", "psycopg", "boto3", "botocore", "obstore", "asyncssh")

#: Runs each argv of the JSON list in argv[1] through the `repo` command, in this one
#: process and one after the other; after each it writes one JSON line to the file
#: descriptor in argv[3] (not stdout, which the commands write to): the argv, its exit
#: status, and which of `HEAVY` are imported so far.
_RUNNER = """
import json, os, runpy, sys
heavy, runs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
out = os.fdopen(int(sys.argv[3]), "w")
for argv in runs:
    sys.argv = ["repo", *argv]
    try:
        runpy.run_module("repo", run_name="__main__", alter_sys=True)
        status = 0
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    loaded = sorted(m for m in heavy if m in sys.modules)
    out.write(json.dumps({"argv": argv, "status": status, "loaded": loaded}) + "\\n")
    out.flush()
"""


def _every_help() -> list[list[str]]:
    """``COMMAND --help`` for every command, and for every subcommand of a group."""
    runs: list[list[str]] = []
    for name, command in sorted(cli.commands.items()):
        runs.append([name, "--help"])
        if isinstance(command, click.Group):
            runs += [[name, sub, "--help"] for sub in sorted(command.commands)]
    return runs


def run(tmp_path: Path, *runs: list[str]) -> list[dict[str, object]]:
    """The reports of `runs`, made in one fresh process on an embedded default of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPO_")}
    env.update(REPO_HOME=str(tmp_path / "home"), HOME=str(tmp_path))
    read, write = os.pipe()
    try:
        done = subprocess.Popen(
            [sys.executable, "-c", _RUNNER, json.dumps(HEAVY), json.dumps(runs), str(write)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(write,),
        )
    finally:
        os.close(write)
    with os.fdopen(read) as reports:
        lines = reports.read().splitlines()
    _, err = done.communicate(timeout=120)
    assert done.returncode == 0, err.decode()
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize(
    ("argv", "status"),
    [
        (["--version"], 0),
        (["--help"], 0),
        ([], 2),  # click: no command is a usage error
        (["config", "--show"], 0),
        (["config", "--show", "--json"], 0),
        (["ctl", "--config"], 0),
        (["no-such-command"], 2),
        (["cat"], 2),
        (["get", "--no-such-option", "x"], 2),
        (["cat", "--json"], 2),
    ],
    ids=lambda value: " ".join(value) or "(none)" if isinstance(value, list) else str(value),
)
def test_command_that_opens_no_repository_loads_no_database_or_s3_library(
    tmp_path: Path, argv: list[str], status: int
) -> None:
    (report,) = run(tmp_path, argv)
    assert report == {"argv": argv, "status": status, "loaded": []}


def test_no_command_help_loads_a_database_or_s3_library(tmp_path: Path) -> None:
    runs = _every_help()
    assert ["cat", "--help"] in runs
    assert ["cache", "status", "--help"] in runs
    reports = run(tmp_path, *runs)
    assert [r for r in reports if r["loaded"] or r["status"] != 0] == []
    assert len(reports) == len(runs)


def test_a_command_that_reads_the_catalog_loads_sqlalchemy(tmp_path: Path) -> None:
    """The check sees an import when there is one: `list` opens the catalog."""
    ((tmp_path / "home").mkdir())
    (report,) = run(tmp_path, ["list"])
    assert report["status"] == 0
    assert report["loaded"] == ["sqlalchemy"]


_FREEZE_REPORT = """
import gc, runpy, sys
sys.argv = ["repo", *sys.argv[1:]]
try:
    runpy.run_module("repo", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
print("frozen", gc.get_freeze_count())
"""


def test_the_repo_process_freezes_its_heap_but_a_host_process_keeps_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`repo` puts what its imports made out of the collector's reach (its full
    collections, at exit above all, walked it in vain); a program that runs the CLI in
    its own process, as this test runner does, keeps a heap the collector can clear."""
    import gc

    from click.testing import CliRunner

    env = {k: v for k, v in os.environ.items() if not k.startswith("REPO_")}
    env.update(REPO_HOME=str(tmp_path / "home"), HOME=str(tmp_path))
    own = subprocess.run(
        [sys.executable, "-c", _FREEZE_REPORT, "list"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert int(own.stdout.split("frozen ")[-1]) > 10_000
    monkeypatch.setenv("REPO_HOME", str(tmp_path / "home"))
    before = gc.get_freeze_count()
    result = CliRunner().invoke(cli, ["list"])
    assert result.exit_code == 0, result.output
    assert gc.get_freeze_count() == before
