"""``repo archive`` and ``repo thaw`` from the shell, on moto's S3 server: exact lines."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

import pytest

from conftest import CliRun, write_config
from harness.moto_restores import restores_held
from repo import Repo
from test_archive import s3_config

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.s3


@pytest.fixture
def config(moto_server: Any, sqlite_url: str, tmp_path: Path) -> dict[str, Any]:
    return s3_config(moto_server, sqlite_url, tmp_path)


@pytest.fixture
def run(tmp_path: Path, config: dict[str, Any]) -> CliRun:
    return CliRun(write_config(tmp_path / "repo_cfg.json", config), tmp_path)


def published(config: dict[str, Any], path: str, data: bytes) -> int:
    with Repo(config) as r:
        f = r.add(path, io.BytesIO(data), publish=True, keep_cached=False)
        r.commit()
        return f.file_id


def test_archive_then_cat_says_how_to_thaw_then_thaw_makes_it_readable(
    moto_server: Any, run: CliRun, config: dict[str, Any]
) -> None:
    a = published(config, "logs/a.log", b"aaaa")
    b = published(config, "logs/b.log", b"bb")

    dry = run("archive", "logs/*", "--dry-run")
    assert (dry.exit_code, dry.stderr) == (
        0,
        "Note: 2 of them are smaller than the 40 KiB GLACIER bills for each object on top "
        "of its content\n",
    )
    assert dry.stdout == (
        f"would archive logs/a.log (file {a}, 4 B)\n"
        f"would archive logs/b.log (file {b}, 2 B)\n"
        "would archive 2 versions (6 B) to GLACIER; 0 there already, 0 skipped\n"
    )
    done = run("archive", "logs/a.log", "--class", "GLACIER_IR", "--dry-run")
    assert (done.exit_code, done.stderr) == (0, "")  # GLACIER_IR bills no overhead
    done = run("archive", "logs/a.log")
    assert done.exit_code == 0
    assert done.stdout == (
        f"archived logs/a.log (file {a}, 4 B)\n"
        "archived 1 version (4 B) to GLACIER; 0 there already, 0 skipped\n"
    )

    deep = run("verify", "--deep")
    assert (deep.exit_code, deep.stdout.splitlines()[-1]) == (
        0,
        "1 archived objects (4 B) were checked by HEAD only: reading them is a billed "
        "retrieval (GLACIER and DEEP_ARCHIVE ones after `repo thaw`); `--include-archived` "
        "reads those readable",
    )
    assert run("verify", "--include-archived").exit_code == 2

    refused = run("cat", "logs/a.log")
    assert refused.exit_code == 1
    assert refused.stderr == (
        f"Error: logs/a.log (file {a}) is archived in GLACIER and has no restored copy to read\n"
        "Try: repo thaw logs/a.log\n"
    )
    assert run("cat", "logs/b.log").stdout == "bb"

    with restores_held(moto_server) as restore:
        restore.begin()
        thawed = run("thaw", "logs/a.log", "--days", "3")
        assert (thawed.exit_code, thawed.stderr) == (0, "")
        assert thawed.stdout == (
            "thaw (Standard, 3 days): 1 started, 0 extended, 0 already in progress, "
            "0 readable without one\n"
        )
        status = run("thaw", "--status", "logs/a.log")
        assert status.stdout == (
            "ID  PATH        CLASS    STATUS     READABLE UNTIL\n"
            f"{a}   logs/a.log  GLACIER  restoring  -\n"
        )
        restore.hold()
        assert run("cat", "logs/a.log").exit_code == 1
        restore.finish()
        waited = run("thaw", "logs/a.log", "--wait", "--deadline", "10s", "--json")
        doc = json.loads(waited.stdout)
        assert (doc["extended"], [s["status"] for s in doc["statuses"]]) == ([a], ["restored"])
        assert run("cat", "logs/a.log").stdout == "aaaa"
        shown = json.loads(run("show", "logs/a.log", "--json").stdout)
        assert shown["versions"][0]["storage_class"] == "GLACIER"


def test_archive_needs_a_selection_and_an_s3_store(tmp_path: Path, embedded_config: dict) -> None:
    run = CliRun(write_config(tmp_path / "local_cfg.json", embedded_config), tmp_path)
    with Repo(embedded_config) as r:
        r.add("x.txt", io.BytesIO(b"x"), publish=True)
        r.commit()
    bare = run("archive")
    assert bare.exit_code == 2
    assert "say which versions: a PATTERN, tags, --older-than, or several" in bare.stderr
    local = run("archive", "--older-than", "0s")
    assert local.exit_code == 1
    assert local.stderr == (
        f"Error: the store {embedded_config['store']} has no archival storage classes\n"
        "Try: archival needs an S3 store (s3://...)\n"
    )
    age = run("archive", "--older-than", "ninety")
    assert (age.exit_code, age.stderr.splitlines()[0]) == (1, "Error: not an age: 'ninety'")
