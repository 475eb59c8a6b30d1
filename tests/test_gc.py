"""Garbage collection: every purge rule and its edges, against real catalogs and stores.

The rules (see `repo.gc`): an unpublished version goes once ``created_at`` is strictly
before ``now - unpublished_ttl_seconds``; an expired one once ``expired_at`` is strictly
before ``now - expired_ttl_seconds`` and strictly before the snapshot time of the
``backups_before_purge``-th newest completed backup; a published one never. Times are
pinned with ``Repo.gc(now=...)`` so the edges are exact.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import random
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import text

from conftest import CliRun, last_read, write_config
from repo import (
    ConfigError,
    ConflictError,
    NotFoundError,
    Repo,
    RepoFile,
    StateError,
    UsageError,
    load_config,
)
from repo.cache import USED_RESOLUTION_SECONDS
from repo.config import GC_DEFAULTS
from repo.gc import GcCategory, GcReport
from repo.paths import make_key, new_version_token

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

US = timedelta(microseconds=1)
#: Long enough that every age-based rule applies, short of datetime's year 9999.
CENTURY = timedelta(days=36_500)
#: Bound on every wait for another thread.
WAIT_S = 30.0


# ------------------------------------------------------------------------- helpers


@pytest.fixture
def open_repo() -> Iterator[Callable[..., Repo]]:
    """Open `Repo`s on a config plus GC settings; all are closed after the test."""
    opened: list[Repo] = []

    def make(base: dict[str, Any], **settings: int) -> Repo:
        r = Repo({**base, **settings})
        opened.append(r)
        return r

    yield make
    for r in opened:
        r.close()


def assert_purged(r: Repo, rf: RepoFile) -> None:
    with pytest.raises(NotFoundError):
        r.store.head(rf.key)
    with pytest.raises(NotFoundError):
        r.file(rf.file_id)


def assert_intact(r: Repo, rf: RepoFile) -> None:
    assert r.store.head(rf.key).size == rf.size
    assert r.file(rf.file_id).state == rf.state


def category(c: GcCategory) -> tuple[int, int, list[str]]:
    return c.count, c.bytes, c.keys


def supersede(r: Repo, path: str, old: bytes, new: bytes) -> tuple[RepoFile, RepoFile]:
    """Publish `old` then `new` at `path`; returns (the expired one, the current one)."""
    first = r.add_file(path).touch(old).publish()
    second = r.add_file(path).touch(new).publish()
    r.commit()
    return first.refresh(), second


def make_orphan(config: dict[str, Any], path: str, data: bytes) -> str:
    """What a process killed between its upload and its commit leaves: an object at a
    version's key that no row names. (A rollback deletes its own uploads on the way out:
    tests/test_interrupted_add.py.)"""
    with Repo(config) as r:
        key = make_key(r.store.key_prefix, path, new_version_token())
        r.store.put_bytes(key, data)
    return key


def object_exists(r: Repo, key: str) -> bool:
    try:
        r.store.head(key)
    except NotFoundError:
        return False
    return True


# ------------------------------------------------------------ the unpublished rule


def test_gc_purges_an_old_unpublished_version_from_store_catalog_and_cache(repo: Repo) -> None:
    # The core purge on every catalog x store combination, with the default settings.
    draft = repo.add_file("drafts/old.bin").touch(b"draft").upload()
    current = repo.add_file("reports/kept.bin").touch(b"published").publish()
    repo.commit()
    assert repo.cache.cache_path(draft.key).exists()

    report = repo.gc(now=draft.created_at + timedelta(days=2))

    assert category(report.unpublished) == (1, 5, [draft.key])
    assert category(report.expired) == (0, 0, [])
    assert_purged(repo, draft)
    assert not repo.cache.cache_path(draft.key).exists()
    assert_intact(repo, current)
    assert repo.current("reports/kept.bin").read_bytes() == b"published"


def test_unpublished_version_is_kept_exactly_at_the_ttl_and_purged_one_microsecond_later(
    local_config: dict[str, str], open_repo: Callable[..., Repo]
) -> None:
    r = open_repo(local_config, unpublished_ttl_seconds=3600)
    draft = r.add_file("edge.bin").touch(b"edge").upload()
    r.commit()
    edge = draft.created_at + timedelta(seconds=3600)

    at_edge = r.gc(now=edge)
    assert at_edge.unpublished.count == 0
    assert_intact(r, draft)

    past_edge = r.gc(now=edge + US)
    assert past_edge.unpublished.keys == [draft.key]
    assert_purged(r, draft)


def test_an_unpublished_version_never_uploaded_is_purged_without_an_object(
    local_config: dict[str, str], open_repo: Callable[..., Repo]
) -> None:
    r = open_repo(local_config, unpublished_ttl_seconds=60)
    empty = r.add_file("never/uploaded.txt")
    r.commit()
    report = r.gc(now=empty.created_at + timedelta(minutes=2))
    assert category(report.unpublished) == (1, 0, [empty.key])
    with pytest.raises(NotFoundError):
        r.file(empty.file_id)


def test_published_versions_are_never_purged_however_old(
    local_config: dict[str, str], open_repo: Callable[..., Repo]
) -> None:
    r = open_repo(
        local_config,
        unpublished_ttl_seconds=0,
        expired_ttl_seconds=0,
        backups_before_purge=0,
        orphan_grace_seconds=0,
    )
    current = r.add_file("forever.txt").touch("keep me").publish()
    r.commit()
    report = r.gc(orphans=True, now=current.created_at + CENTURY)
    assert (report.unpublished.count, report.expired.count, report.orphans.count) == (0, 0, 0)
    assert_intact(r, current)
    assert r.current("forever.txt").read_text() == "keep me"


def test_a_superseded_version_follows_the_expired_rule_not_the_unpublished_one(
    local_config: dict[str, str], open_repo: Callable[..., Repo]
) -> None:
    r = open_repo(
        local_config,
        unpublished_ttl_seconds=0,
        expired_ttl_seconds=7200,
        backups_before_purge=0,
    )
    old, new = supersede(r, "doc.txt", b"v1", b"v2")
    withdrawn = r.add_file("withdrawn.txt").touch(b"never published").upload().expire()
    r.commit()
    assert old.state == withdrawn.state == "expired"
    assert old.expired_at is not None
    assert withdrawn.expired_at is not None

    # Far past the unpublished TTL, inside the expired one: both stay.
    early = r.gc(now=max(old.expired_at, withdrawn.expired_at) + timedelta(seconds=3600))
    assert (early.unpublished.count, early.expired.count) == (0, 0)
    assert_intact(r, old)
    assert_intact(r, withdrawn)

    late = r.gc(now=max(old.expired_at, withdrawn.expired_at) + timedelta(seconds=7200) + US)
    assert late.unpublished.count == 0
    assert sorted(late.expired.keys) == sorted([old.key, withdrawn.key])
    assert_purged(r, old)
    assert_purged(r, withdrawn)
    assert_intact(r, new)


# ----------------------------------------------------------------- the expired rule

#: Backups as (taken, completed) offsets in seconds from the moment the version expired.
BackupPlan = list[tuple[float, float | None]]

EXPIRED_CASES: list[tuple[str, BackupPlan, bool]] = [
    ("no-backups", [], False),
    ("one-after-expiry", [(1, 2)], False),
    ("two-after-expiry", [(1, 2), (3, 4)], True),
    ("three-after-expiry", [(1, 2), (3, 4), (5, 6)], True),
    ("two-before-expiry", [(-10, -9), (-5, -4)], False),
    # The snapshot time decides, not the completion time.
    ("taken-before-completed-after", [(-1, 5), (3, 4)], False),
    ("one-before-one-after", [(-5, -4), (1, 2)], False),
    ("one-after-one-incomplete", [(1, 2), (3, None)], False),
    ("two-after-plus-incomplete", [(1, 2), (3, 4), (5, None)], True),
    # A snapshot taken at the very moment of expiry is not counted as having seen it.
    ("one-exactly-at-expiry", [(0, 1), (3, 4)], False),
    ("one-a-microsecond-after", [(0.000001, 1), (3, 4)], True),
]


@pytest.mark.parametrize(
    ("plan", "purged"),
    [(plan, purged) for _, plan, purged in EXPIRED_CASES],
    ids=[name for name, _, _ in EXPIRED_CASES],
)
def test_expired_version_past_its_ttl_waits_for_two_completed_backups_taken_after_expiry(
    local_config: dict[str, str], open_repo: Callable[..., Repo], plan: BackupPlan, purged: bool
) -> None:
    r = open_repo(local_config, expired_ttl_seconds=3600, backups_before_purge=2)
    old, new = supersede(r, "daily.csv", b"monday", b"tuesday")
    assert old.expired_at is not None
    for i, (taken, completed) in enumerate(plan):
        r.catalog.record_backup(
            f"backup-{i}",
            taken_at=old.expired_at + timedelta(seconds=taken),
            completed_at=None
            if completed is None
            else old.expired_at + timedelta(seconds=completed),
        )
    r.commit()

    report = r.gc(now=old.expired_at + timedelta(hours=2))

    if purged:
        assert category(report.expired) == (1, 6, [old.key])
        assert report.waiting_for_backups == 0
        assert_purged(r, old)
    else:
        assert report.expired.count == 0
        assert report.waiting_for_backups == 1
        assert_intact(r, old)
    assert_intact(r, new)


def test_expired_version_seen_by_enough_backups_still_waits_for_its_ttl_edge(
    local_config: dict[str, str], open_repo: Callable[..., Repo]
) -> None:
    r = open_repo(local_config, expired_ttl_seconds=3600, backups_before_purge=2)
    old, _ = supersede(r, "t.txt", b"a", b"b")
    assert old.expired_at is not None
    for i in range(2):
        at = old.expired_at + timedelta(seconds=i + 1)
        r.catalog.record_backup(f"b{i}", taken_at=at, completed_at=at)
    r.commit()
    edge = old.expired_at + timedelta(seconds=3600)

    at_edge = r.gc(now=edge)
    # Inside its TTL it is not "waiting for backups" either: the TTL keeps it.
    assert (at_edge.expired.count, at_edge.waiting_for_backups) == (0, 0)
    assert_intact(r, old)

    assert r.gc(now=edge + US).expired.keys == [old.key]
    assert_purged(r, old)


def test_with_backups_before_purge_zero_the_ttl_alone_decides(
    local_config: dict[str, str], open_repo: Callable[..., Repo]
) -> None:
    r = open_repo(local_config, expired_ttl_seconds=600, backups_before_purge=0)
    old, _ = supersede(r, "z.txt", b"old", b"new")
    assert old.expired_at is not None
    edge = old.expired_at + timedelta(seconds=600)

    assert r.gc(now=edge).expired.count == 0
    assert_intact(r, old)
    report = r.gc(now=edge + US)
    assert (report.expired.keys, report.waiting_for_backups) == ([old.key], 0)
    assert_purged(r, old)


def test_backups_taken_after_the_first_expiry_only_release_that_one(
    local_config: dict[str, str], open_repo: Callable[..., Repo]
) -> None:
    r = open_repo(local_config, expired_ttl_seconds=0, backups_before_purge=2)
    first, _ = supersede(r, "a.txt", b"a1", b"a2")
    assert first.expired_at is not None
    for i in range(2):
        at = first.expired_at + (i + 1) * US
        r.catalog.record_backup(f"b{i}", taken_at=at, completed_at=at)
    r.commit()
    second, _ = supersede(r, "b.txt", b"b1", b"b2")
    assert second.expired_at is not None
    assert second.expired_at > first.expired_at + 2 * US

    report = r.gc(now=datetime.now(UTC) + timedelta(hours=1))
    assert report.expired.keys == [first.key]
    assert report.waiting_for_backups == 1
    assert_purged(r, first)
    assert_intact(r, second)


# ------------------------------------------------------------ dry run and the report


def _mixed_repository(config: dict[str, Any], r: Repo) -> dict[str, Any]:
    """One of everything: an old draft, an empty draft, an expired and a current version,
    and an orphan."""
    draft = r.add_file("drafts/u.bin").touch(b"uuu").upload()
    empty = r.add_file("drafts/empty.bin")
    old, current = supersede(r, "p.bin", b"12345", b"xy")
    orphan = make_orphan(config, "orphans/o.bin", b"oooo")
    r.commit()
    return {"draft": draft, "empty": empty, "old": old, "current": current, "orphan": orphan}


def test_dry_run_deletes_nothing_and_reports_exactly_what_a_real_run_then_purges(
    local_config: dict[str, str], open_repo: Callable[..., Repo]
) -> None:
    settings = {
        "unpublished_ttl_seconds": 60,
        "expired_ttl_seconds": 60,
        "backups_before_purge": 0,
        "orphan_grace_seconds": 60,
    }
    r = open_repo(local_config, **settings)
    made = _mixed_repository({**local_config, **settings}, r)
    now = datetime.now(UTC) + timedelta(days=1)

    dry = r.gc(dry_run=True, orphans=True, now=now)

    assert dry.dry_run is True
    for name in ("draft", "old", "current"):
        assert_intact(r, made[name])
    assert r.file(made["empty"].file_id).state == "unpublished"
    assert object_exists(r, made["orphan"])

    real = r.gc(orphans=True, now=now)

    assert real.dry_run is False
    for name in ("unpublished", "expired", "orphans", "resumed"):
        assert category(getattr(dry, name)) == category(getattr(real, name)), name
    assert dry.waiting_for_backups == real.waiting_for_backups == 0
    assert category(real.unpublished) == (2, 3, [made["draft"].key, made["empty"].key])
    assert category(real.expired) == (1, 5, [made["old"].key])
    assert category(real.orphans) == (1, 4, [made["orphan"]])
    assert_purged(r, made["draft"])
    assert_purged(r, made["old"])
    assert not object_exists(r, made["orphan"])
    assert_intact(r, made["current"])

    after = r.gc(dry_run=True, orphans=True, now=now)
    assert [getattr(after, n).count for n in ("unpublished", "expired", "orphans")] == [0, 0, 0]


def test_report_counts_bytes_and_keys_per_category_in_file_id_order(
    local_config: dict[str, str], open_repo: Callable[..., Repo]
) -> None:
    r = open_repo(
        local_config, unpublished_ttl_seconds=0, expired_ttl_seconds=0, backups_before_purge=0
    )
    drafts = [r.add_file(f"d/{i}.bin").touch(b"x" * (i + 1)).upload() for i in range(3)]
    old_a, _ = supersede(r, "a.bin", b"a" * 10, b"A")
    old_b, _ = supersede(r, "b.bin", b"b" * 20, b"B")
    r.commit()

    report = r.gc(now=datetime.now(UTC) + timedelta(seconds=1))

    assert report == GcReport(
        dry_run=False,
        unpublished=GcCategory(3, 1 + 2 + 3, [d.key for d in drafts]),
        expired=GcCategory(2, 30, [old_a.key, old_b.key]),
        resumed=GcCategory(),
        orphans=GcCategory(),
        waiting_for_backups=0,
        staging_removed=0,
    )


def test_gc_refuses_to_run_with_uncommitted_changes(
    local_config: dict[str, str], open_repo: Callable[..., Repo]
) -> None:
    r = open_repo(local_config)
    r.add_file("pending.txt").touch("x")
    with pytest.raises(UsageError) as err:
        r.gc()
    assert err.value.hint
    r.rollback()
    assert r.gc().unpublished.count == 0


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def gc_cli(tmp_path: Path, local_config: dict[str, str]) -> tuple[CliRun, dict[str, Any]]:
    """`repo` on SQLite and a directory store, with rules that purge at once."""
    config: dict[str, Any] = {
        **local_config,
        "unpublished_ttl_seconds": 0,
        "expired_ttl_seconds": 0,
        "backups_before_purge": 0,
    }
    return CliRun(write_config(tmp_path / "repo_cfg.json", config), tmp_path), config


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_cli_gc_dry_run_table_then_json_report_then_nothing_left(
    gc_cli: tuple[CliRun, dict[str, Any]],
) -> None:
    cli, config = gc_cli
    with Repo(config) as r:
        draft = r.add_file("drafts/d.bin").touch(b"abc").upload()
        old, _ = supersede(r, "p.bin", b"12345", b"xy")

    dry = cli("gc", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert dry.stdout == (
        "would purge:\n"
        "CATEGORY     FILES  BYTES\n"
        "unpublished  1      3 B\n"
        "expired      1      5 B\n"
    )

    real = cli("gc", "--json")
    assert real.exit_code == 0, real.stderr
    assert json.loads(real.stdout) == {
        "dry_run": False,
        "unpublished": {"file_count": 1, "bytes": 3, "keys": [draft.key]},
        "expired": {"file_count": 1, "bytes": 5, "keys": [old.key]},
        "resumed": {"file_count": 0, "bytes": 0, "keys": []},
        "orphans": None,
        "waiting_for_backups": 0,
        "unpublished_within_ttl": 0,
        "expired_within_ttl": 0,
        "staging_removed": 0,
        "partial_downloads_removed": 0,
        "store_temporaries_removed": 0,
        "not_done": [],
        "early_deletion": [],
        "kept_for_minimum_duration": 0,
    }

    again = cli("gc", "--orphans")
    assert again.exit_code == 0, again.stderr
    assert again.stdout == (
        "purged:\n"
        "CATEGORY     FILES  BYTES\n"
        "unpublished  0      0 B\n"
        "expired      0      0 B\n"
        "orphans      0      0 B\n"
    )
    with Repo(config) as r:
        assert_purged(r, draft)
        assert_purged(r, old)


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_cli_gc_shows_resumed_purges_orphans_and_versions_waiting_for_backups(
    gc_cli: tuple[CliRun, dict[str, Any]], tmp_path: Path
) -> None:
    cli, config = gc_cli
    config = {**config, "backups_before_purge": 2, "orphan_grace_seconds": 0}
    cli.config_path = write_config(tmp_path / "repo_cfg.json", config)
    with Repo(config) as r:
        old, _ = supersede(r, "p.bin", b"12345", b"xy")
        claimed = r.add_file("c.bin").touch(b"claimed!").upload()
        r.commit()
        r.catalog.claim_for_purge(
            [claimed.file_id],
            now=datetime.now(UTC),
            unpublished_before=datetime.now(UTC) + timedelta(days=1),
            expired_before=None,
        )
        r.commit()
        staged = r.add_file("s.txt").touch("staged, never uploaded")
    orphan = make_orphan(config, "o.bin", b"orphan")
    time.sleep(0.01)  # the orphan must be strictly older than now - 0 s of grace

    doc = json.loads(cli("gc", "--dry-run", "--orphans", "--json").stdout)
    assert doc["orphans"] == {"object_count": 1, "bytes": 6, "keys": [orphan]}
    assert doc["waiting_for_backups"] == 1

    result = cli("gc", "--orphans")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "purged:\n"
        "CATEGORY     FILES  BYTES\n"
        "unpublished  1      0 B\n"
        "expired      0      0 B\n"
        "resumed      1      8 B\n"
        "orphans      1      6 B\n"
        "kept 1 expired versions past their TTL until 2 backups have been taken since they "
        "expired (backups_before_purge; repo backup takes one)\n"
        "removed 1 staging leftovers on this host\n"
    )
    assert not staged.staging_path.exists()
    with Repo(config) as r:
        assert_purged(r, claimed)
        assert_intact(r, old)
        assert not object_exists(r, orphan)


# ------------------------------------------------- claims against concurrent publish


def test_a_version_claimed_by_gc_cannot_be_published(
    local_config: dict[str, str], open_repo: Callable[..., Repo]
) -> None:
    a = open_repo(local_config)
    b = open_repo(local_config)
    rf = a.add_file("claimed.txt").touch("doomed").upload()
    a.commit()
    claimed = b.catalog.claim_for_purge(
        [rf.file_id],
        now=datetime.now(UTC),
        unpublished_before=rf.created_at + CENTURY,
        expired_before=None,
    )
    b.commit()
    assert [c.file_id for c in claimed] == [rf.file_id]

    with pytest.raises(StateError) as err:
        rf.publish()
    assert "claimed by garbage collection" in str(err.value)
    assert err.value.hint
    a.rollback()

    assert a.get_file("claimed.txt") is None
    assert b.file(rf.file_id).state == "unpublished"
    assert b.gc().resumed.keys == [rf.key]
    assert_purged(b, rf)


def test_a_version_published_before_gc_runs_is_never_claimed(
    local_config: dict[str, str], open_repo: Callable[..., Repo]
) -> None:
    a = open_repo(local_config)
    b = open_repo(
        local_config, unpublished_ttl_seconds=0, expired_ttl_seconds=0, backups_before_purge=0
    )
    rf = a.add_file("safe.txt").touch("published first").publish()
    a.commit()

    later = rf.created_at + CENTURY
    assert (
        b.catalog.claim_for_purge(
            [rf.file_id], now=later, unpublished_before=later, expired_before=later
        )
        == []
    )
    b.commit()
    report = b.gc(now=later)
    assert (report.unpublished.count, report.expired.count) == (0, 0)
    assert_intact(b, rf)
    assert b.current("safe.txt").read_text() == "published first"


def _lock_waits(r: Repo) -> int:
    """Sessions of this catalog's database waiting for a lock (PostgreSQL)."""
    with r.catalog.db.engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        )


