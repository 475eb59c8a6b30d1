"""Drill (4) of docs/replicas.md: SIGKILL during replication and during a purge of
replicated versions; the next run finishes, no copy lost or left unrecorded, nothing
below `mincopies`."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest

from conftest import write_config
from harness.proxy import FaultProxy
from replica_stores import three_store_config
from repo import Repo

if TYPE_CHECKING:
    from pathlib import Path

    from harness.s3servers import S3Server

pytestmark = pytest.mark.s3

FILES = 16


@pytest.fixture
def stores(
    tmp_path: Path, sqlite_url: str, moto_server: S3Server, rclone_server: S3Server
) -> dict[str, Any]:
    config = {
        **three_store_config(tmp_path, sqlite_url, moto_server, rclone_server),
        "numcopies": 3,
        "mincopies": 2,
    }
    with Repo(config) as r:
        for i in range(FILES):
            r.add_file(f"f/{i:03}.bin").touch(f"file {i} ".encode() * (i + 1)).publish()
        r.commit()
    return config


def _run_and_kill(cfg: Path, args: list[str], stores: dict[str, Any], until: Any) -> bool:
    """Run `repo ARGS` in a process and SIGKILL it once `until(repo)` holds; True if it was
    killed before it finished."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "repo", "--config", str(cfg), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            with Repo(stores) as r:
                if until(r):
                    proc.send_signal(signal.SIGKILL)
                    break
            time.sleep(0.02)
    finally:
        proc.wait(timeout=60)
    return proc.returncode == -signal.SIGKILL


def _data_objects(r: Repo) -> dict[str, set[str]]:
    """Every data object in every store, by store name."""
    found = {}
    for name in r.session.config.store_names:
        store = r.session.stores.named(name)
        found[name] = {i.key for i in store.list(store.key_prefix + "data/")}
    return found


def _recorded(r: Repo) -> tuple[dict[str, set[str]], dict[int, int]]:
    """The objects the catalog names, by store, and each live version's verified copies."""
    named: dict[str, set[str]] = {n: set() for n in r.session.config.store_names}
    good: dict[int, int] = {}
    after = 0
    while page := r.catalog.versions_to_copy(after_id=after, limit=500):
        after = page[-1].file_id
        copies = r.catalog.replicas_of(v.file_id for v in page)
        for rec in page:
            rows = {c.store: c for c in copies.get(rec.file_id, [])}
            home = r.session.stores.home_name(rec)
            assert home is not None
            if home not in rows:
                named[home].add(rec.key)
            good[rec.file_id] = (home not in rows) + sum(c.verified for c in rows.values())
            for copy in rows.values():
                named[copy.store].add(copy.key)
    return named, good


def _copies(r: Repo) -> int:
    return sum(len(c) for c in r.catalog.replicas_of(range(1, FILES + 1)).values())


def test_replication_killed_midway_is_finished_by_the_next_run(
    stores: dict[str, Any], tmp_path: Path
) -> None:
    cfg = write_config(tmp_path / "cfg.json", stores)
    killed = _run_and_kill(cfg, ["replicate"], stores, lambda r: _copies(r) >= FILES // 2)
    with Repo(stores) as r:
        report = r.replicate()
        assert report.ok
        named, good = _recorded(r)
        assert set(good.values()) == {3}  # every version at numcopies
        assert _data_objects(r) == named  # every object recorded, every record an object
    assert killed or report.copied == 0  # a run that finished first left nothing to do


def test_a_gc_purging_replicated_versions_killed_midway_is_finished_by_the_next(
    stores: dict[str, Any], tmp_path: Path
) -> None:
    config = {**stores, "expired_ttl_seconds": 0, "backups_before_purge": 0}
    with Repo(config) as r:
        assert r.replicate().copied == 2 * FILES
        for i in range(FILES):
            r.add_file(f"f/{i:03}.bin").touch(b"newer").publish()  # the old ones expire
        r.commit()
    cfg = write_config(tmp_path / "cfg.json", config)
    killed = _run_and_kill(cfg, ["gc"], config, lambda r: len(r.catalog.claimed()) > 0)
    with Repo(config) as r:
        report = r.gc()  # finishes the claims a killed run left
        assert r.catalog.claimed() == []
        named, good = _recorded(r)
        assert sorted(good) == list(range(FILES + 1, 2 * FILES + 1))  # the new versions
        assert r.replicate().copied == 2 * FILES
        named, good = _recorded(r)
        assert set(good.values()) == {3}
        assert _data_objects(r) == named  # no copy of a purged version left anywhere
    assert killed or report.expired.count == 0


def test_replication_interrupted_records_every_copy_it_made_and_the_next_run_finishes(
    stores: dict[str, Any], tmp_path: Path, rclone_server: S3Server
) -> None:
    with FaultProxy(rclone_server.endpoint_url) as proxy:
        second = {**stores["stores"]["second"], "s3_endpoint_url": proxy.endpoint_url}
        config = {**stores, "stores": {**stores["stores"], "second": second}}
        # Copies into `second` hang a while; those into `nas` are made at once.
        proxy.delay_requests(3, method="PUT", path="/copies/data/", count=None)
        cfg = write_config(tmp_path / "cfg.json", config)
        proc = subprocess.Popen(
            [sys.executable, "-m", "repo", "--config", str(cfg), "replicate"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        nas = tmp_path / "nas" / "data"
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                if nas.is_dir() and sum(1 for p in nas.rglob("*~*") if p.is_file()) == FILES:
                    proc.send_signal(signal.SIGINT)
                    break
                time.sleep(0.02)
        finally:
            assert proc.wait(timeout=60) == 130  # interrupted, after the copies under way
        proxy.reset()
        with Repo(config) as r:
            rows = r.catalog.replicas_of(range(1, FILES + 1))
            states = {(c.store, c.state) for copies in rows.values() for c in copies}
            # Every copy made was recorded: none in `nas` is left ``writing``.
            assert ("nas", "writing") not in states
            assert ("nas", "verified") in states
            report = r.replicate()
            assert report.ok
            named, good = _recorded(r)
            assert set(good.values()) == {3}
            assert _data_objects(r) == named
