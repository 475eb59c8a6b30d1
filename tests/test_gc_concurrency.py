"""Garbage collection never loses published data: racing publishers, killed collectors,
and two hosts sharing one catalog and store.

Publishers and collectors run as separate OS processes (``tests/gc_workers.py``), each a
simulated host with its own host name and local root. Timing is random; the seed is
printed (run with ``-s``) together with the outcome counts.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pytest

import repo
from repo.paths import DATA_PREFIX

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from repo.catalog import FileRecord

TESTS = Path(__file__).resolve().parent
ALL_STATES = ("unpublished", "published", "expired")
PG_S3 = [pytest.mark.postgres, pytest.mark.s3]
SQLITE_FILE = pytest.param("sqlite-file", id="sqlite-file")
PG_RCLONE = pytest.param("postgresql-rclone", id="postgresql-rclone", marks=PG_S3)
PG_MOTO = pytest.param("postgresql-moto", id="postgresql-moto", marks=PG_S3)


# ------------------------------------------------------------------ set-up


@pytest.fixture
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Catalog and store settings every simulated host shares (``catalog-store``)."""
    catalog, store = str(request.param).split("-")
    url = request.getfixturevalue("sqlite_url" if catalog == "sqlite" else "pg_url")
    config: dict[str, Any] = {"database": url}
    if store == "file":
        root = tmp_path / "store"
        root.mkdir()
        config["store"] = root.as_uri()
    else:
        server = request.getfixturevalue(f"{store}_server")
        bucket = server.create_bucket("t-" + uuid.uuid4().hex[:16])
        config.update(
            store=f"s3://{bucket}/gc-{uuid.uuid4().hex[:8]}",
            s3_endpoint_url=server.endpoint_url,
            s3_access_key=server.access_key,
            s3_secret_key=server.secret_key,
            s3_region=server.region,
        )
    return config


def host_config(tmp_path: Path, shared: dict[str, Any], host: str, **settings: int) -> Path:
    """A config file for one simulated host: its own name and local root."""
    path = tmp_path / f"{host}.json"
    config = dict(shared, host_name=host, local_root=str(tmp_path / "hosts" / host), **settings)
    path.write_text(json.dumps(config))
    return path


def new_seed() -> int:
    seed = random.randrange(2**32)
    print(f"\nseed {seed}")
    return seed


class Worker:
    """One ``python -m gc_workers`` process: ready, go, then one JSON line of results."""

    def __init__(self, tmp_path: Path, role: str, *args: object) -> None:
        self.name = f"{role}-{uuid.uuid4().hex[:6]}"
        self.stderr_path = tmp_path / f"{self.name}.stderr"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gc_workers", role, *map(str, args)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
            )

    @property
    def stdin(self) -> IO[bytes]:
        assert self.proc.stdin is not None
        return self.proc.stdin

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def wait_ready(self, timeout: float = 30) -> None:
        assert self.proc.stdout is not None
        readable, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if readable else b""
        assert line == b"ready\n", f"{self.name} did not get ready:\n{self.stderr()}"

    def send(self, line: str) -> None:
        """Tell the worker something; one that already ended (its own deadline) is fine:
        its result says how it went."""
        with contextlib.suppress(BrokenPipeError):
            self.stdin.write(line.encode() + b"\n")
            self.stdin.flush()

    def result(self, timeout: float) -> dict[str, Any]:
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.name} did not finish in {timeout}s:\n{self.stderr()}")
        assert self.proc.returncode == 0, f"{self.name} failed:\n{self.stderr()}"
        data: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        return data

    def kill(self) -> bool:
        """SIGKILL the worker if it still runs; True if it was killed (not finished)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(BrokenPipeError):
                    pipe.close()
        return self.proc.returncode == -signal.SIGKILL


def start_together(workers: Iterable[Worker]) -> None:
    ready = list(workers)
    for w in ready:
        w.wait_ready()
    for w in ready:
        w.send("go")


# ---------------------------------------------------------------- checks


def all_versions(r: repo.Repo) -> list[FileRecord]:
    try:
        return r.catalog.list_current("*", states=ALL_STATES)
    finally:
        r.rollback()


def store_keys(r: repo.Repo) -> set[str]:
    return {info.key for info in r.store.list(r.store.key_prefix + DATA_PREFIX)}


def damaged_objects(r: repo.Repo, records: Iterable[FileRecord]) -> list[str]:
    """Versions whose object is missing or differs from the catalog's md5 and size."""
    bad = []
    for rec in records:
        try:
            got = r.store.get_into(rec.key, io.BytesIO())
        except repo.NotFoundError:
            bad.append(f"{rec.file_id} {rec.path} {rec.state}: object missing")
            continue
        if (got.md5, got.size) != (rec.md5, rec.size):
            bad.append(f"{rec.file_id} {rec.path}: store has {got}, catalog {rec.md5}/{rec.size}")
    return bad


