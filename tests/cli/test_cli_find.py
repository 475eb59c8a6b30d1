"""`repo find --limit N` and `--count`: exact output, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import pytest

from conftest import CliRun, write_config
from repo import Repo

if TYPE_CHECKING:
    from pathlib import Path

TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
HEADER = "ID  STATE        SIZE  UPDATED (UTC)        PATH\n"


def out(result: Any) -> str:
    """stdout with times masked, after checking the command succeeded quietly."""
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert result.stderr == ""
    return TIME.sub("YYYY-MM-DD hh:mm:ss", result.stdout)


@pytest.fixture
def cli(tmp_path: Path, local_config: dict[str, str]) -> CliRun:
    """Files 1-5 are r/a..r/e, published, tagged t (b and d also x); file 6 is a new,
    unpublished version of r/b, tagged t; file 7 supersedes r/e (file 5), untagged."""
    with Repo(local_config) as r:
        for name in "abcde":
            f = r.add_file(f"r/{name}").touch(name).publish().tag("t")
            if name in "bd":
                f.tag("x")
        r.add_file("r/b").touch("b2").tag("t")
        r.add_file("r/e").touch("e2").publish()
        r.commit()
    return CliRun(write_config(tmp_path / "cfg.json", local_config), tmp_path)


def test_limit_prints_the_first_files_by_path(cli: CliRun) -> None:
    assert out(cli("find", "--all", "t", "--limit", "2")) == (
        "ID  STATE      SIZE  UPDATED (UTC)        PATH\n"
        "1   published  1 B   YYYY-MM-DD hh:mm:ss  r/a\n"
        "2   published  1 B   YYYY-MM-DD hh:mm:ss  r/b\n"
    )
    assert out(cli("find", "--all", "t", "--exclude", "x", "--limit", "5")) == (
        "ID  STATE      SIZE  UPDATED (UTC)        PATH\n"
        "1   published  1 B   YYYY-MM-DD hh:mm:ss  r/a\n"
        "3   published  1 B   YYYY-MM-DD hh:mm:ss  r/c\n"
    )


def test_limit_with_one_state_counts_only_files_in_it(cli: CliRun) -> None:
    assert out(cli("find", "--any", "t", "--state", "all", "--limit", "3")) == (
        HEADER + "1   published    1 B   YYYY-MM-DD hh:mm:ss  r/a\n"
        "2   published    1 B   YYYY-MM-DD hh:mm:ss  r/b\n"
        "6   unpublished  -     YYYY-MM-DD hh:mm:ss  r/b\n"
    )
    assert out(cli("find", "--all", "t", "--state", "expired", "--limit", "1")) == (
        "ID  STATE    SIZE  UPDATED (UTC)        PATH\n"
        "5   expired  1 B   YYYY-MM-DD hh:mm:ss  r/e\n"
    )


def test_limit_zero_finds_nothing(cli: CliRun) -> None:
    result = cli("find", "--all", "t", "--limit", "0")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "no files\n")
    assert out(cli("find", "--all", "t", "--limit", "0", "--json")) == '{\n  "files": []\n}\n'


def test_limit_json_is_a_list_of_file_documents(cli: CliRun) -> None:
    doc = json.loads(out(cli("find", "--all", "x", "--limit", "1", "--json")))
    assert [(f["id"], f["path"], f["tags"]) for f in doc["files"]] == [(2, "r/b", ["t", "x"])]


def test_count_prints_just_the_number(cli: CliRun) -> None:
    assert out(cli("find", "--all", "t", "--count")) == "4\n"
    assert out(cli("find", "--all", "t", "--exclude", "x", "--count")) == "2\n"
    assert out(cli("find", "--count")) == "5\n"  # every current file
    assert out(cli("find", "--all", "nope", "--count")) == "0\n"
    assert out(cli("find", "--all", "t", "--state", "all", "--count")) == "6\n"
    assert out(cli("find", "--all", "t", "--state", "unpublished", "--count")) == "1\n"
    assert out(cli("find", "--all", "t", "--count", "--json")) == '{\n  "file_count": 4\n}\n'


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--count", "--limit", "1"], "Error: use --count or --limit, not both"),
        (["--limit", "-1"], "Error: Invalid value for '--limit': -1 is not in the range x>=0."),
        (
            ["--limit", "many"],
            "Error: Invalid value for '--limit': 'many' is not a valid integer range.",
        ),
    ],
)
def test_bad_limit_or_count_is_a_usage_error(cli: CliRun, argv: list[str], message: str) -> None:
    result = cli("find", "--all", "t", *argv)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert message in result.stderr.splitlines()