def _wait_for_lock_wait(r: Repo, worker: threading.Thread) -> bool:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and worker.is_alive():
        if _lock_waits(r):
            return True
        time.sleep(0.02)
    return False


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    return worker, outcome


@pytest.mark.parametrize("catalog_url", ["postgresql"], indirect=True)
def test_gc_passes_over_a_version_being_published_and_leaves_it_alone(
    local_config: dict[str, str], open_repo: Callable[..., Repo]
) -> None:
    """GC does not wait for a row another session holds (it could deadlock with a
    publisher that waits for a row GC claimed earlier); it leaves the row to a later run."""
    a = open_repo(local_config)
    b = open_repo(local_config, unpublished_ttl_seconds=0)
    rf = a.add_file("race.bin").touch(b"racing").upload()
    a.commit()
    rf.publish()  # the row is locked by a's open transaction; b still sees it unpublished

    worker, outcome = _in_thread(b.gc)
    worker.join(WAIT_S)
    assert not worker.is_alive(), "gc waited for the publisher's row lock"
    assert "error" not in outcome, outcome.get("error")
    report: GcReport = outcome["value"]
    assert (report.unpublished.count, report.expired.count) == (0, 0)
    a.commit()
    again = b.gc()
    assert (again.unpublished.count, again.expired.count) == (0, 0)
    assert_intact(b, rf.refresh())
    assert b.file(rf.file_id).state == "published"


