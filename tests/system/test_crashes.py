"""Crashes: the process doing the work is SIGKILLed at a random point, and nothing is lost.

Each trial starts a worker (``tests/system/crash_workers.py``, a separate OS process) that runs
one kind of operation in a bounded loop: add, add_tree, a large (multipart) upload,
publish, tag, a commit of several changes, gc, backup, restore into a fresh database, or
a download into an empty cache. After a delay drawn from a seeded RNG over the time the
operation takes (measured in this process first, then from the workers' own logs), the
worker is SIGKILLed. Then an independent checker (catalog through the public API; store
through a plain boto3 client or the file system; caches through the file system):

1. every object in the store is complete: exactly the content of its path (contents are a
   function of the path, see `crash_workers.content`), so no row can point at a partial
   object; every uploaded version's object exists with the catalog's size and md5 (a
   version a killed GC had claimed may have lost it); at most one current version a path;
2. no file in any host's cache sits under a final name with content other than its key's
   (partial downloads may only exist under ``.part-`` names);
3. the operation's own all-or-nothing rule holds (a commit is whole or absent);
4. re-running the interrupted operation succeeds, and the checks hold again (a restore
   is re-run plainly, without ``force``);
5. with every TTL and grace at 0, ``gc(orphans=True)`` leaves store keys == catalog keys
   and a host staging area with nothing in it, and keeps every published object.

`PLAN` gives the trials: 22 in the normal suite (two of each kind on PostgreSQL + rclone,
one upload and one gc on SQLite + file store), 220 with REPO_SOAK=1 (sixteen and six). The
seed is printed at the start and in every failure: ``REPO_CRASH_SEED=<seed>`` replays the
same delays. Each test prints where its kills landed and what they left (``-s``).

The tests at the end reproduce, at fixed points (the worker kills itself there), what
the random kills turned up (leftovers nothing removed, a restore that a plain re-run
refused) and check that it is fixed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import select
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

import repo
from crash_workers import (
    GC_JUNK,
    OPS,
    PUBLISH_PATHS,
    PUBLISH_VERSIONS,
    TREE_FILES,
    Ctx,
    Event,
    MiB,
    commit_paths,
    commit_tag,
    content,
    data_path,
    finish_uploads,
    prepare_garbage,
    read_events,
    tag_target,
    tune_multipart,
)
from soak import trials

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

TESTS = Path(__file__).resolve().parent
ALL = "all"
#: Every TTL and grace at 0: GC purges whatever is not published, at once.
EAGER_GC = {
    "unpublished_ttl_seconds": 0,
    "expired_ttl_seconds": 0,
    "orphan_grace_seconds": 0,
    "backups_before_purge": 0,
    "backup_keep": 2,
}
READY_TIMEOUT = 60.0
PART_SIZE = 256 * 1024
#: Workers started ahead of their trial.
LOOKAHEAD = 2
BASE_SEED = int(os.environ.get("REPO_CRASH_SEED") or random.randrange(2**32))


# ------------------------------------------------------------------ the store, seen plainly


class StoreView:
    """The store read without the library: boto3 for S3, the file system for ``file://``."""

    def __init__(
        self, *, client: Any = None, bucket: str = "", prefix: str = "", root: Path | None = None
    ) -> None:
        self.client, self.bucket, self.prefix, self.root = client, bucket, prefix, root

    @property
    def data_prefix(self) -> str:
        return f"{self.prefix}data/"

    def list(self, under: str) -> dict[str, int]:
        """Key -> size of every object whose key starts with `under`."""
        return {key: size for key, (size, _version) in self.list_versions(under).items()}

    def list_versions(self, under: str) -> dict[str, tuple[int, str]]:
        """Key -> (size, something that changes if the object is rewritten: the ETag, or
        the file's inode and modification time)."""
        if self.root is not None:
            out = {}
            for dirpath, dirnames, names in os.walk(self.root):
                if Path(dirpath) == self.root:
                    dirnames[:] = [d for d in dirnames if not d.startswith(".repo-")]
                for name in names:
                    full = Path(dirpath) / name
                    key = full.relative_to(self.root).as_posix()
                    if key.startswith(under):
                        st = full.stat()
                        out[key] = (st.st_size, f"{st.st_ino}-{st.st_mtime_ns}")
            return out
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=under
        )
        return {
            o["Key"]: (o["Size"], o["ETag"]) for page in pages for o in page.get("Contents", [])
        }

    def settle(self, under: str) -> None:
        """Wait (bounded) until listings stop changing: the server may still be finishing
        requests the killed worker sent (a DeleteObjects already received, say)."""
        before = self.list_versions(under)
        for _ in range(25):
            time.sleep(0.2)
            now = self.list_versions(under)
            if now == before:
                return
            before = now

    def read(self, key: str) -> bytes:
        if self.root is not None:
            return (self.root / key).read_bytes()
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        try:
            data: bytes = body.read()
        finally:
            body.close()
        return data

    def path_of(self, key: str) -> str:
        """The repository path in a data object's key (``<prefix>data/<path>~<token>``)."""
        assert key.startswith(self.data_prefix), key
        return key[len(self.data_prefix) :].rpartition("~")[0]

    def abandoned_uploads(self) -> int:
        """Multipart uploads started and never completed or aborted."""
        if self.root is not None:
            return 0
        from botocore.exceptions import ClientError

        try:
            found = self.client.list_multipart_uploads(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "NoSuchUpload":  # rclone: there are none
                return 0
            raise
        return sum(u["Key"].startswith(self.prefix) for u in found.get("Uploads", []))

    def temp_files(self) -> int:
        """Half-written objects in the file store's temp directory."""
        if self.root is None or not (self.root / ".repo-tmp").is_dir():
            return 0
        return len(list((self.root / ".repo-tmp").iterdir()))


# --------------------------------------------------------------------- the backends


@dataclass
class Backend:
    """One catalog + store combination, with what a test needs to make more databases."""

    name: str
    shared: dict[str, Any]
    view: StoreView
    new_database: Callable[[str], str]
    tmp: Path

    def config(self, host: str, file: str = "", **settings: Any) -> Path:
        """A config file for one simulated host: its own name and local root."""
        path = self.tmp / f"{file or host}.json"
        config = {
            **self.shared,
            **EAGER_GC,
            "host_name": host,
            "local_root": str(self.root(host)),
            **settings,
        }
        path.write_text(json.dumps(config))
        path.chmod(0o600)
        return path

    def root(self, host: str) -> Path:
        return self.tmp / "hosts" / host


@pytest.fixture
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    name = str(request.param)
    made: list[str] = []
    if name == "sqlite-file":
        store = tmp_path / "store"
        store.mkdir()
        shared: dict[str, Any] = {
            "database": request.getfixturevalue("sqlite_url"),
            "store": store.as_uri(),
        }
        view = StoreView(root=store)

        def new_database(label: str) -> str:
            return f"sqlite:///{tmp_path}/{label}-{uuid.uuid4().hex[:8]}.db"

        yield Backend(name, shared, view, new_database, tmp_path)
        return
    server = request.getfixturevalue("rclone_server")
    pg = request.getfixturevalue("postgres_server")
    bucket = server.create_bucket("t-" + uuid.uuid4().hex[:16])
    prefix = f"crash-{uuid.uuid4().hex[:8]}"
    shared = {
        "database": request.getfixturevalue("pg_url"),
        "store": f"s3://{bucket}/{prefix}",
        "s3_endpoint_url": server.endpoint_url,
        "s3_access_key": server.access_key,
        "s3_secret_key": server.secret_key,
        "s3_region": server.region,
    }
    client = server.client()

    def new_pg_database(label: str) -> str:
        db = f"t_{label}_{uuid.uuid4().hex[:10]}"
        made.append(db)
        url: str = pg.create_database(db)
        return url

    try:
        yield Backend(
            name,
            shared,
            StoreView(client=client, bucket=bucket, prefix=f"{prefix}/"),
            new_pg_database,
            tmp_path,
        )
    finally:
        client.close()
        for db in made:
            pg.drop_database(db)


# ----------------------------------------------------------------------- the workers


class Worker:
    """One ``python -m crash_workers`` process: started ahead, then start, ready, go, kill."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.stderr_path = job.work.parent / f"{job.work.name}.stderr"
        job.work.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "crash_workers", *job.argv()],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
            )

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def wait_ready(self) -> None:
        assert self.proc.stdout is not None
        readable, _, _ = select.select([self.proc.stdout], [], [], READY_TIMEOUT)
        line = self.proc.stdout.readline() if readable else b""
        assert line == b"ready\n", f"the worker did not get ready:\n{self.stderr()}"

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


@dataclass
class Job:
    """One trial's worker: its command line, and where it leaves its traces."""

    op: str
    config: Path
    work: Path
    seed: int
    iterations: int
    args: dict[str, Any]

    @property
    def prefix(self) -> str:
        return str(self.args["prefix"])

    @property
    def events(self) -> Path:
        return self.work.parent / f"{self.work.name}.events"

    def argv(self) -> list[str]:
        return [
            self.op,
            str(self.config),
            str(self.events),
            str(self.work),
            str(self.seed),
            str(self.iterations),
            json.dumps(self.args),
        ]


def crash_at(kind: Kind, where: str, tmp: Path) -> tuple[Job, list[Event]]:
    """Run one worker of `kind` that kills itself at the fixed point `where` (see
    `crash_workers.die`); returns its job and events."""
    job = kind.job(0, BASE_SEED, tmp)
    job.args["die_at"] = where
    worker = Worker(job)
    try:
        worker.send("start")
        worker.wait_ready()
        worker.send("go")
        worker.proc.wait(timeout=READY_TIMEOUT)
    finally:
        killed = worker.kill()
    assert killed, f"the worker did not die at {where}:\n{worker.stderr()}"
    return job, read_events(job.events)


# ---------------------------------------------------------------------------- checks


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


#: Objects already read and found whole, by key: (size, ETag or inode and mtime) then,
#: and the md5 and size read. Objects never change, so one that lists the same as when
#: it was read is not downloaded again.
Verified = dict[str, tuple[tuple[int, str], tuple[str, int]]]


def check_invariants(
    r: repo.Repo, view: StoreView, roots: list[Path], verified: Verified | None = None
) -> list[repo.RepoFile]:
    """Invariants 1 and 2 of the module docstring; returns every version seen."""
    verified = {} if verified is None else verified
    view.settle(view.data_prefix)
    versions = r.list("*", state=ALL)
    # Versions a killed GC run claimed: their objects may be gone already (the next run
    # finishes them). Not in the public API; the GC tests read it the same way.
    claimed = {rec.key for rec in r.catalog.claimed()}
    r.rollback()
    listed = view.list_versions(view.data_prefix)
    problems = []
    stored: dict[str, tuple[str, int]] = {}
    for key, version in list(listed.items()):
        if key in verified and verified[key][0] == version:
            stored[key] = verified[key][1]
            continue
        try:
            data = view.read(key)
        except Exception:
            # A delete the killed run sent may still be under way at the server (rclone
            # answers a GET of an object it is removing with 500): once settled, an object
            # gone is checked as gone (a published one then breaks invariant 1 below).
            view.settle(view.data_prefix)
            if key in view.list_versions(view.data_prefix):
                raise
            del listed[key]
            continue
        stored[key] = (md5(data), len(data))
        if data != content(view.path_of(key)):
            problems.append(f"object {key}: {len(data)} bytes that are not its path's content")
        else:
            verified[key] = (version, stored[key])
    current: Counter[str] = Counter()
    for v in versions:
        if v.state == "published":
            current[v.path] += 1
        if v.md5 is None:
            continue
        if (v.md5, v.size) != (md5(content(v.path)), len(content(v.path))):
            problems.append(f"file {v.file_id} {v.path}: catalog says {v.md5}/{v.size}")
        if v.key not in stored:
            if v.key not in claimed:
                problems.append(f"file {v.file_id} {v.path} ({v.state}): object missing")
        elif stored[v.key] != (v.md5, v.size):
            problems.append(f"file {v.file_id} {v.path}: store has {stored[v.key]}")
    problems += [f"{path}: {n} current versions" for path, n in current.items() if n > 1]
    for root in roots:
        cache = root / "cache"
        for dirpath, _dirs, names in os.walk(cache):
            for name in names:
                full = Path(dirpath) / name
                if name.startswith(".part-"):
                    continue  # a download in progress (or cut off): never served
                key = full.relative_to(cache).as_posix()
                data = full.read_bytes()
                if data != content(view.path_of(key)):
                    problems.append(f"cached {key} on {root.name}: {len(data)} wrong bytes")
    assert problems == [], "\n".join(problems)
    return versions


def collect_everything(r: repo.Repo, view: StoreView, before: list[repo.RepoFile]) -> None:
    """Invariant 5: GC with TTLs of 0 removes exactly what is not published."""
    published = {v.key: v.size for v in before if v.state == "published"}
    keys: set[str] = set()
    versions: list[repo.RepoFile] = []
    # An upload a kill cut off may still land in the store after the first run listed
    # it (the server finishing a request): "eventually", so a few runs.
    for _attempt in range(3):
        r.gc(orphans=True)
        versions = r.list("*", state=ALL)
        r.rollback()
        keys = set(view.list(view.data_prefix))
        if keys == {v.key for v in versions}:
            break
        time.sleep(0.2)
    catalog_keys = {v.key for v in versions}
    assert sorted(keys - catalog_keys) == [], "objects no version refers to survived GC"
    assert sorted(catalog_keys - keys) == [], "versions without objects after GC"
    assert {v.state for v in versions} <= {"published"}
    sizes = view.list(view.data_prefix)
    lost = [k for k, size in published.items() if sizes.get(k) != size]
    assert lost == [], "GC removed published objects"
    staging = r.session.staging.directory
    left = sorted(p.name for p in staging.iterdir()) if staging.is_dir() else []
    assert left == [], f"staging copies outlived GC on {r.host}"


# ------------------------------------------------------------------------ the kinds


@dataclass
class Trial:
    """One kill: where it landed, and what the checker saw."""

    seed: int
    delay: float
    killed: bool = False
    phase: str = ""
    events: list[Event] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)


