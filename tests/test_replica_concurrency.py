"""Replication racing publishers and garbage collection on PostgreSQL: no published
version loses a copy, no object is left unrecorded (docs/replicas.md)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from repo import Repo
from repo.errors import ConflictError, NotFoundError, StateError

if TYPE_CHECKING:
    from pathlib import Path

SECONDS = 2.0


def _config(tmp_path: Path, pg_url: str) -> dict[str, Any]:
    for name in ("main", "second", "nas"):
        (tmp_path / name).mkdir()
    return {
        "store": (tmp_path / "main").as_uri(),
        "database": pg_url,
        "local_root": str(tmp_path / "local"),
        "stores": {
            "second": (tmp_path / "second").as_uri(),
            "nas": (tmp_path / "nas").as_uri(),
        },
        "numcopies": 3,
        "mincopies": 2,
        "expired_ttl_seconds": 0,
        "backups_before_purge": 0,
        "unpublished_ttl_seconds": 0,
    }


def _objects(tmp_path: Path) -> dict[str, set[str]]:
    return {
        name: {
            str(p.relative_to(tmp_path / name))
            for p in (tmp_path / name / "data").rglob("*")
            if p.is_file() and "~" in p.name
        }
        for name in ("main", "second", "nas")
    }


def test_replication_racing_publishers_and_gc_loses_nothing_and_leaves_nothing(
    tmp_path: Path, pg_url: str
) -> None:
    config = _config(tmp_path, pg_url)
    with Repo(config):
        pass  # the schema, once
    stop = threading.Event()
    errors: list[BaseException] = []

    def worker(name: str, work: Any) -> None:
        with Repo({**config, "local_root": str(tmp_path / f"local-{name}")}) as r:
            try:
                while not stop.is_set():
                    work(r)
            except BaseException as exc:  # reported by the test, not lost in the thread
                errors.append(exc)

    def publish(r: Repo) -> None:
        for path in ("a", "b", "c"):
            try:
                r.add_file(path).touch(f"{path} {time.monotonic_ns()}".encode()).publish()
                r.commit()
            except (StateError, NotFoundError, ConflictError):
                r.rollback()  # GC won the row: an expected outcome of the race

    def replicate(r: Repo) -> None:
        r.replicate()

    def collect(r: Repo) -> None:
        r.gc(now=datetime.now(UTC) + timedelta(seconds=1))

    threads = [
        threading.Thread(target=worker, args=(name, work))
        for name, work in (("pub", publish), ("rep", replicate), ("gc", collect))
    ]
    for t in threads:
        t.start()
    time.sleep(SECONDS)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    with Repo(config) as r:
        r.gc(now=datetime.now(UTC) + timedelta(seconds=1))
        assert r.replicate().ok
        current = {p: r.current(p) for p in ("a", "b", "c")}
        for path, f in current.items():
            assert f.read_bytes().startswith(f"{path} ".encode())
        found = r.verify(deep=True)
        assert found.ok
        assert found.copies is not None
        assert found.copies.under == []
        live = r.catalog.versions_to_copy(after_id=0, limit=10_000)
        copies = r.catalog.replicas_of(v.file_id for v in live)
        named: dict[str, set[str]] = {"main": set(), "second": set(), "nas": set()}
        for rec in live:
            rows = {c.store: c for c in copies.get(rec.file_id, [])}
            if "main" not in rows:
                named["main"].add(rec.key)
            for copy in rows.values():
                named[copy.store].add(copy.key)
    assert _objects(tmp_path) == named  # every object recorded, every record an object
