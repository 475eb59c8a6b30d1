"""Worker processes for tests/test_gc_concurrency.py: ``python -m gc_workers ROLE CONFIG ...``.

Every worker opens its `Repo` (so imports and connections are not part of the race),
prints ``ready``, waits for ``go`` on stdin, works, and prints one JSON line saying what
it saw. Anything unexpected is left to crash the worker: the test reads its stderr.
"""

from __future__ import annotations

import hashlib
import json
import random
import select
import sys
import time
from typing import Any

import repo

#: The message of the `StateError` a publish gets when garbage collection won the row.
CLAIMED = "claimed by garbage collection"


def _handshake() -> None:
    print("ready", flush=True)
    line = sys.stdin.readline()
    if line.strip() != "go":
        raise SystemExit(f"expected 'go' on stdin, got {line!r}")


def _stop_requested() -> bool:
    ready, _, _ = select.select([sys.stdin], [], [], 0)
    return bool(ready)


def publish(config: str, iterations: str, seed: str, max_sleep_ms: str, paths: str) -> None:
    """Add, upload and commit a version, wait a random moment, then publish it.

    Losing the version to a concurrent garbage collection is an expected outcome, seen
    two ways: the row is still there, claimed (`StateError`), or already purged
    (`NotFoundError`, see test_publishing_a_purged_version_says_gc_took_it). The publish
    is rolled back then, as a caller must after any error. Versions are reported by key.
    """
    rng = random.Random(int(seed))
    choices = paths.split(",")
    published: list[dict[str, Any]] = []
    claimed: list[str] = []
    purged: list[str] = []
    # Claims that landed after publish had begun changing the catalog: the transaction
    # had already expired the path's current version when publish raised (see
    # test_publish_that_loses_to_gc_changes_nothing).
    late_claims = 0
    with repo.Repo(config) as r:
        _handshake()
        for i in range(int(iterations)):
            path = rng.choice(choices)
            data = f"{r.host} {i}\n".encode() + rng.randbytes(rng.randint(0, 4096))
            rf = r.add_file(path).touch(data)
            rf.upload()
            key, file_id = rf.key, rf.file_id
            r.commit()
            # Skewed towards short waits, so both publish and gc win often.
            time.sleep(int(max_sleep_ms) / 1000 * rng.random() ** 3)
            try:
                rf.publish()
                r.commit()
            except repo.StateError as exc:
                if str(exc) == f"file {file_id} no longer exists: garbage collection purged it":
                    r.rollback()
                    purged.append(key)
                    continue
                if CLAIMED not in str(exc):
                    raise
                # Every path had a current version before the race (the test makes
                # one), so a path without one here was expired by this transaction.
                if r.catalog.current(path) is None:
                    late_claims += 1
                r.rollback()
                claimed.append(key)
            else:
                md5 = hashlib.md5(data).hexdigest()
                published.append({"key": key, "path": path, "md5": md5, "size": len(data)})
    outcome = {"published": published, "claimed": claimed, "purged": purged}
    print(json.dumps({**outcome, "late_claims": late_claims}))


def gc_loop(config: str, seed: str, deadline_s: str) -> None:
    """Run `Repo.gc` over and over until told to stop (a line on stdin) or the deadline."""
    rng = random.Random(int(seed))
    runs = purged = resumed = 0
    with repo.Repo(config) as r:
        _handshake()
        deadline = time.monotonic() + float(deadline_s)
        while not _stop_requested() and time.monotonic() < deadline:
            report = r.gc()
            runs += 1
            purged += report.unpublished.count
            resumed += report.resumed.count
            time.sleep(rng.uniform(0, 0.015))
    print(json.dumps({"runs": runs, "purged": purged, "resumed": resumed}))


def gc_once(config: str) -> None:
    """One `Repo.gc` run, started on ``go`` (the test kills it somewhere along the way)."""
    with repo.Repo(config) as r:
        _handshake()
        started = time.monotonic()
        report = r.gc()
        elapsed = time.monotonic() - started
    print(json.dumps({"purged": report.unpublished.count, "seconds": elapsed}))


ROLES = {"publish": publish, "gc-loop": gc_loop, "gc-once": gc_once}

if __name__ == "__main__":
    ROLES[sys.argv[1]](*sys.argv[2:])