class Kind:
    """One kind of operation: its set-up, how to re-run it, its own checks."""

    op = ""
    iterations = 200
    #: The last event of the worker -> the phase the kill interrupted.
    phases: ClassVar[dict[str, str]] = {}

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.view = backend.view
        self.worker_config = backend.config("worker")
        self.verified: Verified = {}
        #: Leftovers (see the tests at the end), as counted after the last trial.
        self.leftovers = {"abandoned": 0, "temp": 0, "backups": 0, "parts": 0}

    def setup(self) -> None:
        """Data every trial needs (made once, in this process)."""

    def args(self, prefix: str) -> dict[str, Any]:
        return {"prefix": prefix}

    def roots(self) -> list[Path]:
        return [self.backend.root("worker")]

    def checker_config(self, job: Job) -> Path:
        return self.worker_config

    def job(self, t: int, seed: int, under: Path) -> Job:
        return Job(
            op=self.op,
            config=self.worker_config,
            work=under / f"trial-{t}",
            seed=seed,
            iterations=self.iterations,
            args=self.args(f"t{t}"),
        )

    def ctx(self, r: repo.Repo | None, prefix: str, seed: int, work: Path) -> Ctx:
        """A context for running the operation in this process (events not recorded)."""
        work.mkdir(parents=True, exist_ok=True)
        return Ctx(
            config=str(self.worker_config),
            args=self.args(prefix),
            ev=lambda *_args: None,
            seed=seed,
            work=work,
            session=r,
        )

    def calibrate(self, r: repo.Repo) -> float:
        """Seconds one operation takes, run here (prepared first, not timed)."""
        work = self.backend.tmp / "calibrate"
        ctx = self.ctx(r, "calibrate", 0, work)
        OPS[self.op].prepare(ctx)
        started = time.monotonic()
        OPS[self.op].iterate(ctx, 0)
        return time.monotonic() - started

    def after_kill(self, r: repo.Repo, trial: Trial, prefix: str, events: list[Event]) -> None:
        """The operation's own rules, checked on what the kill left."""

    def rerun(self, r: repo.Repo, prefix: str, seed: int, work: Path, events: list[Event]) -> None:
        """Run the interrupted operation again, to completion."""
        i = interrupted(events)
        ctx = self.ctx(r, prefix, seed, work)
        OPS[self.op].prepare(ctx)
        OPS[self.op].iterate(ctx, i)


