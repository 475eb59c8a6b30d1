"""Many hosts at once: publishing, tagging, reading and collecting garbage on shared paths.

N worker processes (``tests/system/load_workers.py``), each a simulated host with its own host
name and local root, share one PostgreSQL catalog and one rclone store for a bounded
time; two of them also run gc with every TTL at 0. Meanwhile a checker in this process
samples the catalog with plain SQL. Afterwards: exactly one current version per path at
every sample, no lost or resurrected tag, every worker done in time, no error but the
documented retryable `ConflictError`, every current object whole. ``pytest -s`` prints
the seed and the throughput per operation; REPO_SOAK=1 runs longer with more workers.
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
from sqlalchemy import and_, create_engine, func
from sqlalchemy import select as sql_select

import repo
from repo.catalog.schema import file_tags, files, path_tags, paths, tags
from soak import trials

if TYPE_CHECKING:
    from harness.s3servers import RcloneS3Server

TESTS = Path(__file__).resolve().parent
WORKERS = trials(8, 16)
COLLECTORS = 2
LOAD_SECONDS = trials(8, 120)
PATHS = [f"load/{i}.txt" for i in range(trials(6, 10))]
#: Beyond the load time: start-up on a busy 2-core machine, and the last operation.
START_TIMEOUT_S = 90.0
END_MARGIN_S = 60.0
#: Errors a caller is told to retry (their hint says so); nothing else may reach a worker.
RETRYABLE = {"ConflictError"}
CHECK_INTERVAL_S = 0.05
TAG_SNAPSHOT_EVERY = 5
ALL_STATES = ("unpublished", "published", "expired")


class Worker:
    """One ``python -m load_workers`` process."""

    def __init__(self, tmp_path: Path, args: list[str]) -> None:
        self.name = args[1]
        self.stderr_path = tmp_path / f"{self.name}.stderr"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "load_workers", *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
            )

    def _pipe(self, which: str) -> IO[bytes]:
        pipe = getattr(self.proc, which)
        assert pipe is not None
        return pipe  # type: ignore[no-any-return]

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def wait_ready(self, deadline: float) -> None:
        out = self._pipe("stdout")
        readable, _, _ = select.select([out], [], [], max(0.0, deadline - time.monotonic()))
        line = out.readline() if readable else b""
        assert line == b"ready\n", f"{self.name} did not get ready:\n{self.stderr()}"

    def go(self) -> None:
        self._pipe("stdin").write(b"go\n")
        self._pipe("stdin").flush()

    def result(self, deadline: float) -> dict[str, Any]:
        try:
            out, _ = self.proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.name} did not finish in time (deadlock?):\n{self.stderr()}")
        assert self.proc.returncode == 0, f"{self.name} failed:\n{self.stderr()}"
        data: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        return data

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


@dataclass
class TagSnapshot:
    """Worker tags in the catalog as one statement saw them, between monotonic t0 and t1."""

    t0: float
    t1: float
    #: Targets that existed (file ids, or paths), and (target, tag) pairs present.
    targets: set[Any]
    pairs: set[tuple[Any, str]]


class Checker(threading.Thread):
    """Samples the catalog with plain SQL while the workers run.

    Every sample: exactly one current version per path, none claimed by gc. Every
    TAG_SNAPSHOT_EVERY samples: the worker tags on files and on paths, for
    `check_tags` to compare with what the workers say they committed.
    """

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.engine = create_engine(url)
        self.samples = 0
        self.violations: list[str] = []
        self.file_tags: list[TagSnapshot] = []
        self.path_tags: list[TagSnapshot] = []
        self.failure: BaseException | None = None
        self._halt = threading.Event()

    def sample(self) -> None:
        per_path = (
            sql_select(paths.c.path, func.count(files.c.file_id))
            .select_from(
                paths.outerjoin(
                    files, and_(files.c.path_id == paths.c.path_id, files.c.state == "published")
                )
            )
            .where(paths.c.path.in_(PATHS))
            .group_by(paths.c.path)
        )
        claimed = sql_select(func.count()).where(
            files.c.state == "published", files.c.purge_started_at.is_not(None)
        )
        with self.engine.connect() as conn:
            counts = {row[0]: row[1] for row in conn.execute(per_path)}
            claimed_current = conn.execute(claimed).scalar_one()
        wrong = {p: counts.get(p, 0) for p in PATHS if counts.get(p, 0) != 1}
        if wrong:
            self.violations.append(f"sample {self.samples}: current versions {wrong}")
        if claimed_current:
            self.violations.append(f"sample {self.samples}: {claimed_current} current claimed")
        self.samples += 1

    def snapshot_tags(self) -> None:
        # One statement each, so each is one consistent snapshot (READ COMMITTED).
        on_files = (
            sql_select(files.c.file_id, tags.c.name)
            .select_from(
                files.outerjoin(file_tags, file_tags.c.file_id == files.c.file_id).outerjoin(
                    tags, and_(tags.c.tag_id == file_tags.c.tag_id, tags.c.name.like("w%-t%"))
                )
            )
            .where(files.c.path_id.in_(sql_select(paths.c.path_id).where(paths.c.path.in_(PATHS))))
        )
        on_paths = (
            sql_select(paths.c.path, tags.c.name)
            .select_from(
                paths.outerjoin(path_tags, path_tags.c.path_id == paths.c.path_id).outerjoin(
                    tags, and_(tags.c.tag_id == path_tags.c.tag_id, tags.c.name.like("w%-p%"))
                )
            )
            .where(paths.c.path.in_(PATHS))
        )
        with self.engine.connect() as conn:
            for query, into in ((on_files, self.file_tags), (on_paths, self.path_tags)):
                t0 = time.monotonic()
                rows = conn.execute(query).all()
                t1 = time.monotonic()
                conn.rollback()
                into.append(
                    TagSnapshot(
                        t0,
                        t1,
                        {row[0] for row in rows},
                        {(row[0], row[1]) for row in rows if row[1] is not None},
                    )
                )

    def run(self) -> None:
        try:
            while not self._halt.wait(CHECK_INTERVAL_S):
                self.sample()
                if self.samples % TAG_SNAPSHOT_EVERY == 0:
                    self.snapshot_tags()
        except BaseException as exc:
            self.failure = exc

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=30)

    def close(self) -> None:
        self.stop()
        self.engine.dispose()


def host_config(tmp_path: Path, shared: dict[str, Any], host: str) -> Path:
    path = tmp_path / f"{host}.json"
    config = dict(shared, host_name=host, local_root=str(tmp_path / "hosts" / host))
    path.write_text(json.dumps(config))
    path.chmod(0o600)  # it holds the store's secret key
    return path


def check_tags(
    results: list[dict[str, Any]], snapshots: list[TagSnapshot], *, on_paths: bool
) -> tuple[int, list[str]]:
    """Compare snapshots of the catalog with the workers' committed tag changes.

    Only one worker uses a tag name, and it commits one change after another, so a pair
    (target, tag) is present at a snapshot if and only if its last change confirmed
    before the snapshot began was an addition, unless a change of it was in flight
    while the snapshot ran (then either is right, and it is not checked). A target gone
    from the snapshot (a purged version) is not checked either. Returns the number of
    checks made and the discrepancies.
    """
    adds = {"tag_path"} if on_paths else {"tag"}
    kinds = {"tag_path", "untag_path"} if on_paths else {"tag", "untag"}
    changes: dict[tuple[Any, str], list[tuple[float, float, bool]]] = {}
    for res in results:
        for action, target, name, t0, t1 in res["tag_log"]:
            if action in kinds:
                changes.setdefault((target, name), []).append((t0, t1, action in adds))
    checks = 0
    wrong: list[str] = []
    for snap in snapshots:
        for pair in set(changes) | snap.pairs:
            if pair[0] not in snap.targets:
                continue
            history = changes.get(pair, [])
            if any(t0 <= snap.t1 and t1 >= snap.t0 for t0, t1, _ in history):
                continue
            done = [added for _, t1, added in history if t1 < snap.t0]
            expected = bool(done) and done[-1]
            checks += 1
            if (pair in snap.pairs) != expected:
                what = "lost" if expected else "present without a committed tag"
                wrong.append(f"{pair} {what} at t={snap.t0:.3f}")
    return checks, wrong


@pytest.mark.postgres
@pytest.mark.s3
def test_many_hosts_on_shared_paths_keep_every_invariant(
    pg_url: str, rclone_server: RcloneS3Server, tmp_path: Path
) -> None:
    seed = random.randrange(2**32)
    print(f"\nseed {seed}; {WORKERS} workers for {LOAD_SECONDS} s on {len(PATHS)} paths")
    bucket = rclone_server.create_bucket("t-" + uuid.uuid4().hex[:16])
    shared = {
        "database": pg_url,
        "store": f"s3://{bucket}/load-{uuid.uuid4().hex[:8]}",
        "s3_endpoint_url": rclone_server.endpoint_url,
        "s3_access_key": rclone_server.access_key,
        "s3_secret_key": rclone_server.secret_key,
        "s3_region": rclone_server.region,
        "unpublished_ttl_seconds": 0,
        "expired_ttl_seconds": 0,
        "backups_before_purge": 0,
    }
    audit_config = host_config(tmp_path, shared, "auditor")
    with repo.Repo(audit_config) as r:
        seeded = {r.add_file(p).touch(f"{p}\nseed\n").publish().file_id for p in PATHS}
    names = [f"w{i}" for i in range(WORKERS)]
    workers = [
        Worker(
            tmp_path,
            [
                str(host_config(tmp_path, shared, f"host-{name}")),
                name,
                str(seed + i),
                str(LOAD_SECONDS),
                ",".join(PATHS),
                ",".join(names),
                *(["--collector"] if i < COLLECTORS else []),
            ],
        )
        for i, name in enumerate(names)
    ]
    checker = Checker(pg_url)
    try:
        ready_by = time.monotonic() + START_TIMEOUT_S
        for w in workers:
            w.wait_ready(ready_by)
        checker.sample()  # the seeded state
        checker.start()
        for w in workers:
            w.go()
        finish_by = time.monotonic() + LOAD_SECONDS + END_MARGIN_S
        results = [w.result(finish_by) for w in workers]
        checker.stop()
        checker.sample()  # the final state, every change confirmed
        checker.snapshot_tags()
    finally:
        checker.close()
        for w in workers:
            w.kill()
    file_checks, file_tags_wrong = check_tags(results, checker.file_tags, on_paths=False)
    path_checks, path_tags_wrong = check_tags(results, checker.path_tags, on_paths=True)
    report(results, checker)
    print(
        f"tags: {len(checker.file_tags)} snapshots, {file_checks} file-tag and "
        f"{path_checks} path-tag checks"
    )

    # At every sample, exactly one current version per path, and it was never claimed.
    assert checker.failure is None, checker.failure
    assert checker.violations == []
    assert checker.samples >= 20
    # No worker ever found a path without a current version either.
    assert [r["no_current"] for r in results] == [0] * WORKERS
    # Every worker ended on time (the margin covers only its last operation).
    assert max(r["elapsed"] for r in results) < LOAD_SECONDS + END_MARGIN_S / 2
    # Nothing reached a worker but the documented retryable error, whose hint says so.
    errors: Counter[str] = Counter()
    for res in results:
        errors.update(res["errors"])
    samples = {kind: s for res in results for kind, s in res["samples"].items()}
    assert set(errors) <= RETRYABLE, samples
    assert all("try again" in s for kind in RETRYABLE for s in samples.get(kind, []))

    # No lost tag, none that nobody committed: at every snapshot, and at the end.
    assert file_tags_wrong == []
    assert path_tags_wrong == []
    assert file_checks > 0
    assert path_checks > 0

    published = {entry[0]: entry for res in results for entry in res["published"]}
    with repo.Repo(audit_config) as r:
        assert r.catalog.claimed() == []
        versions = {v.file_id: v for v in r.catalog.list_current("load/*", states=ALL_STATES)}
        r.rollback()
        current = [v for v in versions.values() if v.state == "published"]
        assert sorted(v.path for v in current) == sorted(PATHS)
        # Each current version is one a worker reported as published (or a seed).
        assert [v.file_id for v in current if v.file_id not in set(published) | seeded] == []
        # What a worker published is intact, or gone because it was superseded.
        for file_id, (_, path, md5, size) in published.items():
            v = versions.get(file_id)
            assert v is None or (v.path, v.md5, v.size) == (path, md5, size), v
        # Every current version's object is whole; every other live row still has its own.
        for v in current:
            got = r.store.get_into(v.key, io.BytesIO())
            assert (got.md5, got.size) == (v.md5, v.size), v
        for v in versions.values():
            if v.md5 is not None:
                assert r.store.head(v.key).size == v.size, v
    assert sum(r["done"].get("gc", 0) for r in results) > 0
    assert len(published) > 0


def report(results: list[dict[str, Any]], checker: Checker) -> None:
    """Print throughput per operation, errors and stale outcomes (``pytest -s``)."""
    done: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    stale: Counter[str] = Counter()
    for res in results:
        done.update(res["done"])
        errors.update(res["errors"])
        stale.update(res["stale"])
    seconds = max(r["elapsed"] for r in results)
    print(f"throughput over {seconds:.1f} s, {len(results)} workers:")
    for op, n in sorted(done.items(), key=lambda kv: -kv[1]):
        print(f"  {op:<15} {n:>7}  {n / seconds:8.1f}/s")
    total = sum(done.values())
    print(f"  {'all':<15} {total:>7}  {total / seconds:8.1f}/s")
    print(f"  gc purged {sum(r['gc_purged'] for r in results)} versions")
    print(f"  read {sum(r['bytes_read'] for r in results) / 1e6:.1f} MB, verified")
    print(f"retryable errors: {dict(errors) or 'none'}")
    for res in results:
        for kind, samples in res["samples"].items():
            for s in samples[:2]:
                print(f"  {res['name']} {kind}: {s}")
    print(f"stale handles (superseded and purged meanwhile): {dict(stale) or 'none'}")
    print(f"checker: {checker.samples} samples, {len(checker.violations)} violations")
