"""`Repo.purge` (issue 16, "Deleting now"): a version goes at once, whatever its state.

Against real catalogs and stores: the embedded default (SQLite over a directory) for
everything, and PostgreSQL over moto's S3 for the core purge. Catalog rows are read back
with plain SQLAlchemy; the store is asked for the object itself.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import make_url

from harness.proxy import FaultProxy
from repo import (
    NotFoundError,
    PurgeReport,
    Repo,
    RepoFile,
    StateError,
    UsageError,
    destroy_catalog,
    load_config,
)
from repo.catalog.schema import current_tags, file_hosts, file_tags, files
from repo.errors import StoreError
from repo.journal import read_entries
from repo.restore import restore_catalog

if TYPE_CHECKING:
    from collections.abc import Iterator

SECRET = b"password=hunter2\n"
STATES = ["unpublished", "uploaded", "published", "expired"]


# ----------------------------------------------------------------------- helpers


def s3_config(server: Any, database: str, tmp_path: Path, endpoint: str | None = None) -> dict:
    bucket = server.create_bucket(f"t-{uuid.uuid4().hex[:16]}")
    return {
        "local_root": str(tmp_path / "local"),
        "store": f"s3://{bucket}/repo",
        "database": database,
        "host_name": "test-host",
        "s3_endpoint_url": endpoint or server.endpoint_url,
        "s3_access_key": server.access_key,
        "s3_secret_key": server.secret_key,
        "s3_region": server.region,
    }


@pytest.fixture(params=["embedded", pytest.param("postgresql-moto", marks=pytest.mark.s3)])
def config(request: pytest.FixtureRequest, tmp_path: Path, sqlite_url: str) -> dict[str, Any]:
    """The embedded default's parts (SQLite, a directory), or PostgreSQL over moto."""
    if request.param == "embedded":
        store = tmp_path / "store"
        store.mkdir()
        return {
            "local_root": str(tmp_path / "local"),
            "store": store.as_uri(),
            "database": sqlite_url,
            "host_name": "test-host",
        }
    pg_url = request.getfixturevalue("pg_url")
    return s3_config(request.getfixturevalue("moto_server"), pg_url, tmp_path)


@pytest.fixture
def embedded(embedded_config: dict[str, str]) -> dict[str, Any]:
    return dict(embedded_config)


@pytest.fixture
def r(config: dict[str, Any]) -> Iterator[Repo]:
    with Repo(config) as rp:
        yield rp


def rows_of(config: dict[str, Any], file_id: int) -> dict[str, int]:
    """How many rows each table holds for version `file_id` (a fresh connection)."""
    engine = create_engine(load_config(config).database_url)
    try:
        with engine.connect() as conn:
            return {
                t.name: conn.execute(
                    select(func.count()).select_from(t).where(t.c.file_id == file_id)
                ).scalar_one()
                for t in (files, file_tags, file_hosts, current_tags)
            }
    finally:
        engine.dispose()


NONE_LEFT = {"files": 0, "file_tags": 0, "file_hosts": 0, "current_tags": 0}


def in_store(r: Repo, key: str) -> bool:
    try:
        r.store.head(key)
    except NotFoundError:
        return False
    return True


def make(r: Repo, state: str, path: str = "leaked/secret.txt") -> RepoFile:
    """A version of `path` in `state` (``uploaded``: unpublished, object stored), tagged."""
    if state == "expired":
        old = r.add_file(path).touch(SECRET).tag("secret").publish()
        r.add_file(path).touch(b"clean\n").publish()
        r.commit()
        return old.refresh()
    f = r.add_file(path).touch(SECRET).tag("secret")
    if state == "uploaded":
        f.upload()
    elif state == "published":
        f.publish()
    r.commit()
    return f.refresh()


def lose_catalog(config: dict[str, Any]) -> None:
    url = load_config(config).database_url
    if url.startswith("sqlite"):
        db = Path(str(make_url(url).database))
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    else:
        destroy_catalog(config)


def journal(r: Repo) -> list[dict[str, Any]]:
    return [e for _, e in read_entries(r.backups, datetime(2000, 1, 1, tzinfo=UTC)) if e]


# ------------------------------------------------------------------ what goes


@pytest.mark.parametrize("state", STATES)
def test_a_version_in_any_state_goes_with_its_object_rows_tags_and_copies(
    r: Repo, config: dict[str, Any], state: str
) -> None:
    f = make(r, state)
    if state != "unpublished":
        assert in_store(r, f.key)
        assert r.cache.cache_path(f.key).exists()
        assert rows_of(config, f.file_id)["file_hosts"] == 1
    else:
        assert len(r.session.staging.entries()) == 1
    assert rows_of(config, f.file_id)["file_tags"] == 1

    report = r.purge(f.file_id)

    assert not report.dry_run
    assert [(p.file_id, p.state, p.size) for p in report.purged] == [(f.file_id, f.state, f.size)]
    assert not in_store(r, f.key)
    assert not r.cache.cache_path(f.key).exists()
    assert r.session.staging.entries() == []
    assert rows_of(config, f.file_id) == NONE_LEFT
    with pytest.raises(NotFoundError):
        r.file(f.file_id)
    assert r.find(all=["secret"], published=False) == []
    # The last commit's journal entry names it, so a replay deletes it too.
    assert journal(r)[-1]["purged"] == [f.file_id]