def interrupted(events: list[Event]) -> int:
    """The iteration the kill interrupted (or the next one, if it fell between two)."""
    begun = [i for _t, name, i, _d in events if name == "begin"]
    ended = [i for _t, name, i, _d in events if name == "end"]
    if begun and (not ended or begun[-1] != ended[-1]):
        return begun[-1]
    return (ended[-1] + 1) if ended else 0


class Add(Kind):
    op = "add"
    phases: ClassVar[dict[str, str]] = {
        "begin": "uploading",
        "sent": "tagging+publishing",
        "commit": "committing",
    }

    def after_kill(self, r: repo.Repo, trial: Trial, prefix: str, events: list[Event]) -> None:
        for v in r.list(f"{prefix}/add/*", state=ALL):
            # One transaction: a version is there published and tagged, or not at all.
            assert v.state in ("published", "expired"), v
            assert "crash" in v.tags, v
        r.rollback()

    def rerun(self, r: repo.Repo, prefix: str, seed: int, work: Path, events: list[Event]) -> None:
        super().rerun(r, prefix, seed, work, events)
        added = r.list(f"{prefix}/add/i{interrupted(events)}.*")
        assert len(added) == 1
        assert added[0].read_bytes() == content(added[0].path)


class AddTree(Kind):
    op = "add_tree"
    phases: ClassVar[dict[str, str]] = {
        "begin": "uploading",
        "tree": "uploading",
        "file": "uploading",
        "commit": "committing",
    }

    def after_kill(self, r: repo.Repo, trial: Trial, prefix: str, events: list[Event]) -> None:
        by_tree = Counter(v.path.rsplit("/", 1)[0] for v in r.list(f"{prefix}/tree/*", state=ALL))
        r.rollback()
        # All or nothing: a tree is there whole or not at all.
        assert all(n % TREE_FILES == 0 for n in by_tree.values()), by_tree
        files_done = sum(1 for e in events if e[1] == "file" and e[2] == interrupted(events))
        if 0 < files_done < TREE_FILES and trial.phase == "uploading":
            trial.evidence.append("some files of the tree uploaded")

    def rerun(self, r: repo.Repo, prefix: str, seed: int, work: Path, events: list[Event]) -> None:
        super().rerun(r, prefix, seed, work, events)
        tree = r.list(f"{prefix}/tree/i{interrupted(events)}/*")
        assert len(tree) == TREE_FILES
        assert all(f.md5 == md5(content(f.path)) for f in tree)


