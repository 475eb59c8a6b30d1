"""The catalog on PostgreSQL and SQLite: schema, versions, bookkeeping of copies."""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text, update

import repo
from conftest import last_read, recorded_statements
from repo.cache import USED_RESOLUTION_SECONDS
from repo.catalog import SCHEMA_VERSION, Catalog
from repo.catalog.schema import file_hosts, hosts, repo_meta


def test_empty_database_gets_the_current_schema(catalog_url: str) -> None:
    cat = Catalog(catalog_url)
    try:
        assert cat.ensure_schema() == SCHEMA_VERSION
        rid = cat.repository_id()
        assert len(rid) == 36
        assert cat.ensure_schema() == SCHEMA_VERSION  # idempotent
        assert cat.repository_id() == rid
    finally:
        cat.close()


def test_catalog_newer_than_the_code_is_refused(catalog_url: str) -> None:
    cat = Catalog(catalog_url)
    cat.ensure_schema()
    conn = cat.db.begin_write()
    conn.execute(update(repo_meta).where(repo_meta.c.name == "schema_version").values(value="999"))
    cat.commit()
    cat.close()
    with pytest.raises(repo.CatalogError) as err:
        Catalog(catalog_url).ensure_schema()
    assert "999" in str(err.value)
    assert err.value.hint


def test_a_version_1_catalog_is_upgraded_in_place_keeping_its_data(
    catalog_url: str, tmp_path: Any
) -> None:
    store = tmp_path / "store"
    cfg = {"store": store.as_uri(), "database": catalog_url, "local_root": str(tmp_path / "l")}
    with repo.Repo(cfg) as r:
        rf = r.add_file("kept.txt").touch("v1 data").publish()
        rf.tag("old")
        file_id = rf.file_id
    # Turn the catalog back into version 1: no purge column, no backups table, no
    # current_tags, no verified_with, no replicas.
    engine = create_engine(catalog_url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE replicas"))
        conn.execute(text("DROP TABLE current_tags"))
        conn.execute(text("DROP TABLE backups"))
        conn.execute(text("ALTER TABLE files DROP COLUMN purge_started_at"))
        conn.execute(text("ALTER TABLE files DROP COLUMN verified_with"))
        for column in ("mode", "storage_class", "archived_at"):
            conn.execute(text(f"ALTER TABLE files DROP COLUMN {column}"))
        conn.execute(
            update(repo_meta).where(repo_meta.c.name == "schema_version").values(value="1")
        )
    engine.dispose()

    with repo.Repo(cfg) as r:  # opening upgrades
        assert r.catalog.schema_version() == SCHEMA_VERSION == 7
        kept = r.file(file_id)
        assert (kept.state, kept.tags, kept.read_text()) == ("published", ["old"], "v1 data")
        assert kept.verified_with is None  # not recorded before version 4
        assert r.verify().published.corrupt == []
        assert [f.file_id for f in r.find(all=["old"])] == [file_id]
        assert r.gc().unpublished.count == 0  # the new column and table are usable
        r.catalog.record_backup("b1", taken_at=kept.created_at, completed_at=kept.created_at)


def test_foreign_tables_in_the_database_are_not_taken_over(catalog_url: str) -> None:
    engine = create_engine(catalog_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE files (id integer)"))
    engine.dispose()
    with pytest.raises(repo.CatalogError) as err:
        Catalog(catalog_url).ensure_schema()
    assert "files" in str(err.value)


def _create(url: str, out: Any) -> None:
    try:
        cat = Catalog(url)
        cat.ensure_schema()
        out.put(cat.repository_id())
        cat.close()
    except BaseException as exc:
        out.put(repr(exc))


def test_concurrent_first_use_creates_the_schema_once(catalog_url: str) -> None:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_create, args=(catalog_url, out)) for _ in range(4)]
    for p in procs:
        p.start()
    ids = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert len(set(ids)) == 1, ids
    assert len(ids[0]) == 36, ids


def test_cache_hit_touches_no_database(local_config: dict[str, str]) -> None:
    with repo.Repo(config=local_config) as r:
        rf = r.add_file("hot.txt").touch("hot").publish()
        r.commit()
        rf.read_bytes()  # warm
        r.commit()
        with recorded_statements(r) as seen:
            for _ in range(50):
                assert rf.read_bytes() == b"hot"
                with rf.open() as fp:
                    fp.read()
        assert seen == []
        # Hits within a minute of the last read are not even queued for the catalog.
        assert r.session.copies.waiting == 0
        r.commit()