@pytest.mark.parametrize("catalog_url", ["postgresql"], indirect=True)
def test_publish_waits_on_an_uncommitted_claim_and_then_fails(
    local_config: dict[str, str], open_repo: Callable[..., Repo]
) -> None:
    a = open_repo(local_config)
    b = open_repo(local_config)
    rf = a.add_file("lost.bin").touch(b"lost").upload()
    a.commit()
    claimed = b.catalog.claim_for_purge(
        [rf.file_id],
        now=datetime.now(UTC),
        unpublished_before=rf.created_at + CENTURY,
        expired_before=None,
    )
    assert len(claimed) == 1  # not committed yet: a still sees an unclaimed row

    worker, outcome = _in_thread(rf.publish)
    waited = _wait_for_lock_wait(b, worker)
    b.commit()
    worker.join(WAIT_S)

    assert not worker.is_alive()
    assert waited, "publish never waited for the claim's row lock"
    assert isinstance(outcome.get("error"), StateError), outcome
    a.rollback()
    assert a.get_file("lost.bin") is None
    assert b.gc().resumed.keys == [rf.key]
    assert_purged(b, rf)


def _racing_publisher(config: dict[str, Any], rounds: int, seed: int, out: Any) -> None:
    """Upload and commit a version, then try to publish it while gc runs elsewhere."""
    rng = random.Random(seed)
    results: list[tuple[str, str, bool]] = []
    try:
        with Repo(config) as r:
            for i in range(rounds):
                rf = r.add_file(f"race/{i}.txt").touch(f"version {i}").upload()
                # Committed even if this raises: recording the cached copy can lose a race
                # with gc (test_commit_succeeds_when_gc_purges_a_version_whose_cache_...).
                with contextlib.suppress(ConflictError):
                    r.commit()
                time.sleep(rng.uniform(0, 0.005))
                try:
                    rf.publish()
                    r.commit()
                    results.append((rf.path, rf.key, True))
                except (StateError, NotFoundError):  # claimed, or already purged
                    r.rollback()
                    results.append((rf.path, rf.key, False))
        out.put(("ok", results))
    except BaseException as exc:  # reported to the test
        out.put(("error", repr(exc)))