class Upload(Kind):
    op = "upload"
    phases: ClassVar[dict[str, str]] = {
        "begin": "adding the row",
        "row": "uploading",
        "part": "uploading",
        "uploaded": "publishing",
        "commit": "committing",
    }

    def args(self, prefix: str) -> dict[str, Any]:
        big = {"min_size": 2 * MiB, "max_size": 3 * MiB}
        if self.backend.view.root is not None:
            big = {"min_size": 6 * MiB, "max_size": 8 * MiB}
        return {"prefix": prefix, "part_size": PART_SIZE, **big}

    def after_kill(self, r: repo.Repo, trial: Trial, prefix: str, events: list[Event]) -> None:
        i = interrupted(events)
        parts = [e for e in events if e[1] == "part" and e[2] == i]
        if trial.phase == "uploading" and parts:
            trial.evidence.append("mid-multipart" if self.view.root is None else "mid-copy")

    def rerun(self, r: repo.Repo, prefix: str, seed: int, work: Path, events: list[Event]) -> None:
        tune_multipart(r, PART_SIZE)
        finish_uploads(r, prefix)
        super().rerun(r, prefix, seed, work, events)
        path = r.list(f"{prefix}/big/i{interrupted(events)}.*")
        assert len(path) == 1
        assert path[0].md5 == md5(content(path[0].path))
        left = [f for f in r.list(f"{prefix}/big/*", state="unpublished") if not f.uploaded]
        assert left == []


