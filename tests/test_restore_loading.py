"""Restoring into PostgreSQL: bare tables loaded on several connections, then every key,
index and foreign key built (`repo.catalog.loading`). What must hold: the catalog ends up
with exactly the schema a fresh one has, every constraint checked; and a load that fails
half way leaves a catalog that nothing opens and that a plain restore replaces.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import create_engine, text

from repo import Repo
from repo.catalog import Catalog
from repo.catalog.loading import Task, run_tasks
from repo.errors import CatalogError, RepoError
from repo.restore import restore_catalog

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy import Connection

    from harness.postgres import PostgresServer

pytestmark = pytest.mark.postgres

# Every constraint and index of the catalog's tables, as PostgreSQL defines them.
SCHEMA_OBJECTS = """
SELECT 'constraint', r.relname, c.conname, pg_get_constraintdef(c.oid), c.convalidated
FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid
WHERE r.relnamespace = 'public'::regnamespace
UNION ALL
SELECT 'index', r.relname, i.relname, pg_get_indexdef(x.indexrelid), x.indisvalid
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class r ON r.oid = x.indrelid
WHERE r.relnamespace = 'public'::regnamespace
ORDER BY 1, 2, 3
"""


def schema_objects(url: str) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(SCHEMA_OBJECTS))]
    finally:
        engine.dispose()


def config_for(url: str, tmp_path: Path) -> dict[str, Any]:
    store = tmp_path / "store"
    store.mkdir(exist_ok=True)
    return {
        "store": store.as_uri(),
        "database": url,
        "local_root": str(tmp_path / "local"),
        "host_name": "test-host",
    }


def fill(r: Repo, paths: list[str]) -> None:
    for i, path in enumerate(paths):
        f = r.add_file(path).touch(f"content {path}".encode()).publish()
        f.tag(f"t{i % 3}", "shared").tag_path(f"dir{i % 2}")
    r.commit()


def test_a_restored_catalog_has_every_key_index_and_foreign_key_of_a_fresh_one_checked(
    pg_url: str, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    config = config_for(pg_url, tmp_path)
    with Repo(config) as r:
        fill(r, [f"data/f{i}" for i in range(12)])
        r.backup()
    name = f"fresh_{uuid.uuid4().hex[:10]}"
    fresh_url = postgres_server.create_database(name)
    try:
        fresh = Catalog(fresh_url)
        fresh.ensure_schema()
        fresh.close()
        expected = schema_objects(fresh_url)
    finally:
        postgres_server.drop_database(name)

    restore_catalog(config, force=True)

    got = schema_objects(pg_url)
    assert got == expected
    assert {kind for kind, *_ in got} == {"constraint", "index"}
    assert all(valid for *_, valid in got)
    with Repo(config) as r:
        assert len(r.find(all=["shared", "dir1"])) == 6


def test_a_load_that_fails_half_way_leaves_a_catalog_nothing_opens_and_a_restore_replaces(
    pg_url: str, tmp_path: Path
) -> None:
    config = config_for(pg_url, tmp_path)
    with Repo(config) as r:
        fill(r, ["first"])
        older = r.backup().name
        fill(r, ["second"])
        newer = r.backup().name
        prefix = f"{r.backups.backups_prefix}{newer}/"
        store = r.backups.store
        manifest = json.loads(b"".join(store.iter_bytes(f"{prefix}manifest.json")))
        # A tag of a version the backup does not have: every row loads, and the foreign
        # key, checked last, refuses it.
        spec = manifest["tables"]["file_tags"]
        content = gzip.decompress(b"".join(store.iter_bytes(spec["key"]))) + b"987654\t1\n"
        replace(store, spec["key"], gzip.compress(content), tmp_path)
        spec.update(rows=spec["rows"] + 1, sha256=hashlib.sha256(content).hexdigest())
        replace(store, f"{prefix}manifest.json", json.dumps(manifest).encode(), tmp_path)
    catalog = Catalog(pg_url)
    try:
        catalog.drop_schema()
    finally:
        catalog.close()

    with pytest.raises(RepoError) as failed:
        restore_catalog(config)
    assert "file_tags" in failed.value.message

    with pytest.raises(CatalogError) as refused:
        Repo(config)
    assert refused.value.message.startswith(
        f"the catalog is half restored: a restore of backup {newer}"
    )

    report = restore_catalog(config, backup=older)  # no force needed
    assert (report.backup, report.journal_entries) == (older, 1)
    with Repo(config) as r:
        assert [f.path for f in r.list()] == ["first", "second"]


def replace(store: Any, key: str, data: bytes, tmp_path: Path) -> None:
    scratch = tmp_path / "replacement"
    scratch.write_bytes(data)
    store.delete_many([key])
    store.put_file(key, scratch)


def test_tasks_run_after_what_they_need_and_the_first_failure_stops_the_rest(pg_url: str) -> None:
    Catalog(pg_url).close()
    ran: list[str] = []

    def step(name: str, fail: bool = False) -> Any:
        def run(conn: Connection) -> None:
            conn.execute(text("SELECT 1"))
            if fail:
                raise ValueError(f"{name} failed")
            ran.append(name)

        return run

    tasks = [
        Task("a", step("a"), size=1),
        Task("b", step("b"), frozenset({"a"}), size=9),
        Task("c", step("c"), frozenset({"a", "b"})),
    ]
    run_tasks(pg_url, tasks, workers=2)
    assert ran == ["a", "b", "c"]

    ran.clear()
    tasks = [
        Task("a", step("a", fail=True)),
        Task("b", step("b"), frozenset({"a"})),
    ]
    with pytest.raises(ValueError, match="a failed"):
        run_tasks(pg_url, tasks, workers=2)
    assert ran == []

    with pytest.raises(ValueError, match="wait on each other"):
        run_tasks(
            pg_url, [Task("a", step("a"), frozenset({"b"})), Task("b", step("b"), frozenset({"a"}))]
        )