def _racing_gc(config: dict[str, Any], stop: Any, out: Any) -> None:
    runs = purged = 0
    try:
        with Repo(config) as r:
            while not stop.is_set():
                purged += r.gc().unpublished.count
                runs += 1
        out.put(("ok", (runs, purged)))
    except BaseException as exc:
        out.put(("error", repr(exc)))


def test_concurrent_publish_and_gc_processes_never_lose_a_published_object(
    local_config: dict[str, str], tmp_path: Path
) -> None:
    rounds = 30
    publisher_cfg = {**local_config, "host_name": "publisher"}
    gc_cfg = {
        **local_config,
        "host_name": "collector",
        "local_root": str(tmp_path / "collector"),
        "unpublished_ttl_seconds": 0,
    }
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    pub_out, gc_out = ctx.Queue(), ctx.Queue()
    collector = ctx.Process(target=_racing_gc, args=(gc_cfg, stop, gc_out))
    publisher = ctx.Process(target=_racing_publisher, args=(publisher_cfg, rounds, 4, pub_out))
    collector.start()
    publisher.start()
    try:
        pub_status, outcomes = pub_out.get(timeout=120)
    finally:
        stop.set()
        gc_status, gc_stats = gc_out.get(timeout=120)
        publisher.join(WAIT_S)
        collector.join(WAIT_S)
    assert pub_status == "ok", outcomes
    assert gc_status == "ok", gc_stats
    assert len(outcomes) == rounds

    reader_cfg = {**local_config, "host_name": "reader", "local_root": str(tmp_path / "reader")}
    with Repo(reader_cfg) as r:
        r.gc(now=datetime.now(UTC) + timedelta(days=2))  # finish whatever was claimed
        for path, key, published in outcomes:
            # Each path had one version; file ids are not compared (SQLite reuses them).
            versions = [(v.key, v.state) for v in r.history(path)]
            if published:  # read from the store into a cold cache: the object is intact
                assert versions == [(key, "published")]
                assert r.current(path).read_text() == f"version {path[5:-4]}"
            else:
                assert versions == []