class Publish(Kind):
    op = "publish"
    phases: ClassVar[dict[str, str]] = {"begin": "publishing", "commit": "committing"}

    def after_kill(self, r: repo.Repo, trial: Trial, prefix: str, events: list[Event]) -> None:
        versions = r.list(f"{prefix}/pub/*", state=ALL)
        r.rollback()
        assert len(versions) == PUBLISH_PATHS + PUBLISH_VERSIONS, "prepared versions are missing"
        done = [v.file_id for v in versions if v.state != "unpublished"]
        waiting = [v.file_id for v in versions if v.state == "unpublished"]
        # Published in queue order, each commit whole: what is done is a prefix.
        assert not waiting or max(done) < min(waiting)
        for path in {v.path for v in versions}:
            mine = [v for v in versions if v.path == path and v.state != "unpublished"]
            newest = max(mine, key=lambda v: v.file_id)
            assert [v.file_id for v in mine if v.state == "published"] == [newest.file_id]

    def rerun(self, r: repo.Repo, prefix: str, seed: int, work: Path, events: list[Event]) -> None:
        queue = r.list(f"{prefix}/pub/*", state="unpublished")
        for rf in sorted(queue, key=lambda v: v.file_id):
            rf.publish()
            r.commit()
        versions = r.list(f"{prefix}/pub/*", state=ALL)
        for path in {v.path for v in versions}:
            current = r.current(path)
            assert current.file_id == max(v.file_id for v in versions if v.path == path)


class Tag(Kind):
    op = "tag"
    phases: ClassVar[dict[str, str]] = {"begin": "tagging", "commit": "committing"}

    def _files(self, r: repo.Repo, prefix: str) -> list[int]:
        return [f.file_id for f in sorted(r.list(f"{prefix}/tag/*"), key=lambda f: f.path)]

    def committed(self, r: repo.Repo, prefix: str) -> int:
        """How many iterations committed, checking that each committed whole."""
        files = self._files(r, prefix)
        own = {f: set(r.file(f).file_tags) for f in files}
        via_path = {f: set(r.file(f).path_tags) for f in files}
        r.rollback()
        done = [f"k{i}-b" in own[tag_target(files, i)] for i in range(OPS_TAG_LIMIT)]
        n = done.index(False)
        assert not any(done[n:]), f"iterations committed out of order: {done[: n + 3]}"
        for i in range(n + 1):
            f = tag_target(files, i)
            committed = i < n
            assert (f"k{i}-p" in via_path[f]) == committed, f"path tag of iteration {i}"
            assert (f"k{i}-a" in own[f]) == (committed and i == n - 1), f"k{i}-a"
        return n

    def after_kill(self, r: repo.Repo, trial: Trial, prefix: str, events: list[Event]) -> None:
        n = self.committed(r, prefix)
        ended = sum(1 for e in events if e[1] == "end")
        begun = sum(1 for e in events if e[1] == "begin")
        assert ended <= n <= begun

    def rerun(self, r: repo.Repo, prefix: str, seed: int, work: Path, events: list[Event]) -> None:
        n = self.committed(r, prefix)
        ctx = self.ctx(r, prefix, seed, work)
        ctx.state["files"] = self._files(r, prefix)
        OPS["tag"].iterate(ctx, n)
        assert self.committed(r, prefix) == n + 1


OPS_TAG_LIMIT = 400


class Commit(Kind):
    op = "commit"
    phases: ClassVar[dict[str, str]] = {"begin": "changing", "commit": "committing"}

    def committed(self, r: repo.Repo, prefix: str) -> int:
        n = 0
        while n < 1000:
            found = r.find(all=[commit_tag(prefix, n)], published=False)
            if not found:
                break
            assert len(found) == 3, f"iteration {n} committed {len(found)} of 3 versions"
            n += 1
        for i in range(n):
            pub = r.history(commit_paths(prefix, i)["pub"])
            assert len(pub) == 1
            assert f"{commit_tag(prefix, i)}-path" in pub[0].path_tags
            assert pub[0].state == ("published" if i == n - 1 else "expired"), (i, pub[0])
        later = commit_paths(prefix, n)
        assert r.history(later["pub"]) == []
        assert r.history(later["kept"]) == []
        assert r.find(all=[commit_tag(prefix, n + 1)], published=False) == []
        if n:
            shared = r.current(later["shared"])
            assert commit_tag(prefix, n - 1) in shared.file_tags
        r.rollback()
        return n

    def after_kill(self, r: repo.Repo, trial: Trial, prefix: str, events: list[Event]) -> None:
        n = self.committed(r, prefix)
        ended = sum(1 for e in events if e[1] == "end")
        assert ended <= n <= ended + 1

    def rerun(self, r: repo.Repo, prefix: str, seed: int, work: Path, events: list[Event]) -> None:
        n = self.committed(r, prefix)
        OPS["commit"].iterate(self.ctx(r, prefix, seed, work), n)
        assert self.committed(r, prefix) == n + 1


