"""`repo store list` and `repo store decommission`: what each store holds, and a store
taken out of the configuration forgotten so that garbage collection can go on
(src/repo/store_admin.py)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from conftest import CliRun, write_config
from replica_stores import three_directories
from repo import Repo
from repo.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from pathlib import Path


def _three_directories(tmp_path: Path, database: str) -> dict[str, Any]:
    return three_directories(tmp_path, database, expired_ttl_seconds=0, backups_before_purge=0)


def _objects(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "data").rglob("*") if p.is_file())


def test_a_store_out_of_the_configuration_holds_gc_back_until_decommissioned(
    tmp_path: Path, sqlite_url: str
) -> None:
    config = _three_directories(tmp_path, sqlite_url)
    with Repo(config) as r:
        old = r.add_file("a.txt").touch(b"old").publish()
        r.commit()
        assert r.replicate().copied == 2
        listed = {s.name: s for s in r.stores()}
        assert [(s.versions, s.copies, s.writing, s.lost) for s in listed.values()] == [
            (1, 0, 0, 0),
            (0, 1, 0, 0),
            (0, 1, 0, 0),
        ]
        assert listed["nas"].copy_bytes == 3
        with pytest.raises(UsageError, match=r"store 'nas' is configured \(stores.nas\)"):
            r.decommission_store("nas")
    # `nas` retired: taken out of the configuration.
    del config["stores"]["nas"]
    config["numcopies"] = 2
    held = _objects(tmp_path / "nas")
    with Repo(config) as r:
        assert [(s.name, s.configured, s.versions, s.copies) for s in r.stores()] == [
            ("main", True, 1, 0),
            ("second", True, 0, 1),
            ("nas", False, 0, 1),
        ]
        r.add_file("a.txt").touch(b"new").publish()
        r.commit()
        kept = r.gc()
        assert kept.expired.count == 0  # nas's copy is recorded, and cannot be deleted
        (line,) = kept.not_done
        assert "store 'nas' is not configured" in line
        assert line.endswith("; if a store is gone: `repo store decommission NAME`")
        with pytest.raises(NotFoundError, match="no copies in store 'tape'"):
            r.decommission_store("tape")
        assert r.decommission_store("nas") == 1
        assert "nas" not in {s.name for s in r.stores()}
        done = r.gc()
        assert (done.expired.count, done.not_done) == (1, [])
        with pytest.raises(NotFoundError):
            r.file(old.file_id)
    # Nothing in the retired store was touched; the others lost the old version.
    assert _objects(tmp_path / "nas") == held
    # (The new version is not replicated yet.)
    assert (len(_objects(tmp_path / "main")), _objects(tmp_path / "second")) == (1, [])


def test_store_commands_list_and_decommission(tmp_path: Path, sqlite_url: str) -> None:
    config = _three_directories(tmp_path, sqlite_url)
    with Repo(config) as r:
        r.add_file("a.txt").touch(b"alpha").publish()
        r.commit()
        r.replicate()
    run = CliRun(write_config(tmp_path / "cfg.json", config), tmp_path)
    refused = run("store", "decommission", "second", "--yes")
    assert (refused.exit_code, refused.stderr) == (
        1,
        "Error: store 'second' is configured (stores.second); its copies are counted and "
        f"read\nTry: take it out of {tmp_path / 'cfg.json'} first, then decommission it\n",
    )
    del config["stores"]["second"]
    config["numcopies"] = 2
    run = CliRun(write_config(tmp_path / "cfg.json", config), tmp_path)
    listed = run("store", "list")
    assert listed.exit_code == 0, listed.output
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert rows == [
        ["STORE", "URL", "VERSIONS", "COPIES", "WRITING", "LOST", "BYTES"],
        ["main", (tmp_path / "main").as_uri(), "1", "0", "0", "0", "5", "B"],
        ["nas", (tmp_path / "nas").as_uri(), "0", "1", "0", "0", "5", "B"],
        ["second", "(not", "configured)", "0", "1", "0", "0", "5", "B"],
    ]
    assert listed.stderr == (
        "Stores no longer configured: second; garbage collection leaves their versions "
        "alone until `repo store decommission NAME` forgets them\n"
    )
    doc = json.loads(run("store", "list", "--json").stdout)["stores"]
    assert [(s["name"], s["configured"], s["copies"]) for s in doc] == [
        ("main", True, 0),
        ("nas", True, 1),
        ("second", False, 1),
    ]
    done = run("store", "decommission", "second", "--yes")
    assert (done.exit_code, done.stdout) == (
        0,
        "forgot 1 copy recorded in store second; nothing in any store was touched\n",
    )
    again = run("store", "decommission", "second", "--yes", "--json")
    assert again.exit_code == 1
    assert json.loads(again.stderr) == {
        "error": "the catalog records no copies in store 'second'",
        "hint": "`repo store list` names the stores it knows",
    }


def test_status_checks_every_store_and_fails_when_one_does_not_answer(
    tmp_path: Path, sqlite_url: str
) -> None:
    config = _three_directories(tmp_path, sqlite_url)
    run = CliRun(write_config(tmp_path / "cfg.json", config), tmp_path)
    ok = run("status")
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.splitlines()[1:4] == [
        f"store    {(tmp_path / 'main').as_uri()} (main)  ok",
        f"store    {(tmp_path / 'second').as_uri()} (second)  ok",
        f"store    {(tmp_path / 'nas').as_uri()} (nas)  ok",
    ]
    # `nas` cannot be listed: a file where its directory should be.
    (tmp_path / "nas").rmdir()
    (tmp_path / "nas").write_bytes(b"")
    down = run("status", "--json")
    assert down.exit_code == 1
    doc = json.loads(down.stdout)
    assert (doc["ok"], doc["store"]["reachable"]) == (False, True)
    assert [(s["name"], s["reachable"]) for s in doc["stores"]] == [
        ("second", True),
        ("nas", False),
    ]