# ------------------------------------------------------------------ resumed purges


@pytest.mark.parametrize("objects_already_deleted", [False, True], ids=["claimed", "deleted"])
def test_gc_finishes_a_purge_interrupted_after_the_claim(
    local_config: dict[str, str], open_repo: Callable[..., Repo], objects_already_deleted: bool
) -> None:
    r = open_repo(local_config)
    draft = r.add_file("drafts/a.bin").touch(b"draft").upload()
    old, current = supersede(r, "p.bin", b"old!", b"new")
    young = r.add_file("drafts/young.bin").touch(b"young").upload()
    r.commit()
    far = datetime.now(UTC) + CENTURY
    claimed = r.catalog.claim_for_purge(
        [draft.file_id, old.file_id],
        now=datetime.now(UTC),
        unpublished_before=young.created_at,
        expired_before=far,
    )
    r.commit()
    assert [c.file_id for c in claimed] == [draft.file_id, old.file_id]
    if objects_already_deleted:  # the crash came between deleting objects and rows
        r.store.delete_many([draft.key, old.key])

    report = r.gc()  # default TTLs: nothing is due by the rules

    assert category(report.resumed) == (2, 9, [draft.key, old.key])
    assert (report.unpublished.count, report.expired.count) == (0, 0)
    assert_purged(r, draft)
    assert_purged(r, old)
    assert_intact(r, current)
    assert_intact(r, young)
    assert r.gc().resumed.count == 0