class Gc(Kind):
    op = "gc"
    iterations = 1
    phases: ClassVar[dict[str, str]] = {"begin": "collecting"}

    def calibrate(self, r: repo.Repo) -> float:
        work = self.backend.tmp / "calibrate-gc"
        work.mkdir(parents=True)
        prepare_garbage(r, "calibrate", work, random.Random(0))
        started = time.monotonic()
        r.gc(orphans=True)
        return time.monotonic() - started

    def after_kill(self, r: repo.Repo, trial: Trial, prefix: str, events: list[Event]) -> None:
        claimed = r.catalog.claimed()
        junk = r.list(f"{prefix}/gc/junk/*", state=ALL)
        r.rollback()
        if claimed:
            trial.evidence.append("claimed rows left")
        if 0 < len(junk) < GC_JUNK or claimed:
            trial.evidence.append("purge under way")

    def rerun(self, r: repo.Repo, prefix: str, seed: int, work: Path, events: list[Event]) -> None:
        r.gc(orphans=True)
        assert r.catalog.claimed() == []
        assert r.list(f"{prefix}/gc/*", state="unpublished") == []
        assert r.list(f"{prefix}/gc/*", state="expired") == []
        orphans = [k for k in self.view.list(self.view.data_prefix) if "/gc/orphan" in k]
        assert orphans == []


class Backup(Kind):
    op = "backup"
    iterations = 20

    phases: ClassVar[dict[str, str]] = {"begin": "backing up"}

    def setup(self) -> None:
        with repo.Repo(self.worker_config) as r:
            for j in range(3):
                path = data_path(f"base/b{j}", 500 + j)
                r.add_file(path).touch(content(path)).publish().tag("base")

    def check_backups(self, r: repo.Repo, trial: Trial | None) -> list[str]:
        """Every complete backup's objects exist as its manifest says; returns its names."""
        manifests = r.list_backups()
        under = self.view.list(f"{self.view.prefix}backups/")
        for m in manifests:
            for spec in m["tables"].values():
                assert under.get(spec["key"]) == spec["object_size"], spec["key"]
        names = {k[len(self.view.prefix) + len("backups/") :].split("/")[0] for k in under}
        partial = len(names - {m["name"] for m in manifests})
        if trial is not None and partial > self.leftovers["backups"]:
            trial.evidence.append("new partial backup in the store")
        self.leftovers["backups"] = partial
        return [m["name"] for m in manifests]

    def after_kill(self, r: repo.Repo, trial: Trial, prefix: str, events: list[Event]) -> None:
        self.check_backups(r, trial)

    def rerun(self, r: repo.Repo, prefix: str, seed: int, work: Path, events: list[Event]) -> None:
        report = r.backup()
        assert self.check_backups(r, None)[0] == report.name


class Restore(Kind):
    op = "restore"
    iterations = 1
    phases: ClassVar[dict[str, str]] = {"begin": "restoring"}

    def setup(self) -> None:
        self.source_config = self.backend.config("source")
        with repo.Repo(self.source_config) as r:
            first = None
            for j in range(6):
                path = data_path(f"src/f{j}", 600 + j)
                made = r.add_file(path).touch(content(path)).publish().tag(f"t{j % 3}")
                first = first or made
            r.commit()
            assert first is not None
            r.backup()
            for j in range(6, 9):  # after the backup: only in the change journal
                path = data_path(f"src/f{j}", 600 + j)
                r.add_file(path).touch(content(path)).publish().tag(f"t{j % 3}")
                r.commit()
            first.tag("late")
            r.commit()
            self.source = snapshot(r)

    def new_target(self) -> Path:
        database = self.backend.new_database("restore")
        name = f"restorer-{uuid.uuid4().hex[:8]}"
        return self.backend.config("restorer", file=name, database=database)

    def args(self, prefix: str) -> dict[str, Any]:
        return {"prefix": prefix, "target": str(self.new_target())}

    def roots(self) -> list[Path]:
        return [self.backend.root("restorer")]

    def checker_config(self, job: Job) -> Path:
        return Path(job.args["target"])

    def calibrate(self, r: repo.Repo) -> float:
        target = str(self.new_target())
        started = time.monotonic()
        repo.restore_catalog(target)
        return time.monotonic() - started

    def rerun(self, r: repo.Repo, prefix: str, seed: int, work: Path, events: list[Event]) -> None:
        raise AssertionError("restore re-runs before a Repo is opened on its target")

    def rerun_restore(self, trial: Trial, events: list[Event], target: Path) -> None:
        if not any(name == "end" for _t, name, _i, _d in events):
            # A run killed after loading the tables left its marker: a plain re-run
            # starts over (test_restore_killed_after_loading_can_be_run_again).
            repo.restore_catalog(str(target))
        with repo.Repo(target) as r:
            assert snapshot(r) == self.source


def snapshot(r: repo.Repo) -> list[tuple[Any, ...]]:
    rows = [
        (v.file_id, v.path, v.key, v.state, v.md5, v.size, tuple(v.tags))
        for v in r.list("*", state=ALL)
    ]
    r.rollback()
    return rows


