"""The seed's workflow done entirely from the shell, on every catalog and store."""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import CliRun

TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def out(result: object) -> str:
    """stdout with wall-clock times masked (same width), after checking the command succeeded."""
    assert result.exit_code == 0, (result.stdout, result.stderr)  # type: ignore[attr-defined]
    assert result.stderr == ""  # type: ignore[attr-defined]  # nothing extra when piped
    return TIME.sub("YYYY-MM-DD hh:mm:ss", result.stdout)  # type: ignore[attr-defined]


def test_seed_workflow_from_the_shell(cli: CliRun, tmp_path: Path) -> None:
    day1 = tmp_path / "day1.csv"
    day1.write_text("day,visits\n2026-11-24,10\n")
    day2 = tmp_path / "day2.csv"
    day2.write_text("day,visits\n2026-11-25,12\n")

    assert out(cli("create")).endswith(": reachable\n")
    assert out(cli("add", "reports/daily.csv", str(day1), "--tag", "sales")) == (
        "added reports/daily.csv (file 1, 25 B, unpublished)\n"
    )
    assert out(cli("tag", "reports/daily.csv", "--date", "2026-11-24")) == (
        "3 tag(s) added to reports/daily.csv (file 1): "
        "day=2026-11-24, week=2026-W48, month=2026-11\n"
    )
    assert out(cli("publish", "reports/daily.csv")) == "published reports/daily.csv (file 1)\n"
    assert out(cli("find", "--all", "sales", "--all", "day=2026-11-24")) == (
        "ID  STATE      SIZE  UPDATED (UTC)        PATH\n"
        "1   published  25 B  YYYY-MM-DD hh:mm:ss  reports/daily.csv\n"
    )

    # A second version, date-tagged while added and published in one go.
    assert (
        out(
            cli(
                "add",
                "reports/daily.csv",
                str(day2),
                "-t",
                "sales",
                "--date",
                "2026-11-25T09:30",
                "--period",
                "hour",
                "--publish",
            )
        )
        == "added reports/daily.csv (file 2, 25 B, published)\n"
    )
    assert out(cli("find", "--any", "hour=2026-11-25T09", "--exclude", "draft")) == (
        "ID  STATE      SIZE  UPDATED (UTC)        PATH\n"
        "2   published  25 B  YYYY-MM-DD hh:mm:ss  reports/daily.csv\n"
    )
    # The first version was superseded: no longer found, still listed as expired.
    assert cli("find", "--all", "day=2026-11-24").stdout == ""
    assert out(cli("list", "--state", "all")) == (
        "ID  STATE      SIZE  UPDATED (UTC)        PATH\n"
        "1   expired    25 B  YYYY-MM-DD hh:mm:ss  reports/daily.csv\n"
        "2   published  25 B  YYYY-MM-DD hh:mm:ss  reports/daily.csv\n"
    )

    got = cli("get", "reports/daily.csv", "-o", str(tmp_path / "copy.csv"))
    assert out(got) == f"saved {tmp_path / 'copy.csv'} (25 B, file 2)\n"
    assert (tmp_path / "copy.csv").read_text() == day2.read_text()
    assert cli("cat", "reports/daily.csv").stdout == day2.read_text()
    assert cli("get", "reports/daily.csv", "-o", "-").stdout == day2.read_text()

    assert out(cli("expire", "reports/daily.csv")) == "expired reports/daily.csv (file 2)\n"
    assert cli("list").stdout == ""
    shown = json.loads(out(cli("show", "reports/daily.csv", "--json")))
    assert [(v["id"], v["state"]) for v in shown["versions"]] == [(2, "expired"), (1, "expired")]
    assert shown["versions"][0]["tags"] == [
        "day=2026-11-25",
        "hour=2026-11-25T09",
        "month=2026-11",
        "sales",
        "week=2026-W48",
    ]
    assert [h["host"] for h in shown["versions"][0]["hosts"]] == ["test-host"]


def test_add_from_stdin_then_upload_and_publish_by_id(cli: CliRun) -> None:
    assert out(cli("add", "logs/job.log", "-", input=b"line 1\nline 2\n")) == (
        "added logs/job.log (file 1, 14 B, unpublished)\n"
    )
    md5 = hashlib.md5(b"line 1\nline 2\n").hexdigest()
    assert out(cli("upload", "1")) == f"uploaded logs/job.log (file 1, 14 B, md5 {md5})\n"
    assert out(cli("publish", "1")) == "published logs/job.log (file 1)\n"
    assert cli("cat", "logs/job.log").stdout == "line 1\nline 2\n"


