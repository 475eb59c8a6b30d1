"""`--json`: every command but `cat` and `demo` has it, in one style (docs/cli.md).

The style, checked over every document a walk through the commands prints:
`files` is always a list of file documents and `file` one; a key ending in `_count`
is an integer, as is `bytes`; a key ending in `_at` is null or an ISO 8601 time with
its UTC offset. With `--json`, an error is one JSON object on stderr and nothing on
stdout, with the exit status text mode gives.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from repo.cli import cli as repo_cli

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import CliRun

#: Commands whose output is not a report: the file's bytes, the guided tour.
WITHOUT_JSON = {"cat", "demo", "ctl"}
FILE_KEYS = {"id", "path", "state", "size", "md5", "created_at"}


def _commands() -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name, command in repo_cli.commands.items():
        if isinstance(command, click.Group):
            found += [(f"{name} {sub}", c) for sub, c in command.commands.items()]
        else:
            found.append((name, command))
    return found


def test_every_command_but_cat_and_demo_takes_json() -> None:
    lacking = [
        name
        for name, command in _commands()
        if name not in WITHOUT_JSON and not any("--json" in p.opts for p in command.params)
    ]
    assert lacking == []


def _check_style(doc: Any, where: str = "") -> None:
    """Fails on the first key that breaks the one style."""
    if isinstance(doc, list):
        for item in doc:
            _check_style(item, where)
        return
    if not isinstance(doc, dict):
        return
    for key, value in doc.items():
        at = f"{where}.{key}"
        if key == "rows":  # row counts by catalog table name (backup, restore)
            assert all(isinstance(n, int) for n in value.values()), at
            continue
        if key == "files":
            assert isinstance(value, list), at
            assert all(set(f) >= FILE_KEYS for f in value), at
        elif key == "file":
            assert isinstance(value, dict), at
            assert set(value) >= FILE_KEYS, at
        elif key.endswith("_count") or key == "bytes":
            assert isinstance(value, int), at
            assert not isinstance(value, bool), at
        elif key.endswith("_at") and value is not None:
            assert datetime.fromisoformat(value).utcoffset() is not None, at
        _check_style(value, at)


def _json(cli: CliRun, *argv: str) -> dict[str, Any]:
    result = cli(*argv, "--json")
    assert result.exit_code == 0, (argv, result.stderr)
    assert result.stderr == "", argv
    doc = json.loads(result.stdout)
    assert isinstance(doc, dict), argv
    _check_style(doc, " ".join(argv))
    return doc


def test_a_walk_through_every_command_prints_one_object_each_in_one_style(
    embedded_cli: CliRun, tmp_path: Path
) -> None:
    cli = embedded_cli
    created = _json(cli, "create")
    assert created["catalog"]["schema_version"] >= 4
    first = tmp_path / "daily.csv"
    first.write_text("day,visits\n")
    added = _json(cli, "add", str(first), "--as", "reports/daily.csv", "-t", "sales")
    file_id = str(added["files"][0]["id"])
    assert _json(cli, "upload", file_id)["file"]["id"] == int(file_id)
    assert _json(cli, "publish", "reports/daily.csv")["file"]["state"] == "published"
    tagged = _json(cli, "tag", file_id, "region=eu")
    assert (tagged["added"], tagged["file"]["tags"]) == (["region=eu"], ["region=eu", "sales"])
    assert _json(cli, "tag", file_id, "region=eu", "--remove")["removed"] == ["region=eu"]
    assert [f["path"] for f in _json(cli, "list")["files"]] == ["reports/daily.csv"]
    assert len(_json(cli, "find", "--all", "sales")["files"]) == 1
    waited = _json(cli, "wait", "--all", "sales", "--timeout", "0")
    assert (len(waited["files"]), waited["timed_out"]) == (1, False)
    assert len(_json(cli, "history", "reports/daily.csv")["files"]) == 1
    assert len(_json(cli, "show", file_id)["versions"]) == 1
    got = _json(cli, "get", "reports/daily.csv", "-o", str(tmp_path / "out.csv"))
    assert got["written_to"] == str(tmp_path / "out.csv")
    fetched = _json(cli, "fetch", "--all", "sales")
    assert (fetched["file_count"], len(fetched["files"])) == (1, 1)
    assert _json(cli, "status")["states"]["published"]["file_count"] == 1
    assert _json(cli, "gc", "--dry-run")["dry_run"] is True
    _json(cli, "gc")
    backup = _json(cli, "backup")
    assert [b["name"] for b in _json(cli, "restore", "--list")["backups"]] == [backup["name"]]
    assert _json(cli, "verify")["ok"] is True
    _json(cli, "verify", "--cache")
    assert _json(cli, "recover", "--dry-run")["dry_run"] is True
    assert _json(cli, "cache", "status")["file_count"] == 1
    _json(cli, "cache", "prune")
    _json(cli, "cache", "clear", "--yes")
    hosts = _json(cli, "host", "list")["hosts"]
    assert _json(cli, "host", "decommission", hosts[0]["name"], "--yes")["host"] == hosts[0]["name"]
    assert "store_url" in _json(cli, "config", "--show")["settings"]
    assert _json(cli, "expire", "reports/daily.csv")["file"]["state"] == "expired"
    destroyed = _json(cli, "destroy", "--yes")
    assert (destroyed["destroyed"], destroyed["file_count"]) == (True, 1)


def _error(result: Any, code: int) -> dict[str, Any]:
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    doc = json.loads(lines[0])
    assert list(doc) == ["error", "hint"]
    return dict(doc)


def test_with_json_an_error_is_one_json_line_on_stderr(embedded_cli: CliRun) -> None:
    assert _error(embedded_cli("show", "no/such.csv", "--json"), 1) == {
        "error": "no file at path 'no/such.csv'",
        "hint": "see `repo list --state all`",
    }
    # click's own usage errors, even those found before it reached --json
    assert _error(embedded_cli("list", "--state", "bogus", "--json"), 2)["hint"] == (
        "see `repo list --help`"
    )
    assert _error(embedded_cli("find", "--bogus", "--json"), 2) == {
        "error": "No such option '--bogus'.",
        "hint": "see `repo find --help`",
    }
    assert _error(embedded_cli("get", "x", "-o", "-", "--json"), 2)["error"] == (
        "--json prints to stdout, where -o - writes the file: choose one"
    )
    # A name in the message cannot act on a terminal that shows stderr.
    result = embedded_cli("show", "a\x1b[2Jb", "--json")
    assert "\x1b" not in result.stderr
    assert _error(result, 1)["error"] == "path 'a\\x1b[2Jb' contains control character U+001B"


def test_without_json_errors_stay_text(embedded_cli: CliRun) -> None:
    result = embedded_cli("show", "no/such.csv")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: no file at path 'no/such.csv'",
        "Try: see `repo list --state all`",
    ]