class Download(Kind):
    op = "download"
    iterations = 100
    phases: ClassVar[dict[str, str]] = {
        "begin": "clearing the cache",
        "cleared": "downloading",
        "chunk": "downloading",
    }

    def __init__(self, backend: Backend) -> None:
        super().__init__(backend)
        self.worker_config = backend.config("reader")
        size = 8 * MiB
        self.path = data_path("big/download", size)

    def setup(self) -> None:
        with repo.Repo(self.backend.config("writer")) as r:
            r.add_file(self.path).touch(content(self.path)).publish()

    def args(self, prefix: str) -> dict[str, Any]:
        return {"prefix": prefix, "path": self.path}

    def roots(self) -> list[Path]:
        return [self.backend.root("reader")]

    def calibrate(self, r: repo.Repo) -> float:
        ctx = self.ctx(r, "calibrate", 0, self.backend.tmp / "calibrate")
        OPS["download"].prepare(ctx)
        OPS["download"].iterate(ctx, 0)  # warm
        started = time.monotonic()
        OPS["download"].iterate(ctx, 1)
        return time.monotonic() - started

    def after_kill(self, r: repo.Repo, trial: Trial, prefix: str, events: list[Event]) -> None:
        parts = len(list((self.backend.root("reader") / "cache").rglob(".part-*")))
        if parts > self.leftovers["parts"]:
            trial.evidence.append("new partial download in the cache")
        self.leftovers["parts"] = parts

    def rerun(self, r: repo.Repo, prefix: str, seed: int, work: Path, events: list[Event]) -> None:
        found = r.get_file(self.path)
        assert found is not None
        assert found.read_bytes() == content(self.path)


KINDS: dict[str, type[Kind]] = {
    "add": Add,
    "add_tree": AddTree,
    "upload": Upload,
    "publish": Publish,
    "tag": Tag,
    "commit": Commit,
    "gc": Gc,
    "backup": Backup,
    "restore": Restore,
    "download": Download,
}

PG = "postgresql-rclone"
SQLITE = "sqlite-file"
#: (backend, kind, trials in the normal suite, trials with REPO_SOAK=1).
PLAN = [
    *[(PG, kind, 2, 16) for kind in KINDS],
    *[(SQLITE, kind, 1 if kind in ("upload", "gc") else 0, 6) for kind in KINDS],
]


def _params() -> list[Any]:
    out = []
    for name, kind, normal, soak in PLAN:
        n = trials(normal, soak)
        if n == 0:
            continue
        marks = [pytest.mark.postgres, pytest.mark.s3] if name == PG else []
        out.append(pytest.param(name, kind, n, id=f"{name}-{kind}", marks=marks))
    return out


# ------------------------------------------------------------------------ the trials


def phase_of(kind: Kind, events: list[Event], killed: bool) -> str:
    if not killed:
        return "finished before the kill"
    if not events or events[-1][1] in ("end", "done"):
        return "between operations"
    return kind.phases.get(events[-1][1], events[-1][1])


@pytest.mark.parametrize(("backend", "kind_name", "count"), _params(), indirect=["backend"])
def test_killed_operation_leaves_everything_whole(
    backend: Backend, kind_name: str, count: int, tmp_path: Path
) -> None:
    kind = KINDS[kind_name](backend)
    print(f"\nREPO_CRASH_SEED={BASE_SEED} ({backend.name} {kind_name}, {count} trials)")
    jobs = [kind.job(t, BASE_SEED + t, tmp_path) for t in range(count)]
    results: list[Trial] = []
    # Workers are started LOOKAHEAD trials ahead, so their imports overlap set-up and the
    # checks of earlier trials; each waits for "start" before touching anything.
    upcoming = [Worker(job) for job in jobs[:LOOKAHEAD]]
    try:
        kind.setup()
        with repo.Repo(kind.worker_config) as r:
            durations = [kind.calibrate(r)]
        for t, job in enumerate(jobs):
            rng = random.Random(job.seed)
            # Over the whole operation; a little past its end where the worker loops, so
            # kills between two iterations happen too.
            spread = 1.2 if kind.iterations > 1 else 1.0
            window = spread * statistics.median(durations)
            trial = Trial(seed=job.seed, delay=rng.uniform(0, window))
            worker = upcoming.pop(0)
            try:
                run_trial(kind, worker, job, trial, durations)
                if t + LOOKAHEAD < count:
                    upcoming.append(Worker(jobs[t + LOOKAHEAD]))
                check_trial(kind, job, trial, durations)
            except Exception as exc:
                raise AssertionError(
                    f"{backend.name} {kind_name} trial {t} failed: {exc}\nreplay with "
                    f"REPO_CRASH_SEED={BASE_SEED} (trial seed {job.seed}, kill after "
                    f"{trial.delay:.3f}s, landed in: {trial.phase or '?'})"
                ) from exc
            results.append(trial)
    finally:
        for worker in upcoming:
            worker.kill()
    phases = Counter(t.phase for t in results)
    evidence = Counter(e for t in results for e in t.evidence)
    outside = ("finished before the kill", "between operations")
    mid = sum(n for p, n in phases.items() if p not in outside)
    print(
        f"CRASHES {backend.name} {kind_name}: {len(results)} trials, {mid} killed "
        f"mid-operation; phases {dict(phases)}; evidence {dict(evidence)}; "
        f"window {statistics.median(durations):.3f}s"
    )
    if count >= 10:  # soak: most kills must land inside the operation, or they prove little
        assert mid >= count // 2, f"only {mid} of {count} kills landed mid-operation"


