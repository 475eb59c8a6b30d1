"""Dropping copies never goes below `mincopies`, even when drops race
(src/repo/drop.py, `Catalog.claim_drop`)."""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING

import pytest

from conftest import CliRun, write_config
from replica_stores import three_directories
from repo import Repo
from repo.errors import StateError

if TYPE_CHECKING:
    from pathlib import Path


def _verified(r: Repo, file_id: int) -> list[str]:
    rows = r.catalog.replicas_of([file_id]).get(file_id, [])
    named = {c.store for c in rows}
    own = [] if "main" in named else ["main"]
    return sorted(own + [c.store for c in rows if c.verified])


def test_a_drop_deletes_the_copy_and_refuses_to_go_below_the_floor(
    tmp_path: Path, sqlite_url: str
) -> None:
    with Repo(three_directories(tmp_path, sqlite_url, mincopies=2)) as r:
        f = r.add_file("a.txt").touch(b"a").publish()
        r.commit()
        assert r.replicate().copied == 2
        key = r.session.stores.copy_key(f.record, "nas")
        assert (tmp_path / "nas" / key).exists()
        assert r.drop_copy(f.file_id, "nas") == 2
        assert not (tmp_path / "nas" / key).exists()
        assert _verified(r, f.file_id) == ["main", "second"]
        with pytest.raises(StateError, match="would leave 1 verified copies, below mincopies 2"):
            r.drop_copy(f.file_id, "main")
        r.rollback()
        with pytest.raises(StateError, match="no verified copy in store 'nas'"):
            r.drop_copy(f.file_id, "nas")
        r.rollback()
        assert (tmp_path / "main" / f.key).read_bytes() == b"a"


def test_concurrent_drops_on_postgresql_never_go_below_mincopies(
    tmp_path: Path, pg_url: str
) -> None:
    config = three_directories(tmp_path, pg_url, mincopies=2)
    with Repo(config) as r:
        ids = [r.add_file(f"f/{i}").touch(f"{i}".encode()).publish().file_id for i in range(8)]
        r.commit()
        assert r.replicate().copied == 16
    outcomes: dict[str, list[str]] = {"second": [], "nas": []}
    start = threading.Barrier(2)

    def drop_all(store: str) -> None:
        with Repo({**config, "local_root": str(tmp_path / f"local-{store}")}) as mine:
            for file_id in ids:
                start.wait(timeout=30)
                try:
                    mine.drop_copy(file_id, store)
                    outcomes[store].append("dropped")
                except StateError:
                    mine.rollback()
                    outcomes[store].append("refused")

    threads = [threading.Thread(target=drop_all, args=(s,)) for s in outcomes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    # Of each version's two drops, exactly one went through: the other counted without it.
    assert [sorted(pair) for pair in zip(*outcomes.values(), strict=True)] == [
        ["dropped", "refused"]
    ] * len(ids)
    with Repo(config) as r:
        assert {len(_verified(r, i)) for i in ids} == {2}
        assert r.verify(deep=True).ok


def test_drop_command_says_what_is_left_and_refuses_below_the_floor(
    tmp_path: Path, sqlite_url: str
) -> None:
    config = three_directories(tmp_path, sqlite_url, mincopies=2)
    run = CliRun(write_config(tmp_path / "cfg.json", config), tmp_path)
    with Repo(config) as r:
        f = r.add_file("a.txt").touch(b"a").publish()
        r.commit()
        assert r.replicate().copied == 2
    swapped = run("drop", "nas", "a.txt")
    assert (swapped.exit_code, swapped.stderr) == (
        1,
        "Error: 'a.txt' is not a store of this repository, and 'nas' is one\n"
        "Try: the version comes first: repo drop a.txt nas\n",
    )
    done = run("drop", "a.txt", "nas")
    assert (done.exit_code, done.stdout) == (
        0,
        f"dropped the copy of a.txt (file {f.file_id}) in store nas; 2 verified copies left\n",
    )
    refused = run("drop", str(f.file_id), "second", "--json")
    assert refused.exit_code == 1
    assert json.loads(refused.stderr) == {
        "error": f"dropping the copy of file {f.file_id} in store 'second' would leave 1 "
        "verified copies, below mincopies 2",
        "hint": "make another copy first (`repo replicate`), or lower mincopies",
    }


def test_show_lists_each_copy_by_store_and_its_state(tmp_path: Path, sqlite_url: str) -> None:
    config = three_directories(tmp_path, sqlite_url)
    run = CliRun(write_config(tmp_path / "cfg.json", config), tmp_path)
    with Repo(config) as r:
        f = r.add_file("a.txt").touch(b"a").publish()
        r.commit()
        r.replicate()
        r.drop_copy(f.file_id, "second")
    shown = run("show", "a.txt")
    assert shown.exit_code == 0, shown.output
    assert "  copies     main (verified), nas (verified)\n" in shown.stdout
    doc = json.loads(run("show", "a.txt", "--json").stdout)["versions"][0]
    assert [(c["store"], c["state"], c["own"], c["configured"]) for c in doc["copies"]] == [
        ("main", "verified", True, True),
        ("nas", "verified", False, True),
    ]
    # A copy a read found lost is shown so, and a store the configuration no longer
    # has is listed as recorded, never opened.
    del config["stores"]["nas"]
    config["numcopies"] = 2
    with Repo(config) as r:
        r.catalog.replica_lost(f.file_id, "main", f.key, when=f.record.created_at)
        r.commit()
        (copies,) = r.copies([r.file(f.file_id)]).values()
    assert [(c.store, c.state, c.configured) for c in copies] == [
        ("main", "lost", True),
        ("nas", "verified", False),
    ]