# ------------------------------------------------- 1. publish racing gc


PUBLISHERS = 2
RACE_ITERATIONS = 50
RACE_PATHS = [f"race/p{i}.bin" for i in range(3)]
#: Longest wait between committing an upload and publishing it: the window GC can win.
MAX_SLEEP_MS = 25


@pytest.mark.parametrize("shared", [SQLITE_FILE, PG_RCLONE, PG_MOTO], indirect=True)
def test_publish_racing_gc_never_loses_a_published_object(
    shared: dict[str, Any], tmp_path: Path
) -> None:
    seed = new_seed()
    gc_config = host_config(tmp_path, shared, "collector", unpublished_ttl_seconds=0)
    with repo.Repo(gc_config) as r:
        # Every path has a current version before the race starts.
        seeded = {p: r.add_file(p).touch(b"seed").publish().file_id for p in RACE_PATHS}
    publishers = [
        Worker(
            tmp_path,
            "publish",
            host_config(tmp_path, shared, f"publisher-{i}", unpublished_ttl_seconds=0),
            RACE_ITERATIONS,
            seed + i,
            MAX_SLEEP_MS,
            ",".join(RACE_PATHS),
        )
        for i in range(PUBLISHERS)
    ]
    # Generous bounds: a shared 2-core machine under load is slow; they still end.
    collector = Worker(tmp_path, "gc-loop", gc_config, seed + PUBLISHERS, 240)
    try:
        start_together([*publishers, collector])
        results = [p.result(timeout=240) for p in publishers]
        collector.send("stop")
        gc_result = collector.result(timeout=30)
    finally:
        for w in [*publishers, collector]:
            w.kill()

    published = [p for res in results for p in res["published"]]
    # GC won the row: still there but claimed (StateError), or already purged.
    claimed = [k for res in results for k in res["claimed"]]
    purged = [k for res in results for k in res["purged"]]
    late = sum(res["late_claims"] for res in results)
    print(
        f"published {len(published)}; gc won {len(claimed) + len(purged)}: claimed "
        f"{len(claimed)} (after publish had begun: {late}), already purged {len(purged)}; "
        f"gc runs {gc_result['runs']}, purged {gc_result['purged']}"
    )
    # Publish locks the version's row before it changes anything, so a claim can only
    # come first (nothing changed) or wait (and then find the version published).
    assert late == 0

    with repo.Repo(gc_config) as r:
        versions = all_versions(r)
        assert r.catalog.claimed() == []
        by_key = {v.key: v for v in versions}
        current = [v for v in versions if v.state == "published"]
        # Exactly one current version per path, and it is what its publisher wrote.
        assert sorted(v.path for v in current) == sorted(RACE_PATHS)
        won = {p["key"]: p for p in published}
        for v in current:
            assert v.key in won or v.file_id == seeded[v.path]
            if v.key in won:
                assert (v.path, v.md5, v.size) == tuple(
                    won[v.key][f] for f in ("path", "md5", "size")
                )
        # Every publish that succeeded survives (current or expired), with its object.
        assert [k for k in won if k not in by_key] == []
        assert {by_key[k].state for k in won} <= {"published", "expired"}
        assert damaged_objects(r, versions) == []
        # What gc won is gone for good, and nothing else is left unpublished.
        lost = claimed + purged
        assert [k for k in lost if k in by_key] == []
        assert [v.file_id for v in versions if v.state == "unpublished"] == []
        assert gc_result["purged"] == len(lost)
        # No object outlives its version and none is missing.
        assert store_keys(r) == set(by_key)

    assert len(published) > 0
    assert len(claimed) + len(purged) > 0, "gc never won a race: widen MAX_SLEEP_MS"


# ----------------------------------------------------- 2. gc killed mid-run


ELIGIBLE = 300
KEPT = 12
KILL_TRIALS = 4


@dataclass
class KillTrial:
    mode: str
    killed: bool
    claimed_left: int
    #: Claimed versions whose object the killed run had not deleted yet.
    claimed_objects_left: int
    unpublished_left: int
    resumed: int
    purged_after: int