def run_trial(kind: Kind, worker: Worker, job: Job, trial: Trial, durations: list[float]) -> None:
    """Start the worker's operation and SIGKILL it after the trial's delay."""
    try:
        worker.send("start")
        worker.wait_ready()
        worker.send("go")
        time.sleep(trial.delay)
    finally:
        trial.killed = worker.kill()
    if not trial.killed:
        assert worker.proc.returncode == 0, f"the worker failed:\n{worker.stderr()}"
    trial.events = read_events(job.events)
    events = trial.events
    trial.phase = phase_of(kind, events, trial.killed)
    starts = {i: when for when, name, i, _d in events if name == "begin"}
    durations += [when - starts[i] for when, name, i, _d in events if name == "end" and i in starts]


def check_trial(kind: Kind, job: Job, trial: Trial, durations: list[float]) -> None:
    """Check what the kill left, re-run the operation, check again, then collect."""
    view, events, prefix = kind.view, trial.events, job.prefix
    if isinstance(kind, Restore):
        kind.rerun_restore(trial, events, kind.checker_config(job))
        with repo.Repo(kind.checker_config(job)) as r:
            seen = check_invariants(r, view, kind.roots(), kind.verified)
            collect_everything(r, view, seen)
        return
    with repo.Repo(kind.checker_config(job)) as r:
        check_invariants(r, view, kind.roots(), kind.verified)
        kind.after_kill(r, trial, prefix, events)
        r.rollback()
        started = time.monotonic()
        kind.rerun(r, prefix, job.seed, job.work.parent / f"{job.work.name}-rerun", events)
        r.commit()
        durations.append(time.monotonic() - started)
        seen = check_invariants(r, view, kind.roots(), kind.verified)
        collect_everything(r, view, seen)
    # What the kill left in the store and GC did not remove: count the trials that added some.
    abandoned, temp = view.abandoned_uploads(), view.temp_files()
    if abandoned > kind.leftovers["abandoned"]:
        trial.evidence.append("new abandoned multipart upload in the store")
    if temp > kind.leftovers["temp"]:
        trial.evidence.append("new temp file in the file store")
    kind.leftovers.update(abandoned=abandoned, temp=temp)


# ------------------------------------------- what the kills turned up, at fixed points

ON_SQLITE = pytest.mark.parametrize("backend", [SQLITE], indirect=True)


@ON_SQLITE
def test_restore_killed_after_loading_can_be_run_again(backend: Backend, tmp_path: Path) -> None:
    kind = Restore(backend)
    kind.setup()
    job, events = crash_at(kind, "journal", tmp_path)
    assert [name for _t, name, _i, _d in events] == ["begin"]
    target = kind.checker_config(job)
    repo.restore_catalog(str(target))
    with repo.Repo(target) as r:
        assert snapshot(r) == kind.source


@ON_SQLITE
def test_backup_killed_before_its_manifest_is_removed_by_retention(
    backend: Backend, tmp_path: Path
) -> None:
    kind = Backup(backend)
    kind.setup()
    crash_at(kind, "manifest", tmp_path)
    under = f"{kind.view.prefix}backups/"
    assert kind.view.list(under), "the killed backup left nothing to clean up"
    with repo.Repo(kind.worker_config) as r:
        for _ in range(EAGER_GC["backup_keep"] + 1):
            r.backup()
        r.gc(orphans=True)
        complete = {m["name"] for m in r.list_backups()}
    names = {key[len(under) :].split("/")[0] for key in kind.view.list(under)}
    assert names == complete


@ON_SQLITE
def test_download_killed_midway_leaves_no_partial_file_after_cleanup(
    backend: Backend, tmp_path: Path
) -> None:
    kind = Download(backend)
    kind.setup()
    crash_at(kind, "chunk", tmp_path)
    cache = backend.root("reader") / "cache"
    assert list(cache.rglob(".part-*")), "the killed download left nothing to clean up"
    with repo.Repo(kind.worker_config) as r:
        r.gc(orphans=True)
        r.prune_cache()
        r.clear_cache()
    assert list(cache.rglob(".part-*")) == []


@ON_SQLITE
def test_upload_killed_midway_leaves_no_temp_file_in_the_file_store(
    backend: Backend, tmp_path: Path
) -> None:
    kind = Upload(backend)
    crash_at(kind, "part", tmp_path)
    assert kind.view.temp_files(), "the killed upload left nothing to clean up"
    with repo.Repo(kind.worker_config) as r:
        finish_uploads(r, "t0")
        r.gc(orphans=True)
    assert kind.view.temp_files() == 0