def test_purging_the_published_version_leaves_the_path_without_one(r: Repo) -> None:
    old = make(r, "expired", "p.txt")
    current = r.current("p.txt")

    r.purge(current.file_id)

    assert [(v.file_id, v.state) for v in r.history("p.txt")] == [(old.file_id, "expired")]
    with pytest.raises(NotFoundError, match="no published version"):
        r.current("p.txt")


def test_a_path_with_one_version_is_purged_by_its_path(r: Repo) -> None:
    f = make(r, "published")

    report = r.purge("leaked/secret.txt")

    assert [p.file_id for p in report.purged] == [f.file_id]
    assert r.history("leaked/secret.txt") == []


def test_a_path_with_several_versions_needs_all_versions_and_then_loses_every_one(
    r: Repo, config: dict[str, Any]
) -> None:
    old = make(r, "expired")
    draft = r.add_file("leaked/secret.txt").touch(b"third").upload()
    r.commit()
    current = r.current("leaked/secret.txt")

    with pytest.raises(UsageError) as refused:
        r.purge("leaked/secret.txt")

    assert refused.value.message == (
        "'leaked/secret.txt' has 3 versions; purge all of them or one by its id"
    )
    assert refused.value.hint == (
        "pass --all-versions, or an id that `repo history leaked/secret.txt` lists"
    )
    assert len(r.history("leaked/secret.txt")) == 3

    report = r.purge("leaked/secret.txt", all_versions=True)

    assert [(p.file_id, p.state) for p in report.purged] == [
        (old.file_id, "expired"),
        (current.file_id, "published"),
        (draft.file_id, "unpublished"),
    ]
    assert report.bytes == len(SECRET) + len(b"clean\n") + len(b"third")
    assert r.history("leaked/secret.txt") == []
    for gone in (old, current, draft):
        assert not in_store(r, gone.key)
        assert rows_of(config, gone.file_id) == NONE_LEFT


def test_a_dry_run_reports_what_would_go_and_changes_nothing(
    r: Repo, config: dict[str, Any]
) -> None:
    f = make(r, "published")
    entries = len(journal(r))

    report = r.purge(f.file_id, dry_run=True)

    assert report.dry_run
    assert [p.file_id for p in report.purged] == [f.file_id]
    assert in_store(r, f.key)
    assert r.cache.cache_path(f.key).exists()
    assert r.current(f.path).file_id == f.file_id
    assert rows_of(config, f.file_id)["current_tags"] == 1
    assert len(journal(r)) == entries


def test_unknown_ids_and_paths_are_not_found(embedded: dict[str, Any]) -> None:
    with Repo(embedded) as r:
        with pytest.raises(NotFoundError, match="no file with id 99"):
            r.purge(99)
        with pytest.raises(NotFoundError, match="no file at path 'nothing/here'"):
            r.purge("nothing/here", all_versions=True)
        with pytest.raises(UsageError, match="all_versions goes with a path"):
            r.purge(1, all_versions=True)


def test_purge_refuses_to_run_with_uncommitted_changes(embedded: dict[str, Any]) -> None:
    with Repo(embedded) as r:
        f = make(r, "published")
        r.add_file("other").touch(b"x")
        with pytest.raises(UsageError, match="purging needs a clean session"):
            r.purge(f.file_id)
        r.rollback()
        assert r.file(f.file_id).state == "published"


# ------------------------------------------------------------ races and resuming


def test_a_claimed_version_can_no_longer_be_published_by_another_session(
    embedded: dict[str, Any], tmp_path: Path
) -> None:
    with Repo(embedded) as a:
        f = a.add_file("p").touch(SECRET).upload()
        a.commit()
        a.catalog.claim_regardless([f.file_id], now=datetime.now(UTC))
        a.commit()  # the purge was cut off here, before deleting anything
    other = {**embedded, "host_name": "b", "local_root": str(tmp_path / "b")}
    with Repo(other) as b, pytest.raises(StateError):
        b.file(f.file_id).publish()