def test_recursive_add_uploads_a_tree_under_a_prefix(cli: CliRun, tmp_path: Path) -> None:
    tree = tmp_path / "out"
    (tree / "sub").mkdir(parents=True)
    for name in ("a.txt", "b.txt", "sub/c.txt"):
        (tree / name).write_text(name)
    result = cli(
        "add", str(tree), "--recursive", "--prefix", "runs/42", "-t", "run=42", "--publish"
    )
    assert out(result) == "added 3 files (19 B, published)\n"
    found = json.loads(out(cli("find", "--all", "run=42", "--json")))
    assert [(f["path"], f["size"], f["tags"]) for f in found["files"]] == [
        ("runs/42/a.txt", 5, ["run=42"]),
        ("runs/42/b.txt", 5, ["run=42"]),
        ("runs/42/sub/c.txt", 9, ["run=42"]),
    ]
    assert cli("cat", "runs/42/sub/c.txt").stdout == "sub/c.txt"


def test_path_tags_apply_to_every_version_and_can_be_removed(cli: CliRun, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_text("x")
    out(cli("add", "p/f", str(src), "--publish"))
    assert out(cli("tag", "p/f", "keep", "--path-tag")) == "1 tag(s) added to path p/f: keep\n"
    out(cli("add", "p/f", str(src), "--publish"))
    assert [
        f["id"] for f in json.loads(cli("find", "--all", "keep", "--json").stdout)["files"]
    ] == [2]
    assert out(cli("tag", "p/f", "keep", "--path-tag", "--remove")) == (
        "1 tag(s) removed from path p/f: keep\n"
    )
    assert json.loads(cli("find", "--all", "keep", "--json").stdout) == {"files": []}


def test_embedded_default_needs_no_configuration(embedded_cli: CliRun, tmp_path: Path) -> None:
    src = tmp_path / "hello.txt"
    src.write_text("hello\n")
    assert out(embedded_cli("add", "hello.txt", str(src), "--publish")) == (
        "added hello.txt (file 1, 6 B, published)\n"
    )
    assert embedded_cli("cat", "hello.txt").stdout == "hello\n"
    status = json.loads(out(embedded_cli("status", "--json")))
    assert status["ok"] is True
    assert status["states"]["published"] == {"file_count": 1, "bytes": 6}
    assert status["catalog"]["url"].startswith("sqlite:///")


def test_housekeeping_on_the_embedded_default(embedded_cli: CliRun, tmp_path: Path) -> None:
    src = tmp_path / "v.txt"
    src.write_text("one")
    # --cache: a file added from this host is not cached unless asked.
    out(embedded_cli("add", "v.txt", str(src), "--publish", "--cache"))
    src.write_text("two")
    out(embedded_cli("add", "v.txt", str(src), "--publish", "--cache"))  # file 1 expired
    # Defaults: expired files wait 7 days and two backups, so nothing goes yet: said.
    assert out(embedded_cli("gc", "--dry-run")) == (
        "would purge:\n"
        "CATEGORY     FILES  BYTES\n"
        "unpublished  0      0 B\n"
        "expired      0      0 B\n"
        "kept 1 expired versions for 7 days after they expired (expired_ttl_seconds)\n"
    )
    status = json.loads(out(embedded_cli("cache", "status", "--json")))
    assert (status["file_count"], status["bytes"], status["cache_max_bytes"]) == (2, 6, None)
    assert out(embedded_cli("cache", "prune")) == (
        "dropped 1 expired and 0 purged copies, evicted 0 for space (3 B freed)\n"
    )
    hosts = json.loads(out(embedded_cli("host", "list", "--json")))["hosts"]
    assert [(h["file_count"], h["bytes"]) for h in hosts] == [(1, 3)]
    assert embedded_cli("cat", "v.txt").stdout == "two"


def test_which_commands_leave_a_copy_in_this_hosts_cache(
    embedded_cli: CliRun, tmp_path: Path
) -> None:
    def cached() -> int:
        return int(json.loads(out(embedded_cli("cache", "status", "--json")))["file_count"])

    src = tmp_path / "f.txt"
    src.write_text("content")
    out(embedded_cli("add", "f.txt", str(src), "--publish"))
    assert cached() == 0  # a local file is sent from where it is
    out(embedded_cli("add", "g.txt", str(src), "--publish", "--cache"))
    assert cached() == 1
    out(embedded_cli("get", "f.txt", "-o", str(tmp_path / "out.txt")))
    assert (tmp_path / "out.txt").read_text() == "content"
    assert cached() == 1  # downloaded straight into the file
    out(embedded_cli("get", "f.txt", "-o", str(tmp_path / "out2.txt"), "--cache"))
    assert cached() == 2
    assert embedded_cli("cat", "g.txt").stdout == "content"
    assert cached() == 2
