"""Worker processes for tests/system/test_load.py:
``python -m load_workers CONFIG NAME SEED SECONDS PATHS WORKERS [--collector]``.

Each worker is a simulated host (its own config, host name and local root) that opens its
`Repo`, prints ``ready``, waits for ``go`` on stdin, then runs random operations on a
small set of shared paths until its time is up, each operation one transaction. It
prints one JSON line: what succeeded, what failed (by error type), and a log of the tag
changes it committed, in order, so the test can check that none was lost.

A `RepoError` rolls the transaction back and is counted; anything else crashes the worker
(the test reads its stderr).
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import repo

if TYPE_CHECKING:
    from collections.abc import Callable

#: Operations and their weights; collectors also run gc every GC_INTERVAL_S.
WEIGHTS = {
    "publish": 24,
    "expire_replace": 5,
    "abandon": 5,
    "tag": 15,
    "untag": 8,
    "tag_path": 4,
    "untag_path": 2,
    "get": 27,
    "find": 10,
}
GC_INTERVAL_S = 0.3
#: Own tag names per worker: a few, so tags are applied, removed and applied again.
TAGS_PER_WORKER = 4
SAMPLES_PER_TYPE = 5


class Stale(Exception):
    """What this worker held was superseded and purged meanwhile (not an error)."""


class Worker:
    def __init__(
        self, r: repo.Repo, name: str, seed: int, paths: list[str], workers: list[str]
    ) -> None:
        self.r = r
        self.name = name
        self.rng = random.Random(seed)
        self.paths = paths
        self.workers = workers
        self.done: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.stale: Counter[str] = Counter()
        self.samples: dict[str, list[str]] = {}
        #: Committed tag changes, in order: [action, file id or path, tag, t0, t1], where
        #: the commit was sent at monotonic time t0 and confirmed at t1 (the clock is the
        #: machine's, shared by every process, so the test can order them against its
        #: own snapshots of the catalog).
        self.tag_log: list[list[Any]] = []
        #: Committed new versions: [file id, path, md5, size].
        self.published: list[list[Any]] = []
        self.no_current = 0
        self.gc_purged = 0
        self.bytes_read = 0
        self._applied: set[tuple[int, str]] = set()
        self._path_applied: set[tuple[str, str]] = set()
        self._counter = 0

    # -- helpers -------------------------------------------------------------------------

    def _content(self, path: str) -> bytes:
        self._counter += 1
        head = f"{path}\n{self.name} {self._counter}\n".encode()
        return head + self.rng.randbytes(self.rng.randint(0, 2048))

    def _current(self, path: str) -> repo.RepoFile:
        found = self.r.get_file(path)
        if found is None:
            # The test seeds every path; no moment may see a path without its version.
            self.no_current += 1
            raise Stale("no current version")
        return found

    def _tag(self) -> str:
        return f"{self.name}-t{self.rng.randrange(TAGS_PER_WORKER)}"

    def _check_read(self, rf: repo.RepoFile) -> None:
        try:
            data = rf.read_bytes()
        except repo.NotFoundError:
            # A reader holding a version while it is superseded and purged (the test runs
            # gc with every TTL at 0) finds its object gone; anything else is a failure.
            try:
                now = self.r.file(rf.file_id)
            except repo.NotFoundError:
                raise Stale("read a purged version") from None
            if now.state == "published":
                raise
            raise Stale("read a superseded version") from None
        if hashlib.md5(data).hexdigest() != rf.md5 or len(data) != rf.size:
            raise AssertionError(f"{rf} read back {len(data)} bytes not matching the catalog")
        if not data.startswith(rf.path.encode() + b"\n"):
            raise AssertionError(f"{rf} holds another path's content: {data[:60]!r}")
        self.bytes_read += len(data)

    # -- operations: each returns the log entries to keep once committed -------------------

    def publish(self) -> list[tuple[str, list[Any]]]:
        path = self.rng.choice(self.paths)
        data = self._content(path)
        rf = self.r.add_file(path).touch(data).publish()
        entry = [rf.file_id, path, hashlib.md5(data).hexdigest(), len(data)]
        return [("published", entry)]

    def expire_replace(self) -> list[tuple[str, list[Any]]]:
        """Retire the current version and publish its successor, in one transaction."""
        path = self.rng.choice(self.paths)
        current = self._current(path)
        try:
            current.expire()
        except repo.StateError:  # superseded and purged since it was read: "purged"
            raise Stale("expire of a purged version") from None
        data = self._content(path)
        rf = self.r.add_file(path).touch(data).publish()
        return [("published", [rf.file_id, path, hashlib.md5(data).hexdigest(), len(data)])]

    def abandon(self) -> list[tuple[str, list[Any]]]:
        """An upload nobody publishes (gc's work), sometimes expired at once."""
        path = self.rng.choice(self.paths)
        rf = self.r.add_file(path).touch(self._content(path)).upload()
        if self.rng.random() < 0.5:
            self.r.commit()
            try:
                rf.expire()
            except repo.StateError:  # gc (unpublished TTL 0) was quicker: "purged"
                raise Stale("expire of a purged version") from None
        return []

    def tag(self) -> list[tuple[str, list[Any]]]:
        current = self._current(self.rng.choice(self.paths))
        name = self._tag()
        current.tag(name)
        return [("tag", ["tag", current.file_id, name])]

    def untag(self) -> list[tuple[str, list[Any]]]:
        if not self._applied:
            return self.tag()
        file_id, name = self.rng.choice(sorted(self._applied))
        try:
            rf = self.r.file(file_id)
        except repo.NotFoundError:
            self._applied.discard((file_id, name))
            raise Stale("untag of a purged version") from None
        rf.untag(name)
        return [("tag", ["untag", file_id, name])]

    def tag_path(self) -> list[tuple[str, list[Any]]]:
        current = self._current(self.rng.choice(self.paths))
        name = f"{self.name}-p{self.rng.randrange(TAGS_PER_WORKER)}"
        current.tag_path(name)
        return [("tag", ["tag_path", current.path, name])]

    def untag_path(self) -> list[tuple[str, list[Any]]]:
        if not self._path_applied:
            return self.tag_path()
        path, name = self.rng.choice(sorted(self._path_applied))
        self._current(path).untag_path(name)
        return [("tag", ["untag_path", path, name])]

    def get(self) -> list[tuple[str, list[Any]]]:
        self._check_read(self._current(self.rng.choice(self.paths)))
        return []

    def find(self) -> list[tuple[str, list[Any]]]:
        name = f"{self.rng.choice(self.workers)}-t{self.rng.randrange(TAGS_PER_WORKER)}"
        found = self.r.find(any=[name])
        if found:
            self._check_read(self.rng.choice(found))
        return []

    def gc(self) -> list[tuple[str, list[Any]]]:
        report = self.r.gc()
        self.gc_purged += report.unpublished.count + report.expired.count + report.resumed.count
        return []

    # -- the loop ------------------------------------------------------------------------

    def _keep(self, entries: list[tuple[str, list[Any]]], t0: float, t1: float) -> None:
        for kind, entry in entries:
            if kind == "published":
                self.published.append(entry)
                continue
            self.tag_log.append([*entry, t0, t1])
            action, target, name = entry
            if action == "tag":
                self._applied.add((target, name))
            elif action == "untag":
                self._applied.discard((target, name))
            elif action == "tag_path":
                self._path_applied.add((target, name))
            else:
                self._path_applied.discard((target, name))

    def run_one(self, op: str, action: Callable[[], list[tuple[str, list[Any]]]]) -> None:
        t0 = 0.0
        try:
            entries = action()
            t0 = time.monotonic()
            self.r.commit()
        except Stale as exc:
            self.r.rollback()
            self.stale[str(exc)] += 1
            return
        except repo.RepoError as exc:
            self.r.rollback()
            kind = type(exc).__name__
            self.errors[kind] += 1
            seen = self.samples.setdefault(kind, [])
            if len(seen) < SAMPLES_PER_TYPE:
                seen.append(f"{op}: {exc} [hint: {exc.hint}]")
            return
        self.done[op] += 1
        self._keep(entries, t0, time.monotonic())


def main(
    config: str, name: str, seed: str, seconds: str, paths: str, workers: str, *flags: str
) -> None:
    collector = "--collector" in flags
    with repo.Repo(config) as r:
        worker = Worker(r, name, int(seed), paths.split(","), workers.split(","))
        ops = list(WEIGHTS)
        weights = [WEIGHTS[o] for o in ops]
        print("ready", flush=True)
        line = sys.stdin.readline()
        if line.strip() != "go":
            raise SystemExit(f"expected 'go' on stdin, got {line!r}")
        started = time.monotonic()
        deadline = started + float(seconds)
        last_gc = started
        while time.monotonic() < deadline:
            if collector and time.monotonic() - last_gc >= GC_INTERVAL_S:
                worker.run_one("gc", worker.gc)
                last_gc = time.monotonic()
                continue
            op = worker.rng.choices(ops, weights)[0]
            worker.run_one(op, getattr(worker, op))
        elapsed = time.monotonic() - started
    print(
        json.dumps(
            {
                "name": name,
                "elapsed": elapsed,
                "done": worker.done,
                "errors": worker.errors,
                "stale": worker.stale,
                "samples": worker.samples,
                "tag_log": worker.tag_log,
                "published": worker.published,
                "no_current": worker.no_current,
                "gc_purged": worker.gc_purged,
                "bytes_read": worker.bytes_read,
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