# -------------------------------------------------------------------------- orphans


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_orphans_past_the_grace_are_deleted_only_with_orphans_and_only_under_data(
    repo_config: dict[str, str], open_repo: Callable[..., Repo], tmp_path: Path
) -> None:
    r = open_repo(repo_config)
    current = r.add_file("kept.txt").touch("published").publish()
    r.commit()
    orphan = make_orphan(repo_config, "crashed/o.bin", b"orphan!")
    prefix = r.store.key_prefix
    source = tmp_path / "stray"
    source.write_bytes(b"not ours")
    strays = [
        f"{prefix}notdata/x.bin~{new_version_token()}",
        f"{prefix}dataextra/x.bin~{new_version_token()}",
        f"elsewhere-{uuid.uuid4().hex[:8]}/data/x.bin~{new_version_token()}",
    ]
    for key in strays:
        r.store.put_file(key, source)
    later = datetime.now(UTC) + timedelta(days=2)

    young = r.gc(orphans=True)  # default grace of a day: everything is young
    assert young.orphans.count == 0
    without = r.gc(now=later)
    assert without.orphans.count == 0
    assert object_exists(r, orphan)

    report = r.gc(orphans=True, now=later)

    assert category(report.orphans) == (1, 7, [orphan])
    assert not object_exists(r, orphan)
    assert all(object_exists(r, key) for key in strays)
    assert_intact(r, current)


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("store_url", ["moto"], indirect=True)
def test_an_upload_in_flight_is_not_an_orphan_and_becomes_a_version_on_commit(
    repo_config: dict[str, str], open_repo: Callable[..., Repo]
) -> None:
    gc_host = open_repo(repo_config, orphan_grace_seconds=3600)
    uploader = open_repo(repo_config)
    rf = uploader.add_file("in/flight.bin").touch(b"in flight").upload()  # not committed

    report = gc_host.gc(orphans=True)  # reads only: no lock on the uploader's SQLite write
    assert report.orphans.count == 0
    assert object_exists(gc_host, rf.key)

    uploader.commit()
    report = gc_host.gc(orphans=True, now=datetime.now(UTC) + timedelta(hours=2))
    assert report.orphans.count == 0
    assert_intact(gc_host, rf)


def test_objects_of_versions_in_every_state_are_never_orphans(
    local_config: dict[str, str], open_repo: Callable[..., Repo]
) -> None:
    r = open_repo(local_config, orphan_grace_seconds=0, unpublished_ttl_seconds=10**9)
    draft = r.add_file("u.bin").touch(b"unpublished").upload()
    old, current = supersede(r, "p.bin", b"expired", b"published")
    orphan = make_orphan(local_config, "o.bin", b"orphan")
    r.commit()

    report = r.gc(orphans=True, now=datetime.now(UTC) + timedelta(days=30))

    assert report.orphans.keys == [orphan]
    for rf in (draft, old, current):
        assert_intact(r, rf)


