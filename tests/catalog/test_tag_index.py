"""``current_tags`` (the tags of published versions, which `find` reads) never drifts
from the truth it derives from: ``files``, ``file_tags`` and ``path_tags``.

After every kind of write (publish, expire, supersede, tag and untag a file or a path,
add a tree, purge, restore with journal replay, migration from versions 2 and 4) the table is
compared row for row with a brute-force derivation, and `find` with a brute-force
filter of every current file's tags read through the API.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import create_engine, select, text, update

import repo
from repo import Repo
from repo.catalog import Catalog
from repo.catalog.schema import (
    SCHEMA_VERSION,
    current_tags,
    file_tags,
    files,
    path_tags,
    paths,
    repo_meta,
    tags,
)
from repo.restore import restore_catalog

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

# ------------------------------------------------------------------ the checks


def derived_from_truth(url: str) -> set[tuple[str, int]]:
    """(tag, file id) for every tag of every published version, own or via its path,
    worked out in Python from the tables it derives from."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            names = dict(conn.execute(select(tags.c.tag_id, tags.c.name)).all())
            published = dict(
                conn.execute(
                    select(files.c.file_id, files.c.path_id).where(files.c.state == "published")
                ).all()
            )
            on_path: dict[int, set[int]] = {}
            for path_id, tag_id in conn.execute(select(path_tags.c.path_id, path_tags.c.tag_id)):
                on_path.setdefault(path_id, set()).add(tag_id)
            out = {
                (names[tag_id], file_id)
                for file_id, tag_id in conn.execute(select(file_tags.c.file_id, file_tags.c.tag_id))
                if file_id in published
            }
            for file_id, path_id in published.items():
                out |= {(names[t], file_id) for t in on_path.get(path_id, ())}
            return out
    finally:
        engine.dispose()


def stored(url: str) -> set[tuple[str, int]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(tags.c.name, current_tags.c.file_id).join(
                    tags, tags.c.tag_id == current_tags.c.tag_id
                )
            ).all()
            assert len(rows) == len(set(rows))
            # Each row's path is its version's (the key find walks in order).
            astray = select(current_tags.c.file_id).where(
                current_tags.c.path
                != select(paths.c.path)
                .join(files, files.c.path_id == paths.c.path_id)
                .where(files.c.file_id == current_tags.c.file_id)
                .scalar_subquery()
            )
            assert conn.execute(astray).all() == []
            # Each row's tag set is its version's every tag, once each, in id order.
            sets = conn.execute(
                select(current_tags.c.file_id, current_tags.c.tag_id, current_tags.c.tag_set)
            ).all()
            carried: dict[int, set[int]] = {}
            for file_id, tag_id, _ in sets:
                carried.setdefault(file_id, set()).add(tag_id)
            for file_id, _, tag_set in sets:
                assert (tag_set[0], tag_set[-1]) == (",", ","), tag_set
                listed = [int(t) for t in tag_set.strip(",").split(",")]
                assert listed == sorted(carried[file_id]), (file_id, tag_set)
            return {(name, file_id) for name, file_id in rows}
    finally:
        engine.dispose()


def assert_in_step(r: Repo, url: str) -> None:
    """The table equals its derivation, and `find` equals a brute-force filter of every
    current file (committed state: call after `r.commit()`)."""
    assert stored(url) == derived_from_truth(url)
    current = r.list("*")
    carried = {file_id: set(t) for file_id, t in r.tags_of(current).items()}
    r.catalog.end_read()
    order = [f.file_id for f in current]  # path order, as find's
    names = sorted({t for ts in carried.values() for t in ts} | {"nowhere"})

    def brute(any_: list[str], all_: list[str], excl: list[str]) -> list[int]:
        return [
            f
            for f in order
            if (not any_ or carried[f] & set(any_))
            and set(all_) <= carried[f]
            and not carried[f] & set(excl)
        ]

    def found(any_: list[str], all_: list[str], excl: list[str]) -> list[int]:
        got = [f.file_id for f in r.find(any=any_, all=all_, exclude=excl)]
        r.catalog.end_read()
        return got

    rnd = random.Random(len(names))
    for name in names:
        assert found([], [name], []) == brute([], [name], []), name
        assert found([name], [], []) == brute([name], [], []), name
        assert found([], [], [name]) == brute([], [], [name]), name
    for _ in range(12):
        q = [rnd.sample(names, rnd.randint(0, min(3, len(names)))) for _ in range(3)]
        assert found(*q) == brute(*q), q