@pytest.mark.parametrize("shared", [SQLITE_FILE, PG_RCLONE], indirect=True)
def test_gc_killed_mid_run_is_finished_by_the_next_run(
    shared: dict[str, Any], tmp_path: Path
) -> None:
    rng = random.Random(new_seed())
    maker_config = host_config(tmp_path, shared, "maker")
    gc_config = host_config(tmp_path, shared, "collector", unpublished_ttl_seconds=0)
    with repo.Repo(maker_config) as maker:
        for i in range(KEPT):
            maker.add_file(f"keep/{i}.txt").touch(f"keep {i}\n").publish()
        maker.add_file("keep/0.txt").touch("keep 0, second version\n").publish()
    trials: list[KillTrial] = []
    with repo.Repo(gc_config) as watcher:
        for trial in range(KILL_TRIALS):
            batch = tmp_path / f"batch-{trial}"
            batch.mkdir()
            for i in range(ELIGIBLE):
                (batch / f"{i:03}.bin").write_bytes(rng.randbytes(rng.randint(1, 64)))
            with repo.Repo(maker_config) as maker:
                maker.add_tree(batch, prefix=f"junk/{trial}")
            mode = "after-claim" if trial % 2 == 0 else "random-delay"
            worker = Worker(tmp_path, "gc-once", gc_config)
            try:
                worker.wait_ready()
                worker.send("go")
                if mode == "after-claim":
                    deadline = time.monotonic() + 20
                    while time.monotonic() < deadline and worker.proc.poll() is None:
                        seen = watcher.catalog.claimed()
                        watcher.rollback()
                        if seen:
                            break
                    time.sleep(rng.uniform(0, 0.003))
                else:
                    time.sleep(rng.uniform(0, 0.25))
            finally:
                killed = worker.kill()
            if not killed:
                assert worker.proc.returncode == 0, worker.stderr()

            versions = all_versions(watcher)
            claimed = watcher.catalog.claimed()
            watcher.rollback()
            keys = store_keys(watcher)
            # Objects go only after their versions are claimed: an unclaimed version,
            # whatever its state, still has its object.
            unclaimed = [v for v in versions if v.purge_started_at is None]
            assert [v.file_id for v in unclaimed if v.key not in keys] == []
            kept = [v for v in versions if v.state != "unpublished"]
            assert damaged_objects(watcher, kept) == []

            report = watcher.gc()
            assert report.resumed.count == len(claimed)
            assert sorted(report.resumed.keys) == sorted(v.key for v in claimed)
            after = all_versions(watcher)
            assert watcher.catalog.claimed() == []
            watcher.rollback()
            assert [v.file_id for v in after if v.state == "unpublished"] == []
            assert sorted(v.file_id for v in after) == sorted(v.file_id for v in kept)
            assert store_keys(watcher) == {v.key for v in kept}
            assert damaged_objects(watcher, after) == []
            trials.append(
                KillTrial(
                    mode=mode,
                    killed=killed,
                    claimed_left=len(claimed),
                    claimed_objects_left=sum(v.key in keys for v in claimed),
                    unpublished_left=sum(v.state == "unpublished" for v in versions),
                    resumed=report.resumed.count,
                    purged_after=report.unpublished.count,
                )
            )
    for t in trials:
        print(t)
    assert any(t.killed for t in trials)
    assert any(t.claimed_left for t in trials), "no kill landed between claim and purge"


# -------------------------------------------- 3. two hosts, one catalog


@pytest.mark.parametrize("collector", ["host-b", "host-a"])
@pytest.mark.parametrize("shared", [SQLITE_FILE, PG_RCLONE], indirect=True)
def test_two_hosts_share_a_catalog_and_store_through_gc_and_prune(
    shared: dict[str, Any], tmp_path: Path, collector: str
) -> None:
    settings = {"expired_ttl_seconds": 0, "backups_before_purge": 0}
    a_config = host_config(tmp_path, shared, "host-a", **settings)
    b_config = host_config(tmp_path, shared, "host-b", **settings)
    path = "shared/report.csv"
    with repo.Repo(a_config) as a, repo.Repo(b_config) as b:
        v1 = a.add_file(path).touch("v1\n").publish()
        a.commit()
        seen = b.get_file(path)
        assert seen is not None
        assert seen.file_id == v1.file_id
        assert seen.read_text() == "v1\n"  # downloaded into B's cache
        assert b.cache.cache_path(v1.key).exists()

        v2 = a.add_file(path).touch("v2\n").publish()
        a.commit()
        assert v1.refresh().state == "expired"
        assert {h.name: h.files for h in a.hosts()} == {"host-a": 2, "host-b": 1}

        gc_host, other = (b, a) if collector == "host-b" else (a, b)
        report = gc_host.gc()
        assert report.expired.keys == [v1.key]
        assert (report.unpublished.count, report.resumed.count) == (0, 0)
        with pytest.raises(repo.NotFoundError):
            a.store.head(v1.key)
        assert damaged_objects(a, [a.catalog.get(v2.file_id)]) == []
        # The collector drops its own copy at once; the other host's disk is its own,
        # until its prune finds the version gone from catalog and store.
        assert not gc_host.cache.cache_path(v1.key).exists()
        assert other.cache.cache_path(v1.key).exists()
        pruned = other.prune_cache()
        assert (pruned.keys, pruned.dropped_purged, pruned.dropped_expired) == ([v1.key], 1, 0)
        assert gc_host.prune_cache().keys == []
        assert not other.cache.cache_path(v1.key).exists()

        # A's copy of the current version is untouched and served from its cache.
        assert a.cache.cache_path(v2.key).exists()
        assert b.cache_status().files == 0
        current = a.get_file(path)
        assert current is not None
        assert current.read_text() == "v2\n"
        assert {h.name: h.files for h in a.hosts()} == {"host-a": 1, "host-b": 0}
        assert Counter(v.state for v in all_versions(a)) == {"published": 1}