def test_a_purge_waits_for_a_publish_in_flight_on_postgresql_and_then_takes_it(
    pg_url: str, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    base = {"store": store.as_uri(), "database": pg_url}
    a_config = {**base, "host_name": "a", "local_root": str(tmp_path / "a")}
    b_config = {**base, "host_name": "b", "local_root": str(tmp_path / "b")}
    with Repo(a_config) as a, Repo(b_config) as b:
        f = a.add_file("p").touch(SECRET).upload()
        a.commit()
        a.file(f.file_id).publish()  # holds the path's lock until it commits
        outcome: list[object] = []
        purging = threading.Thread(target=lambda: outcome.append(b.purge(f.file_id)))
        purging.start()
        purging.join(0.5)
        assert purging.is_alive()  # waiting on the publisher's locks
        a.commit()
        purging.join(30)
        assert not purging.is_alive()
        (report,) = outcome
        assert isinstance(report, PurgeReport)
        # Chosen before the wait, so reported as it was then; claimed as the publish left it.
        assert [(p.file_id, p.state) for p in report.purged] == [(f.file_id, "unpublished")]
        assert not in_store(a, f.key)
        with pytest.raises(NotFoundError):
            a.current("p")


@pytest.mark.s3
@pytest.mark.parametrize("finisher", ["purge again", "gc"])
def test_a_purge_whose_deletion_failed_is_finished_by_the_next_purge_or_gc(
    moto_server: Any, sqlite_url: str, tmp_path: Path, finisher: str
) -> None:
    with FaultProxy(moto_server.endpoint_url) as proxy:
        config = s3_config(moto_server, sqlite_url, tmp_path, proxy.endpoint_url)
        with Repo(config) as r:
            f = make(r, "published")
            proxy.fail_requests(403, method="POST", query="delete", count=None)
            with pytest.raises(StoreError):
                r.purge(f.file_id)
            # Claimed and committed: no longer current, its object still there.
            (left,) = r.history(f.path)
            assert (left.file_id, left.state) == (f.file_id, "expired")
            assert r.catalog.claimed()[0].file_id == f.file_id
            r.rollback()
            assert in_store(r, f.key)
            with pytest.raises(NotFoundError):
                r.current(f.path)
            proxy.reset()

            if finisher == "gc":
                assert r.gc().resumed.keys == [f.key]
            else:
                assert [p.file_id for p in r.purge(f.file_id).purged] == [f.file_id]

            assert not in_store(r, f.key)
            assert rows_of(config, f.file_id) == NONE_LEFT


# ------------------------------------------------------- backups and other hosts


def test_a_restore_from_an_earlier_backup_and_the_journal_does_not_bring_it_back(
    config: dict[str, Any],
) -> None:
    with Repo(config) as r:
        f = make(r, "published")
        kept = make(r, "published", "kept.txt")
        r.backup()
        r.purge(f.file_id)
    lose_catalog(config)

    report = restore_catalog(config)

    assert report.journal_entries >= 2  # the claim, then the purge
    with Repo(config) as r:
        with pytest.raises(NotFoundError):
            r.file(f.file_id)
        assert r.history(f.path) == []
        assert r.current("kept.txt").file_id == kept.file_id
        assert r.verify().ok


def test_a_restore_from_an_earlier_backup_without_the_journal_is_reported_lost(
    embedded: dict[str, Any],
) -> None:
    with Repo(embedded) as r:
        f = make(r, "published")
        r.backup()
        before = {i.key for i in r.backups.store.list(r.backups.journal_prefix)}
        r.purge(f.file_id)
        after = {i.key for i in r.backups.store.list(r.backups.journal_prefix)}
        r.backups.store.delete_many(sorted(after - before))
    lose_catalog(embedded)

    restore_catalog(embedded)

    with Repo(embedded) as r:
        back = r.file(f.file_id)  # the backup's row: published, its object gone
        assert back.state == "published"
        report = r.verify()
        assert not report.ok
        assert [(m.file_id, m.reason) for m in report.published.missing] == [
            (f.file_id, "not in the store")
        ]
        with pytest.raises(NotFoundError):
            back.read_bytes()
        # What docs/deleting.md says to do then: purge it again (its object is gone).
        assert [p.file_id for p in r.purge(f.file_id).purged] == [f.file_id]
        assert r.verify().ok


def test_another_hosts_cached_copy_is_dropped_by_its_cache_prune(
    embedded: dict[str, Any], tmp_path: Path
) -> None:
    other = {**embedded, "host_name": "b", "local_root": str(tmp_path / "b")}
    with Repo(embedded) as a, Repo(other) as b:
        f = make(a, "published")
        assert b.file(f.file_id).read_bytes() == SECRET
        b.commit()
        assert b.cache.cache_path(f.key).exists()

        a.purge(f.file_id)

        assert b.cache.cache_path(f.key).exists()  # out of the purge's reach
        assert b.verify_cache().unknown == 1  # counted, left to prune
        assert b.prune_cache().dropped_purged == 1
        assert not b.cache.cache_path(f.key).exists()