ODD_PATHS = ["odd/a b+c%20&<x>#[1]é~.txt", "odd/q?x=1;y*z|{}^`\\\"'.txt", "odd/ünï cödé/ﬁle"]


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_versions_with_unusual_keys_are_purged_and_never_mistaken_for_orphans(
    repo_config: dict[str, str], open_repo: Callable[..., Repo]
) -> None:
    r = open_repo(repo_config, orphan_grace_seconds=0)
    current = [r.add_file(p).touch(b"current").publish() for p in ODD_PATHS]
    drafts = [r.add_file(p).touch(b"draft").upload() for p in ODD_PATHS]
    r.commit()
    listed = {o.key for o in r.store.list(r.store.key_prefix + "data/")}
    assert listed == {rf.key for rf in current + drafts}

    report = r.gc(orphans=True, now=datetime.now(UTC) + timedelta(days=2))

    assert report.unpublished.keys == [rf.key for rf in drafts]
    assert report.orphans.count == 0
    for rf in drafts:
        assert_purged(r, rf)
    for rf in current:
        assert_intact(r, rf)


def test_gc_works_through_many_batches(
    local_config: dict[str, str], open_repo: Callable[..., Repo], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small batches, so several claim/delete/forget rounds and orphan look-ups run, and
    # deletions finish while later claims are made.
    monkeypatch.setattr("repo.gc.CLAIM_BATCH", 3)
    monkeypatch.setattr("repo.gc.DELETE_BATCH", 1)
    monkeypatch.setattr("repo.gc.FORGET_BATCH", 2)
    monkeypatch.setattr("repo.gc.ORPHAN_BATCH", 2)
    r = open_repo(local_config, unpublished_ttl_seconds=0, orphan_grace_seconds=0)
    drafts = [r.add_file(f"d/{i}.bin").touch(b"d" * i).upload() for i in range(5)]
    current = [r.add_file(f"p/{i}.bin").touch(b"p").publish() for i in range(3)]
    r.commit()
    orphans = [make_orphan(local_config, f"o/{i}.bin", b"o") for i in range(5)]

    report = r.gc(orphans=True, now=datetime.now(UTC) + timedelta(seconds=5))

    assert category(report.unpublished) == (5, 10, [rf.key for rf in drafts])
    assert sorted(report.orphans.keys) == sorted(orphans)
    assert not any(object_exists(r, key) for key in orphans)
    for rf in current:
        assert_intact(r, rf)


# ------------------------------------------------------------------ staging copies


def test_gc_removes_staging_copies_of_purged_and_rolled_back_versions_made_here(
    local_config: dict[str, str], open_repo: Callable[..., Repo]
) -> None:
    r = open_repo(local_config, unpublished_ttl_seconds=3600, orphan_grace_seconds=0)
    gone = r.add_file("drafts/gone.txt").touch("never uploaded")
    r.commit()
    live = r.add_file("drafts/live.txt").touch("still being written")
    r.commit()
    dropped = r.add_file("drafts/dropped.txt").touch("rolled back")
    r.rollback()
    assert live.created_at > gone.created_at
    assert gone.staging_path.exists()
    assert dropped.staging_path.exists()

    report = r.gc(now=gone.created_at + timedelta(seconds=3600) + US)

    assert report.unpublished.keys == [gone.key]
    assert report.staging_removed == 2
    assert not gone.staging_path.parent.exists()
    assert not dropped.staging_path.parent.exists()
    assert live.staging_path.read_text() == "still being written"
    assert r.file(live.file_id).state == "unpublished"


def test_staging_copies_younger_than_the_grace_stay_even_when_their_version_is_purged(
    local_config: dict[str, str], open_repo: Callable[..., Repo]
) -> None:
    r = open_repo(local_config, unpublished_ttl_seconds=60, orphan_grace_seconds=86_400)
    gone = r.add_file("drafts/gone.txt").touch("young copy")
    r.commit()

    report = r.gc(now=gone.created_at + timedelta(seconds=61))

    assert report.unpublished.keys == [gone.key]
    assert report.staging_removed == 0
    assert gone.staging_path.read_text() == "young copy"


# ---------------------------------------------------------------- known deviations


def test_dry_run_reports_the_claimed_versions_a_real_run_would_resume(
    local_config: dict[str, str], open_repo: Callable[..., Repo]
) -> None:
    r = open_repo(local_config)
    rf = r.add_file("c.bin").touch(b"claimed").upload()
    r.commit()
    r.catalog.claim_for_purge(
        [rf.file_id],
        now=datetime.now(UTC),
        unpublished_before=rf.created_at + CENTURY,
        expired_before=None,
    )
    r.commit()

    dry = r.gc(dry_run=True)
    real = r.gc()

    assert real.resumed.keys == [rf.key]
    assert category(dry.resumed) == category(real.resumed)


def test_dry_run_reports_the_staging_copies_a_real_run_removes(
    local_config: dict[str, str], open_repo: Callable[..., Repo]
) -> None:
    r = open_repo(local_config, unpublished_ttl_seconds=60, orphan_grace_seconds=0)
    gone = r.add_file("drafts/gone.txt").touch("never uploaded")
    r.commit()
    now = gone.created_at + timedelta(seconds=61)

    dry = r.gc(dry_run=True, now=now)
    real = r.gc(now=now)

    assert real.staging_removed == 1
    assert dry.staging_removed == real.staging_removed


@pytest.mark.parametrize(
    "catalog_url",
    [
        "sqlite",
        "postgresql",
    ],
    indirect=True,
)
def test_the_id_of_a_purged_version_is_never_handed_out_again(
    local_config: dict[str, str], open_repo: Callable[..., Repo]
) -> None:
    # Otherwise `repo publish 2`, typed by someone who added version 2, could publish
    # another user's version that got the id after GC purged theirs.
    r = open_repo(local_config, unpublished_ttl_seconds=0)
    r.add_file("keep.txt").touch("k").publish()
    draft = r.add_file("draft.txt").touch("d").upload()
    r.commit()
    assert r.gc(now=datetime.now(UTC) + timedelta(seconds=1)).unpublished.keys == [draft.key]

    other = r.add_file("other.txt").touch("o").upload()
    r.commit()

    assert other.file_id != draft.file_id


@pytest.mark.parametrize("catalog_url", ["postgresql"], indirect=True)
def test_commit_succeeds_when_gc_purges_a_version_whose_cache_use_is_being_recorded(
    local_config: dict[str, str], open_repo: Callable[..., Repo]
) -> None:
    a = open_repo(local_config)
    b = open_repo(local_config)
    rf = a.add_file("read.txt").touch("read me").upload()
    a.commit()
    # Last read long enough ago that this hit is news: its bookkeeping waits for commit.
    last_read(a, rf, seconds_ago=3 * USED_RESOLUTION_SECONDS)
    assert rf.read_text() == "read me"
    b.catalog.claim_for_purge(
        [rf.file_id],
        now=datetime.now(UTC),
        unpublished_before=rf.created_at + CENTURY,
        expired_before=None,
    )
    b.commit()
    b.catalog.forget_files([rf.file_id])  # gc's last step, not committed yet

    worker, outcome = _in_thread(a.commit)  # checks the row exists, then waits to insert
    waited = _wait_for_lock_wait(b, worker)
    b.commit()
    worker.join(WAIT_S)

    assert waited
    assert not worker.is_alive()
    assert "error" not in outcome, outcome.get("error")


# -------------------------------------------------------------------- configuration


@pytest.mark.parametrize("key", sorted(GC_DEFAULTS))
def test_negative_gc_settings_are_refused_naming_the_key(key: str, tmp_path: Path) -> None:
    base = {"store": (tmp_path / "store").as_uri(), "database": f"sqlite:///{tmp_path}/c.db"}
    with pytest.raises(ConfigError) as err:
        load_config({**base, key: -1})
    assert f"'{key}'" in str(err.value)
    assert "zero or more" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config({**base, key: "60"})
    assert f"'{key}'" in str(err.value)
    assert getattr(load_config({**base, key: 0}), key) == 0
    assert getattr(load_config(base), key) == GC_DEFAULTS[key]


def test_gc_settings_default_to_the_documented_values() -> None:
    assert GC_DEFAULTS == {
        "unpublished_ttl_seconds": 86_400,
        "expired_ttl_seconds": 604_800,
        "orphan_grace_seconds": 86_400,
        "backups_before_purge": 2,
    }


def test_the_orphan_pass_removes_store_temp_files_older_than_the_grace(
    local_config: dict[str, str], open_repo: Callable[..., Repo]
) -> None:
    r = open_repo(local_config, orphan_grace_seconds=3600)
    tmp = Path(local_config["store"].removeprefix("file://")) / ".repo-tmp"
    tmp.mkdir(exist_ok=True)
    now = time.time()
    ages = {"put-killed": 7200, "put-in-flight": 60}
    for name, age in ages.items():
        (tmp / name).write_bytes(b"half an object")
        os.utime(tmp / name, (now - age, now - age))
    current = r.add_file("kept.txt").touch(b"kept").publish()
    r.commit()

    assert r.gc(orphans=False).store_temporaries_removed == 0
    assert r.gc(dry_run=True, orphans=True).store_temporaries_removed == 1
    assert sorted(p.name for p in tmp.iterdir()) == sorted(ages)
    assert r.gc(orphans=True).store_temporaries_removed == 1

    assert [p.name for p in tmp.iterdir()] == ["put-in-flight"]
    assert r.current("kept.txt").read_bytes() == b"kept"
    assert current.uploaded


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_gc_dry_run_says_what_it_keeps_and_why(
    gc_cli: tuple[CliRun, dict[str, Any]], tmp_path: Path
) -> None:
    cli, config = gc_cli
    config = {**config, "unpublished_ttl_seconds": 86400, "expired_ttl_seconds": 7 * 86400}
    cli.config_path = write_config(tmp_path / "repo_cfg.json", config)
    with Repo(config) as r:
        supersede(r, "p.bin", b"12345", b"xy")  # one expired just now
        r.add_file("draft.txt").touch(b"draft").upload()
        r.commit()
    result = cli("gc", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-2:] == [
        "kept 1 unpublished versions younger than 1 day (unpublished_ttl_seconds)",
        "kept 1 expired versions for 7 days after they expired (expired_ttl_seconds)",
    ]
    doc = json.loads(cli("gc", "--dry-run", "--json").stdout)
    assert (doc["unpublished_within_ttl"], doc["expired_within_ttl"]) == (1, 1)