# ------------------------- what the races turned up, reproduced step by step


@pytest.mark.parametrize("shared", [SQLITE_FILE, PG_RCLONE], indirect=True)
def test_publishing_a_purged_version_says_gc_took_it(
    shared: dict[str, Any], tmp_path: Path
) -> None:
    with repo.Repo(host_config(tmp_path, shared, "h", unpublished_ttl_seconds=0)) as r:
        rf = r.add_file("late.txt").touch("x").upload()
        r.commit()
        assert r.gc().unpublished.keys == [rf.key]
        with pytest.raises(repo.StateError, match="garbage collection"):
            rf.publish()


@contextlib.contextmanager
def run_before(
    r: repo.Repo, matches: Callable[[str], bool], action: Callable[[], object]
) -> Iterator[list[object]]:
    """Run `action` once, just before `r`'s catalog sends SQL that `matches`;
    yields a list that then holds what `action` returned."""
    from sqlalchemy import event

    done: list[object] = []

    def hook(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        if not done and matches(sql):
            done.append(None)  # first, so the action's own SQL does not trigger it
            done[0] = action()

    engine = r.catalog.db.engine
    event.listen(engine, "before_cursor_execute", hook)
    try:
        yield done
    finally:
        event.remove(engine, "before_cursor_execute", hook)


@contextlib.contextmanager
def collector_on(tmp_path: Path, shared: dict[str, Any]) -> Iterator[Callable[[], list[str]]]:
    """Another host's `Repo.gc` (unpublished TTL 0), as a call returning the keys purged."""
    with repo.Repo(host_config(tmp_path, shared, "collector", unpublished_ttl_seconds=0)) as c:

        def purge() -> list[str]:
            return c.gc().unpublished.keys

        yield purge


def locks_the_version_row(sql: str) -> bool:
    return sql.rstrip().endswith("FOR UPDATE") and "FROM files" in sql


@pytest.mark.parametrize("shared", [PG_RCLONE], indirect=True)
def test_publish_that_loses_to_gc_changes_nothing(shared: dict[str, Any], tmp_path: Path) -> None:
    publisher = host_config(tmp_path, shared, "publisher")
    with repo.Repo(publisher) as r, collector_on(tmp_path, shared) as purge:
        current = r.add_file("doc.txt").touch("v1").publish()
        rf = r.add_file("doc.txt").touch("v2").upload()
        r.commit()
        # As in the race: gc claims the new version after publish has locked the path,
        # just before publish locks the version's row.
        with (
            run_before(r, locks_the_version_row, purge) as done,
            pytest.raises(repo.StateError, match="garbage collection"),
        ):
            rf.publish()
        assert done == [[rf.key]]
        # A caller that carries on (say, publishing other files) and commits:
        r.commit()
        still = r.get_file("doc.txt")
        assert still is not None
        assert still.file_id == current.file_id


@pytest.mark.parametrize("shared", [PG_RCLONE], indirect=True)
def test_gc_passes_over_a_publish_that_holds_the_version_and_leaves_it(
    shared: dict[str, Any], tmp_path: Path
) -> None:
    publisher = host_config(tmp_path, shared, "publisher")
    with repo.Repo(publisher) as r, collector_on(tmp_path, shared) as purge:
        rf = r.add_file("doc.txt").touch("v1").upload()
        r.commit()
        result: list[object] = []
        worker = threading.Thread(target=lambda: result.append(purge()), daemon=True)
        rf.publish()  # holds the version's row until commit
        worker.start()
        worker.join(timeout=30)
        assert not worker.is_alive(), "gc waited for the publishing transaction"
        assert result == [[]]  # passed over: nothing claimed
        r.commit()
        assert purge() == []
        assert r.get_file("doc.txt") == rf