@pytest.fixture
def db_url(local_config: dict[str, str]) -> str:
    return local_config["database"]


# ------------------------------------------------------------------ single writes


def test_publish_expire_and_retagging_keep_current_tags_in_step(
    local_config: dict[str, str], db_url: str
) -> None:
    with Repo(local_config) as r:

        def check() -> None:
            r.commit()
            assert_in_step(r, db_url)

        v1 = r.add_file("a/report").touch("1").tag("x", "y")
        check()  # unpublished: no rows
        v1.publish()
        check()
        v1.tag_path("team", "y")  # y both on the file and on its path: one row
        check()
        v2 = r.add_file("a/report").touch("2").tag("z").publish()  # supersedes v1
        check()
        assert [f.file_id for f in r.find(all=["team", "y"])] == [v2.file_id]
        v2.untag_path("y")  # v2 has no y of its own: gone from find
        check()
        assert r.find(any=["y"]) == []
        v2.tag("team")  # on the file and the path
        v2.untag_path("team")  # the file's own stays
        check()
        assert [f.file_id for f in r.find(all=["team"])] == [v2.file_id]
        v2.untag("team")
        check()
        v1.tag("w")  # expired: tagging it changes nothing current
        check()
        v2.expire()
        check()
        assert r.find(all=["z"]) == []
        draft = r.add_file("b/empty").touch("3")
        draft.tag_path("later")  # a path tag waiting for a current version
        check()
        draft.publish()
        check()
        assert [f.file_id for f in r.find(all=["later"])] == [draft.file_id]
        r.add_file("b/empty").touch("4").publish().tag("later")
        check()


def test_a_rolled_back_transaction_leaves_current_tags_as_they_were(
    local_config: dict[str, str], db_url: str
) -> None:
    with Repo(local_config) as r:
        v1 = r.add_file("p").touch("1").publish().tag("kept")
        r.commit()
        r.add_file("p").touch("2").publish().tag("dropped")
        v1.tag_path("dropped")
        r.rollback()
        assert_in_step(r, db_url)
        assert [f.file_id for f in r.find(all=["kept"])] == [v1.file_id]


