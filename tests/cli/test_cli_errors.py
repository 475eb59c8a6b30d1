"""Bad input and broken surroundings: one clear line (plus a hint), exit 1, nothing written.

Bad usage (click's own parsing) exits 2.
"""

from __future__ import annotations

import json
import socket
from typing import TYPE_CHECKING, Any

import pytest

from conftest import CliRun, write_config

if TYPE_CHECKING:
    from pathlib import Path


def fails(result: Any, *lines: str) -> None:
    """Exit 1 and exactly these stderr lines; nothing on stdout; no traceback."""
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert result.stderr.splitlines() == list(lines)
    assert result.stdout == ""


def counts(cli: CliRun) -> dict[str, Any]:
    result = cli("status", "--json")
    assert result.exit_code == 0, result.stderr
    return dict(json.loads(result.stdout)["states"])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "data.csv"
    path.write_text("a,b\n")
    return path


def test_unknown_path_and_unknown_id(cli: CliRun) -> None:
    fails(
        cli("get", "no/such/file"),
        "Error: no file at path 'no/such/file'",
        "Try: see `repo list --state all`",
    )
    fails(
        cli("publish", "12345"),
        "Error: no file with id 12345",
        "Try: see the IDs with `repo list --state all`",
    )
    fails(
        cli("show", "nothing"),
        "Error: no file at path 'nothing'",
        "Try: see `repo list --state all`",
    )


def test_reading_a_path_without_a_published_version_says_what_to_do(
    cli: CliRun, source: Path
) -> None:
    assert cli("add", "draft.csv", str(source)).exit_code == 0
    fails(
        cli("cat", "draft.csv"),
        "Error: 'draft.csv' has no published version (newest is file 1, unpublished)",
        "Try: publish it with `repo publish 1`",
    )


def test_bad_tag_bad_date_bad_path_write_nothing(cli: CliRun, source: Path) -> None:
    before = counts(cli)
    fails(
        cli("add", "x.csv", str(source), "--tag", " padded"),
        "Error: tag ' padded' has leading or trailing whitespace",
    )
    fails(
        cli("add", "x.csv", str(source), "--date", "2026-02-30"),
        "Error: not a date: '2026-02-30'",
        "Try: use ISO 8601, e.g. 2026-11-25 or 2026-11-25T18:30Z",
    )
    bad_path = cli("add", "../escape.csv", str(source))
    assert bad_path.exit_code == 1
    assert bad_path.stderr.startswith("Error: ")
    assert "'..'" in bad_path.stderr
    assert "Traceback" not in bad_path.stderr
    # Neither is a local file: both are named, and the order of the arguments too.
    fails(
        cli("add", "x.csv", str(source.parent / "missing.csv")),
        f"Error: local files not found: x.csv, {source.parent / 'missing.csv'}",
        "Try: repo add takes local files first: repo add FILE... [--as NAME | --prefix P]",
    )
    # The seed's spelling, with its source missing: the same line.
    fails(
        cli("add", "x.csv", "-", "--as", "y.csv"),
        "Error: --as names one file, and 2 were given",
        "Try: drop --as to store each under its own name, or use --prefix",
    )
    assert counts(cli) == before


def test_tag_command_rejects_bad_tags_before_touching_the_catalog(
    cli: CliRun, source: Path
) -> None:
    assert cli("add", "t.csv", str(source), "--publish").exit_code == 0
    fails(
        cli("tag", "t.csv", "good", "bad\ttag"),
        "Error: tag 'bad\\ttag' contains control character U+0009",
    )
    fails(cli("tag", "t.csv"), "Error: no tags given", "Try: name tags, or use --date/--period")
    doc = json.loads(cli("show", "t.csv", "--json").stdout)
    assert doc["versions"][0]["tags"] == []


def test_expired_files_cannot_be_published_again(cli: CliRun, source: Path) -> None:
    assert cli("add", "e.csv", str(source), "--publish").exit_code == 0
    assert cli("expire", "e.csv").exit_code == 0
    fails(
        cli("publish", "1"),
        "Error: file 1 (e.csv) is expired and cannot be published again",
        "Try: add a new version of the path instead",
    )