def test_downloads_are_recorded_per_host_and_hits_are_batched(
    local_config: dict[str, str], tmp_path: Any
) -> None:
    with repo.Repo(config=local_config) as w:
        rf = w.add_file("shared.txt").touch("s").publish()
    cfg = dict(local_config, host_name="reader-1", local_root=str(tmp_path / "r1"))
    with repo.Repo(config=cfg) as r:
        f = r.get_file("shared.txt")
        assert f is not None
        f.read_bytes()  # download: recorded at once
        copies = {c.host: c for c in f.hosts}
        assert set(copies) == {"test-host", "reader-1"}
        first_access = copies["reader-1"].last_access
        f.read_bytes()  # a hit within a minute of the last read: not news at all
        r.commit()
        assert {c.host: c for c in f.hosts}["reader-1"].last_access == first_access
        last_read(r, f, seconds_ago=3 * USED_RESOLUTION_SECONDS)
        f.read_bytes()  # a hit that moves the last read on: remembered in memory
        assert {c.host: c for c in f.hosts}["reader-1"].last_access == first_access
        r.commit()  # flushed with the next commit
        later = {c.host: c for c in f.hosts}["reader-1"]
        assert later.last_access > first_access
        assert later.downloaded_at == copies["reader-1"].downloaded_at
    engine = create_engine(local_config["database"])
    with engine.connect() as conn:
        names = set(conn.execute(select(hosts.c.name)).scalars())
        n = conn.execute(
            select(file_hosts.c.file_id).where(file_hosts.c.file_id == rf.file_id)
        ).all()
    engine.dispose()
    assert names == {"test-host", "reader-1"}
    assert len(n) == 2


def test_host_records_its_cache_limit_and_copy_times_only_move_forward(
    local_config: dict[str, str],
) -> None:
    from datetime import timedelta

    cfg = dict(local_config, cache_max_bytes=10_000_000)
    with repo.Repo(config=cfg) as r:
        rf = r.add_file("limits.txt").touch("l").publish()
        r.commit()
        t0 = rf.hosts[0].last_access
        # A batch where a hit (later) and a fresh download (earlier) arrive together.
        r.catalog.record_copies(
            "test-host",
            [
                (rf.file_id, t0 + timedelta(seconds=5), False),
                (rf.file_id, t0 + timedelta(seconds=2), True),
            ],
            cache_max_bytes=10_000_000,
        )
        copy = rf.hosts[0]
        assert copy.last_access == t0 + timedelta(seconds=5)
        assert copy.downloaded_at == t0 + timedelta(seconds=2)
        row = r.catalog.db.conn.execute(
            select(hosts.c.cache_max_bytes).where(hosts.c.name == "test-host")
        ).scalar_one()
        assert row == 10_000_000


def test_a_new_tag_in_an_open_transaction_does_not_block_other_hosts(
    pg_url: str, tmp_path: Any
) -> None:
    store = tmp_path / "store"
    cfg = {"store": store.as_uri(), "database": pg_url, "local_root": str(tmp_path / "a")}
    first = repo.Repo(config=dict(cfg, host_name="a"))
    second = repo.Repo(config=dict(cfg, host_name="b", local_root=str(tmp_path / "b")))
    try:
        first.add_file("one.txt").touch("1").publish().tag("day=2030-01-01", "brand-new")
        # `first` has not committed; `second` uses the same new tags and must not wait.
        pg = second.catalog.db.conn
        pg.exec_driver_sql("SET lock_timeout = '2s'")
        rf = second.add_file("two.txt").touch("2").publish().tag("brand-new", "day=2030-01-01")
        second.commit()
        assert rf.tags == ["brand-new", "day=2030-01-01"]
        first.commit()
        assert len(first.find(all=["brand-new"])) == 2
    finally:
        first.close()
        second.close()


def test_close_rolls_back_but_keeps_the_record_of_cache_hits(
    local_config: dict[str, str], tmp_path: Any
) -> None:
    with repo.Repo(config=local_config) as w:
        rf = w.add_file("kept-hit.txt").touch("k").publish()
    r = repo.Repo(config=dict(local_config, host_name="reader", local_root=str(tmp_path / "rd")))
    f = r.get_file("kept-hit.txt")
    assert f is not None
    f.read_bytes()  # a download, recorded at once
    first = {c.host: c.last_access for c in f.hosts}["reader"]
    last_read(r, f, seconds_ago=3 * USED_RESOLUTION_SECONDS)
    f.read_bytes()  # a hit that moves the last read on, pending
    r.add_file("never-committed.txt").touch("n")  # an open write transaction
    r.close()
    with repo.Repo(config=local_config) as check:
        assert check.history("never-committed.txt") == []
        later = {c.host: c.last_access for c in check.file(rf.file_id).hosts}["reader"]
        assert later > first