def test_add_tree_publishing_over_current_versions_moves_their_tags(
    local_config: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    for i in range(30):
        (tree / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
        (tree / f"d{i % 3}" / f"f{i}").write_text(str(i))
    with Repo(local_config) as r:
        old = r.add_file("t/d0/f0").touch("old").publish().tag("old", "kept-on-path")
        old.tag_path("kept-on-path")
        r.add_tree(tree, prefix="t", tags=["first"], publish=False)  # unpublished: no rows
        r.commit()
        assert_in_step(r, db_url)
        r.add_tree(tree, prefix="t", tags=["second", "both"], publish=True)
        r.commit()
        assert_in_step(r, db_url)
        assert len(r.find(all=["second"])) == 30
        assert r.find(any=["old", "first"]) == []
        [new] = r.find(all=["kept-on-path"])
        assert new.path == "t/d0/f0"
        assert new.file_id != old.file_id
        r.add_tree(tree, prefix="t", tags=["third", "both"], publish=True)
        r.commit()
        assert_in_step(r, db_url)
        assert len(r.find(all=["both"])) == 30
        assert r.find(all=["second"]) == []


def test_garbage_collection_of_expired_versions_leaves_current_tags_in_step(
    local_config: dict[str, str], db_url: str
) -> None:
    config = {**local_config, "expired_ttl_seconds": 60, "backups_before_purge": 0}
    with Repo(config) as r:
        old = r.add_file("g").touch("1").publish().tag("t", "old")
        new = r.add_file("g").touch("2").publish().tag("t")
        r.add_file("h").touch("3").publish().tag("t")
        r.commit()
        assert old.refresh().expired_at is not None
        report = r.gc(now=old.expired_at + timedelta(seconds=61))
        assert report.expired.count == 1
        assert_in_step(r, db_url)
        assert new.file_id in [f.file_id for f in r.find(all=["t"])]


def test_random_writes_keep_current_tags_in_step(local_config: dict[str, str], db_url: str) -> None:
    rnd = random.Random(20261126)
    pool = ["a", "b", "c", "d", "e"]
    with Repo(local_config) as r:
        handles: list[repo.RepoFile] = []
        for step in range(160):
            op = rnd.random()
            path = f"p{rnd.randrange(6)}"
            some = rnd.sample(pool, rnd.randint(1, 2))
            if op < 0.3 or not handles:
                rf = r.add_file(path).touch(str(step))
                if rnd.random() < 0.5:
                    rf.tag(*some)
                if rnd.random() < 0.7:
                    rf.publish()
                handles.append(rf)
                continue
            rf = rnd.choice(handles)
            if op < 0.45:
                rf.tag(*some)
            elif op < 0.6:
                rf.untag(*some)
            elif op < 0.7:
                rf.tag_path(*some)
            elif op < 0.8:
                rf.untag_path(*some)
            elif op < 0.88 and rf.refresh().state == "unpublished":
                rf.publish()
            elif rf.refresh().state != "expired":
                rf.expire()
            if rnd.random() < 0.1:
                r.commit()
                assert_in_step(r, db_url)
        r.commit()
        assert_in_step(r, db_url)


# ------------------------------------------------------------------ restore and upgrade


def test_restore_and_journal_replay_rebuild_current_tags(
    local_config: dict[str, str], db_url: str
) -> None:
    with Repo(local_config) as r:
        a = r.add_file("r/a").touch("a1").publish().tag("x")
        a.tag_path("on-a")
        b = r.add_file("r/b").touch("b1").publish().tag("x", "y")
        r.commit()
        r.backup()
        # After the backup: replayed from the journal.
        a2 = r.add_file("r/a").touch("a2").tag("new").publish()
        b.untag("y")
        b.tag_path("on-b")
        r.commit()
        r.add_file("r/c").touch("c1").publish().tag("x")
        b.expire()
        r.commit()
        before = stored(db_url)
        assert before == derived_from_truth(db_url)
    Catalog(db_url).drop_schema()
    report = restore_catalog(local_config)
    assert report.journal_entries == 2
    assert stored(db_url) == before
    with Repo(local_config) as r:
        assert_in_step(r, db_url)
        assert [f.file_id for f in r.find(all=["on-a", "new"])] == [a2.file_id]


def test_a_version_2_catalog_gets_current_tags_filled_on_upgrade(
    local_config: dict[str, str], db_url: str
) -> None:
    with Repo(local_config) as r:
        r.add_file("m/a").touch("1").publish().tag("x", "old")
        a = r.add_file("m/a").touch("2").publish().tag("x")
        a.tag_path("path-tag")
        r.add_file("m/b").touch("3").tag("x")  # unpublished
        r.commit()
        expected = derived_from_truth(db_url)
    assert len(expected) == 2
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE current_tags"))
        conn.execute(text("ALTER TABLE files DROP COLUMN verified_with"))
        drop_version_6_columns(conn)
        conn.execute(
            update(repo_meta).where(repo_meta.c.name == "schema_version").values(value="2")
        )
    engine.dispose()
    with Repo(local_config) as r:  # opening upgrades
        assert r.catalog.schema_version() == SCHEMA_VERSION
        assert stored(db_url) == expected
        assert_in_step(r, db_url)


#: ``current_tags`` as versions 3 and 4 made it: no path.
OLD_CURRENT_TAGS = (
    "CREATE TABLE current_tags (tag_id BIGINT NOT NULL, file_id BIGINT NOT NULL,"
    " PRIMARY KEY (tag_id, file_id))",
    "CREATE INDEX current_tags_file_ix ON current_tags (file_id)",
    "INSERT INTO current_tags (tag_id, file_id)"
    " SELECT ft.tag_id, ft.file_id FROM file_tags ft JOIN files f ON f.file_id = ft.file_id"
    " WHERE f.state = 'published' UNION SELECT pt.tag_id, f.file_id FROM path_tags pt"
    " JOIN files f ON f.path_id = pt.path_id WHERE f.state = 'published'",
)


def drop_version_6_columns(conn: Any) -> None:
    """What schema versions 6 and 7 added, taken away."""
    conn.execute(text("DROP TABLE replicas"))
    for column in ("mode", "storage_class", "archived_at"):
        conn.execute(text(f"ALTER TABLE files DROP COLUMN {column}"))


def make_version_4(url: str) -> None:
    """Turn the catalog at `url` back into version 4: ``current_tags`` without paths."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE current_tags"))
        for statement in OLD_CURRENT_TAGS:
            conn.execute(text(statement))
        drop_version_6_columns(conn)
        conn.execute(
            update(repo_meta).where(repo_meta.c.name == "schema_version").values(value="4")
        )
    engine.dispose()


def test_a_version_4_catalog_finds_the_same_files_after_the_upgrade(
    local_config: dict[str, str], db_url: str
) -> None:
    queries: list[dict[str, Any]] = [
        {"all": ["x"]},
        {"all": ["x", "path-tag"], "exclude": ["old"]},
        {"any": ["old", "path-tag", "y"]},
        {"any": ["x", "y"], "exclude": ["path-tag"]},
        {"exclude": ["y"]},
    ]
    with Repo(local_config) as r:
        r.add_file("m/a").touch("1").publish().tag("x", "old")
        a = r.add_file("m/a").touch("2").publish().tag("x")
        a.tag_path("path-tag")
        r.add_file("m/b").touch("3").publish().tag("x", "y")
        r.add_file("m/c").touch("4").tag("x")  # unpublished
        r.add_file("l/d").touch("5").publish().tag("y", "old")
        r.commit()
        expected = derived_from_truth(db_url)
        before = [[f.file_id for f in r.find(**q)] for q in queries]
    assert len(expected) == 6
    assert [len(b) for b in before] == [2, 1, 3, 2, 1]
    make_version_4(db_url)
    with Repo(local_config) as r:  # opening upgrades
        assert r.catalog.schema_version() == SCHEMA_VERSION == 7
        assert stored(db_url) == expected  # with paths and tag sets
        assert [[f.file_id for f in r.find(**q)] for q in queries] == before
        assert [[f.file_id for f in r.find(**q, limit=1)] for q in queries] == [
            b[:1] for b in before
        ]
        assert_in_step(r, db_url)


@pytest.mark.parametrize("version", [2, 4])
def test_upgrade_grants_the_catalog_roles_their_rights_on_current_tags(
    pg_url: str, version: int
) -> None:
    from repo.catalog.roles import create_roles

    catalog = Catalog(pg_url)
    try:
        catalog.ensure_schema()
        roles = create_roles(catalog, f"tagidx{version}")
        conn = catalog.db.begin_write()
        conn.execute(text("DROP TABLE current_tags"))
        if version == 2:
            conn.execute(text("ALTER TABLE files DROP COLUMN verified_with"))
        else:
            for statement in OLD_CURRENT_TAGS:
                conn.execute(text(statement))
        drop_version_6_columns(conn)
        conn.execute(
            update(repo_meta).where(repo_meta.c.name == "schema_version").values(value=str(version))
        )
        catalog.db.commit()
        assert catalog.ensure_schema() == SCHEMA_VERSION

        def may(role: str, what: str) -> bool:
            query = text("SELECT has_table_privilege(:role, 'current_tags', :what)")
            return bool(catalog.db.conn.execute(query, {"role": role, "what": what}).scalar())

        assert may(roles.read_only, "SELECT")
        assert not may(roles.read_only, "INSERT")
        assert all(may(roles.read_write, w) for w in ("SELECT", "INSERT", "DELETE"))
    finally:
        catalog.close()


# ------------------------------------------------------------------ concurrent writers


@pytest.fixture
def pg_config(tmp_path: Path, pg_url: str) -> dict[str, str]:
    store = tmp_path / "store"
    store.mkdir()
    return {"local_root": str(tmp_path / "local"), "store": store.as_uri(), "database": pg_url}


@pytest.fixture
def two_hosts(pg_config: dict[str, str], tmp_path: Path) -> Iterator[tuple[Repo, Repo]]:
    a = Repo({**pg_config, "host_name": "a", "local_root": str(tmp_path / "a")})
    b = Repo({**pg_config, "host_name": "b", "local_root": str(tmp_path / "b")})
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def in_thread_once_blocked(waiter: Repo, work: Any) -> threading.Thread:
    """Run `work` in a thread and return once its session waits for a lock."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # re-raised by the test through `errors`
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.errors = errors  # type: ignore[attr-defined]
    watcher = create_engine(waiter.catalog.db.engine.url)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        with watcher.connect() as conn:
            while time.monotonic() < deadline:
                waiting = conn.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
                ).scalar()
                conn.rollback()
                if waiting or not thread.is_alive():
                    break
                time.sleep(0.01)
    finally:
        watcher.dispose()
    assert thread.is_alive(), errors or "the work never waited"
    return thread


def finish(thread: threading.Thread) -> None:
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert thread.errors == []  # type: ignore[attr-defined]


def test_tagging_a_version_that_another_session_is_superseding(
    two_hosts: tuple[Repo, Repo], pg_config: dict[str, str]
) -> None:
    a, b = two_hosts
    v1 = a.add_file("c/p").touch("1").publish()
    a.commit()
    a.add_file("c/p").touch("2").publish()  # expires v1; not committed yet
    stale = b.file(v1.file_id)
    b.catalog.end_read()
    thread = in_thread_once_blocked(b, lambda: stale.tag("late"))
    a.commit()
    finish(thread)
    b.commit()
    assert_in_step(a, pg_config["database"])
    assert a.find(all=["late"]) == []


def test_removing_a_file_tag_while_another_session_puts_it_on_the_path(
    two_hosts: tuple[Repo, Repo], pg_config: dict[str, str]
) -> None:
    a, b = two_hosts
    v = a.add_file("c/q").touch("1").publish().tag("t")
    a.commit()
    b.file(v.file_id).tag_path("t")  # not committed yet
    mine = a.file(v.file_id)
    a.catalog.end_read()
    thread = in_thread_once_blocked(a, lambda: mine.untag("t"))
    b.commit()
    finish(thread)
    a.commit()
    assert_in_step(a, pg_config["database"])
    assert [f.file_id for f in a.find(all=["t"])] == [v.file_id]


def test_tagging_a_path_while_another_session_publishes_its_next_version(
    two_hosts: tuple[Repo, Repo], pg_config: dict[str, str]
) -> None:
    a, b = two_hosts
    a.add_file("c/r").touch("1").publish()
    a.commit()
    v2 = a.add_file("c/r").touch("2").publish()  # not committed yet
    current = b.get_file("c/r")
    assert current is not None
    b.catalog.end_read()
    thread = in_thread_once_blocked(b, lambda: current.tag_path("p"))
    a.commit()
    finish(thread)
    b.commit()
    assert_in_step(a, pg_config["database"])
    assert [f.file_id for f in a.find(all=["p"])] == [v2.file_id]