def test_get_refuses_to_overwrite_without_force(cli: CliRun, source: Path, tmp_path: Path) -> None:
    assert cli("add", "g.csv", str(source), "--publish").exit_code == 0
    dest = tmp_path / "existing.csv"
    dest.write_text("mine")
    fails(
        cli("get", "g.csv", "-o", str(dest)),
        f"Error: {dest} already exists",
        "Try: use --force to overwrite it",
    )
    assert dest.read_text() == "mine"
    assert cli("get", "g.csv", "-o", str(dest), "--force").exit_code == 0
    assert dest.read_text() == "a,b\n"


def test_bad_usage_exits_2_with_clicks_message(embedded_cli: CliRun) -> None:
    for argv in (["add"], ["list", "--state", "bogus"], ["frobnicate"], ["find", "--any"]):
        result = embedded_cli(*argv)
        assert result.exit_code == 2, argv
        assert result.stderr.splitlines()[-1].startswith("Error: "), argv
        assert "Traceback" not in result.stderr
    result = embedded_cli("add", "d", "--recursive", "--as", "x")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        "Error: --as names one file; with --recursive, use --prefix"
    )


def test_missing_and_malformed_configuration(tmp_path: Path) -> None:
    missing = CliRun(tmp_path / "nope.json", tmp_path)
    fails(
        missing("list"),
        f"Error: {tmp_path / 'nope.json'}: configuration file not found",
        "Try: check the path given with --config or $REPO_CFG (without either, ~/.repo_cfg "
        "or else the embedded default is used)",
    )
    bad = CliRun(
        write_config(tmp_path / "bad.json", {"store": "ftp://x", "database": "x"}), tmp_path
    )
    fails(
        bad("list"),
        f"Error: {tmp_path / 'bad.json'}: key 'store' must start with s3://, file:// or "
        "sftp://, got 'ftp://x'",
    )


def test_unreachable_database_is_one_line_and_never_shows_the_password(tmp_path: Path) -> None:
    cfg = {
        "store": (tmp_path / "store").as_uri(),
        "database": f"postgresql://someone:hunter2secret@127.0.0.1:{closed_port()}/x",
        "local_root": str(tmp_path / "local"),
    }
    cli = CliRun(write_config(tmp_path / "c.json", cfg), tmp_path)
    result = cli("add", "a.csv", str(tmp_path / "c.json"))
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith("Error: connecting to the catalog: catalog database unavailable")
    assert lines[1] == "Try: check the 'database' settings and that the server is running"
    status = cli("status")
    assert status.exit_code == 1
    assert "hunter2secret" not in result.stderr + status.stdout + status.stderr
    assert status.stdout.splitlines()[1] == f"store    {(tmp_path / 'store').as_uri()}  ok"


@pytest.mark.parametrize("catalog_url", ["sqlite", "postgresql"], indirect=True)
def test_unreachable_store_fails_cleanly_and_records_nothing(
    tmp_path: Path, catalog_url: str, source: Path
) -> None:
    port = closed_port()
    cfg = {
        "store": "s3://nobucket/p",
        "database": catalog_url,
        "local_root": str(tmp_path / "local"),
        "s3_endpoint_url": f"http://127.0.0.1:{port}",
        "s3_access_key": "repotestaccesskey",
        "s3_secret_key": "do-not-print-this-secret",
        "s3_region": "us-east-1",
    }
    cli = CliRun(write_config(tmp_path / "c.json", cfg), tmp_path)
    result = cli("add", "a.csv", str(source), "--publish")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("Error: S3 request for s3://nobucket/")
    assert (
        lines[1] == f"Try: check that the S3 server at http://127.0.0.1:{port} is running "
        "(s3_endpoint_url)"
    )
    assert "do-not-print-this-secret" not in result.stderr
    listed = cli("list", "--state", "all", "--json")
    assert listed.exit_code == 0
    assert json.loads(listed.stdout) == {"files": []}
    status = cli("status", "--json")
    assert status.exit_code == 1
    doc = json.loads(status.stdout)
    assert doc["ok"] is False
    assert doc["catalog"]["reachable"] is True
    assert doc["store"]["reachable"] is False
    assert "do-not-print-this-secret" not in status.stdout


def test_debug_shows_the_traceback_and_errors_otherwise_do_not(embedded_cli: CliRun) -> None:
    plain = embedded_cli("get", "missing")
    assert "Traceback" not in plain.stderr
    debug = embedded_cli("--debug", "get", "missing")
    assert debug.exit_code == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.splitlines()[-2:] == [
        "Error: no file at path 'missing'",
        "Try: see `repo list --state all`",
    ]
