"""The command's surface: help, JSON shapes (docs/cli.md), completion, progress output."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from repo.cli import cli as repo_cli
from repo.cli.bar_line import fitted
from repo.cli.bars import DELAY_VARIABLE, ByteBar
from repo.cli.output import human_size, table

if TYPE_CHECKING:
    import pytest

    from conftest import CliRun

FILE_FIELDS = [
    "id", "path", "state", "size", "md5", "origin", "bucket", "key",
    "created_at", "uploaded_at", "verified_with", "published_at", "expired_at",
    "mode", "storage_class", "archived_at", "tags",
]  # fmt: skip


def test_every_command_has_help_with_an_example(embedded_cli: CliRun) -> None:
    assert isinstance(repo_cli, click.Group)
    assert sorted(repo_cli.commands) == sorted(
        [
            "add", "archive", "backup", "cache", "cat", "config", "create", "ctl", "demo",
            "destroy", "drop", "expire", "fetch", "find", "gc", "get", "history", "host", "list",
            "publish", "purge", "recover", "replicate", "restore", "show", "status", "store", "tag",
            "thaw",
            "upload", "verify", "wait",
        ]
    )  # fmt: skip
    argvs: list[list[str]] = []
    for name, command in repo_cli.commands.items():
        argvs.append([name])
        if isinstance(command, click.Group):
            argvs += [[name, sub] for sub in command.commands]
    for argv in argvs:
        result = embedded_cli(*argv, "--help")
        assert result.exit_code == 0, argv
        assert "Example" in result.stdout, f"`repo {' '.join(argv)} --help` has no example"
        assert f"repo {' '.join(argv)}" in result.stdout.split("Example", 1)[1], argv
    top = embedded_cli("--help")
    assert top.exit_code == 0
    assert "Example" in top.stdout
    assert "_REPO_COMPLETE" in top.stdout


def test_json_shapes_are_stable(cli: CliRun, tmp_path: Path) -> None:
    src = tmp_path / "f.txt"
    src.write_text("0123456789")
    added = json.loads(
        cli("add", "a/f.txt", str(src), "-t", "t1", "--publish", "--cache", "--json").stdout
    )
    assert list(added) == ["files"]
    assert list(added["files"][0]) == FILE_FIELDS[:-1]  # add does not re-read tags
    assert added["files"][0]["size"] == 10
    assert added["files"][0]["state"] == "published"

    for argv in (["list"], ["list", "--state", "all"], ["find", "--all", "t1"]):
        doc = json.loads(cli(*argv, "--json").stdout)
        assert list(doc) == ["files"]
        assert [list(f) for f in doc["files"]] == [FILE_FIELDS]
        assert doc["files"][0]["tags"] == ["t1"]

    shown = json.loads(cli("show", "a/f.txt", "--json").stdout)
    assert list(shown) == ["path", "versions"]
    assert list(shown["versions"][0]) == [*FILE_FIELDS, "hosts"]
    assert list(shown["versions"][0]["hosts"][0]) == ["host", "downloaded_at", "last_access"]

    status = json.loads(cli("status", "--json").stdout)
    assert list(status) == ["ok", "catalog", "store", "states", "cache"]
    assert list(status["catalog"]) == ["url", "reachable", "error", "schema_version"]
    assert list(status["store"]) == ["url", "reachable", "error"]
    assert status["states"] == {
        "unpublished": {"file_count": 0, "bytes": 0},
        "published": {"file_count": 1, "bytes": 10},
        "expired": {"file_count": 0, "bytes": 0},
    }
    assert list(status["cache"]) == ["host", "file_count", "bytes", "cache_max_bytes"]
    assert status["cache"]["file_count"] == 1
    assert status["cache"]["bytes"] == 10

    settings = json.loads(cli("config", "--show", "--json").stdout)
    assert list(settings) == ["settings"]
    assert list(settings["settings"]) == [
        "source", "store_url", "database_url", "local_root", "host_name", "backup_store_url",
        "s3_endpoint_url", "s3_region", "s3_access_key", "s3_secret_key", "cache_max_bytes",
        "unpublished_ttl_seconds", "expired_ttl_seconds", "orphan_grace_seconds",
        "backups_before_purge", "backup_keep", "s3_timeout_seconds", "s3_sse",
        "s3_sse_kms_key_id", "backup_key", "s3_upload_check", "archive_class",
        "archive_early_deletion", "ssh_key_file", "ssh_known_hosts", "retention_timezone",
        "store_name", "stores", "numcopies", "mincopies",
        "replicate_on_publish", "placement",
    ]  # fmt: skip
    assert all(list(s) == ["value", "origin"] for s in settings["settings"].values())


def test_empty_results_are_an_empty_document_or_a_note_on_stderr(embedded_cli: CliRun) -> None:
    assert json.loads(embedded_cli("find", "--all", "nothing", "--json").stdout) == {"files": []}
    plain = embedded_cli("list")
    assert plain.exit_code == 0
    assert plain.stdout == ""
    assert plain.stderr == "no files\n"


def test_bash_completion_through_clicks_documented_variable(tmp_path: Path) -> None:
    env = dict(os.environ, REPO_HOME=str(tmp_path), HOME=str(tmp_path))
    repo_exe = Path(sys.executable).with_name("repo")
    script = subprocess.run(
        [str(repo_exe)], env={**env, "_REPO_COMPLETE": "bash_source"},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "_repo_completion" in script.stdout
    assert "complete " in script.stdout
    words = subprocess.run(
        [str(repo_exe)],
        env={**env, "_REPO_COMPLETE": "bash_complete", "COMP_WORDS": "repo li", "COMP_CWORD": "1"},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert words.stdout.splitlines() == ["plain,list"]
    options = subprocess.run(
        [str(repo_exe)],
        env={
            **env, "_REPO_COMPLETE": "bash_complete",
            "COMP_WORDS": "repo list --st", "COMP_CWORD": "2",
        },
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert options.stdout.splitlines() == ["plain,--state"]


def test_progress_bar_draws_on_a_terminal_only_after_a_moment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drawn = io.StringIO()
    monkeypatch.setattr(sys, "stderr", drawn)
    monkeypatch.delenv(DELAY_VARIABLE, raising=False)
    quiet = ByteBar("uploading", total=100, enabled=False)
    assert quiet.listener is None  # the library is not asked to report at all
    quiet(50)
    assert not quiet.drawn
    quiet.close()

    fast = ByteBar("uploading", total=100, enabled=True)
    assert fast.listener is fast
    fast(100)  # finished within the delay: never drawn
    assert not fast.drawn
    fast.close()
    assert drawn.getvalue() == ""

    monkeypatch.setenv(DELAY_VARIABLE, "0")
    slow = ByteBar("uploading", total=100, enabled=True)
    monkeypatch.setattr(slow, "INTERVAL", 0.0)
    slow.begin(100, 2)
    slow(50)
    assert slow.drawn
    slow.close()
    assert not slow.drawn
    slow.file_done()  # a worker still reporting after close draws nothing again
    assert not slow.drawn
    # What the drawn line looks like on a terminal: tests/cli/test_cli_progress.py.


def test_progress_line_gives_up_the_rate_then_the_bar_then_words() -> None:
    words, rate = [" 45%", "90.0/200.0 MiB", "ETA 0:02", "3/10 files"], ["104.4 MiB/s"]
    # "fetching", the bar, the words and the rate, one space before each but the first:
    # 8 + 1 + 40 + 12 columns and the bar's.
    assert fitted(119, "fetching", words, rate) == ([*words, *rate], 58)
    assert fitted(79, "fetching", words, rate) == ([*words, *rate], 18)
    assert fitted(70, "fetching", words, rate) == (words, 21)  # a bar of 9 is too narrow
    assert fitted(59, "fetching", words, rate) == (words, 10)
    assert fitted(58, "fetching", words, rate) == (words, 0)
    assert fitted(40, "fetching", words, rate) == (words[:3], 0)
    assert fitted(12, "fetching", words, rate) == ([], 0)  # rich crops a longer label
    assert fitted(59, "uploading", [], []) == ([], 49)


def test_human_sizes_and_tables() -> None:
    assert [human_size(n) for n in (None, 0, 1023, 1024, 1536, 5 * 1024**3)] == [
        "-", "0 B", "1023 B", "1.0 KiB", "1.5 KiB", "5.0 GiB",
    ]  # fmt: skip
    assert table(["A", "LONG"], [["xx", "y"], ["z", ""]]) == "A   LONG\nxx  y\nz"


def test_the_command_listing_cuts_no_summary_off_and_hides_ctl(embedded_cli: CliRun) -> None:
    result = embedded_cli("--help")
    assert result.exit_code == 0
    listing = result.stdout.split("Commands:\n", 1)[1].splitlines()
    names = [line.split()[0] for line in listing if line.strip()]
    assert "ctl" not in names  # the seed's spelling still works, out of the listing
    assert embedded_cli("ctl", "--help").exit_code == 0
    for line in listing:
        assert len(line) <= 80, line
        assert not line.endswith("..."), line
        assert line.rstrip().endswith("."), line
