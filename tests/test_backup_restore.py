"""Catalog backup and blind restore (issue 5): round trips, the journal, damage, retention.

Everything runs against real catalogs and stores. A "lost catalog" is a dropped schema on
PostgreSQL and a deleted database file on SQLite; the store (and the backups and change
journal in it) survives. Catalog rows are read back with plain SQLAlchemy, not through
the library, so a restore is judged by what is in the database.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.engine import make_url

from conftest import CliRun, write_config
from repo import Repo, RepoFile, destroy_catalog, load_config
from repo.catalog.schema import file_tags, files, metadata, path_tags, paths, tags
from repo.cli.output import human_time
from repo.errors import (
    CatalogError,
    NotFoundError,
    UsageError,
    VerificationError,
)
from repo.restore import RestoreReport, restore_catalog

if TYPE_CHECKING:
    from repo.stores import Store

Config = Mapping[str, Any] | None


# ----------------------------------------------------------------- helpers


def read_tables(config: Config) -> dict[str, list[dict[str, Any]]]:
    """Every catalog table's rows, ordered by primary key, read with plain SQLAlchemy."""
    engine = create_engine(load_config(config).database_url)
    try:
        with engine.connect() as conn:
            return {
                t.name: [
                    dict(row)
                    for row in conn.execute(select(t).order_by(*t.primary_key.columns)).mappings()
                ]
                for t in metadata.sorted_tables
            }
    finally:
        engine.dispose()


def lose_catalog(config: Config) -> None:
    """The catalog database is gone (the store survives)."""
    url = load_config(config).database_url
    if url.startswith("sqlite"):
        db = Path(str(make_url(url).database))
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    else:
        destroy_catalog(config)


def publish(r: Repo, path: str, data: bytes) -> RepoFile:
    f = r.add_file(path).touch(data).publish()
    r.commit()
    return f


def as_host(config: Mapping[str, Any], tmp_path: Path, name: str) -> dict[str, Any]:
    """`config` as another processing host sees it: its own name and cache."""
    return {**config, "host_name": name, "local_root": str(tmp_path / f"cache-{name}")}


def committed_truth(config: Config) -> dict[str, Any]:
    """What the catalog holds as committed: every version with its facts and own tags,
    and every path's tags; read over a fresh connection."""
    engine = create_engine(load_config(config).database_url)
    try:
        with engine.connect() as conn:
            versions = {
                row.file_id: {
                    "path": row.path,
                    "key": row.key,
                    "state": row.state,
                    "md5": row.md5,
                    "size": row.size,
                    "tags": [],
                }
                for row in conn.execute(
                    select(files, paths.c.path).join(paths, paths.c.path_id == files.c.path_id)
                )
            }
            for file_id, name in conn.execute(
                select(file_tags.c.file_id, tags.c.name)
                .join(tags, tags.c.tag_id == file_tags.c.tag_id)
                .order_by(tags.c.name)
            ):
                versions[file_id]["tags"].append(name)
            path_tag_rows: dict[str, list[str]] = {}
            for path, name in conn.execute(
                select(paths.c.path, tags.c.name)
                .join(path_tags, path_tags.c.path_id == paths.c.path_id)
                .join(tags, tags.c.tag_id == path_tags.c.tag_id)
                .order_by(tags.c.name)
            ):
                path_tag_rows.setdefault(path, []).append(name)
    finally:
        engine.dispose()
    published = {
        v["path"]: (file_id, v["md5"])
        for file_id, v in versions.items()
        if v["state"] == "published"
    }
    return {"versions": versions, "path_tags": path_tag_rows, "published": published}


def journal_keys(r: Repo) -> list[str]:
    return sorted(i.key for i in r.backups.store.list(r.backups.journal_prefix))


def backup_keys(r: Repo, name: str = "") -> list[str]:
    return sorted(i.key for i in r.backups.store.list(f"{r.backups.backups_prefix}{name}"))


def replace_object(store: Store, key: str, data: bytes, tmp_path: Path) -> None:
    """Put other bytes at `key` (objects are never overwritten: delete, then create)."""
    scratch = tmp_path / "replacement"
    scratch.write_bytes(data)
    store.delete_many([key])
    store.put_file(key, scratch)


def without_ids(rows: list[dict[str, Any]], column: str) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != column} for row in rows]


def dir_config(tmp_path: Path, database: str) -> dict[str, Any]:
    """A config on a directory store in `tmp_path`."""
    store = tmp_path / "store"
    store.mkdir(exist_ok=True)
    return {
        "local_root": str(tmp_path / "local"),
        "store": store.as_uri(),
        "database": database,
        "host_name": "test-host",
    }


def s3_config(server: Any, database: str, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """A config on a fresh bucket of `server`, under a prefix (with `extra` settings)."""
    bucket = server.create_bucket(f"t-{uuid.uuid4().hex[:16]}")
    return {
        "local_root": str(tmp_path / "local"),
        "store": f"s3://{bucket}/repo",
        "database": database,
        "host_name": "test-host",
        "s3_endpoint_url": server.endpoint_url,
        "s3_access_key": server.access_key,
        "s3_secret_key": server.secret_key,
        "s3_region": server.region,
        **extra,
    }


@pytest.fixture
def file_config(tmp_path: Path, sqlite_url: str) -> dict[str, Any]:
    """SQLite over a directory store: for tests about restore's logic, not the backends."""
    return dir_config(tmp_path, sqlite_url)


@pytest.fixture(params=["file", pytest.param("moto", marks=pytest.mark.s3)])
def store_config(request: pytest.FixtureRequest, tmp_path: Path, sqlite_url: str) -> dict[str, Any]:
    """SQLite over a directory store, or over the moto S3 server (ETags, object metadata)."""
    if request.param == "moto":
        return s3_config(request.getfixturevalue("moto_server"), sqlite_url, tmp_path)
    return dir_config(tmp_path, sqlite_url)


def rows_without(tables: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The tables a restore must bring back exactly: not `backups` (restore records what it
    finds in the bucket) nor the fresh schema's own version row."""
    out = {name: rows for name, rows in tables.items() if name != "backups"}
    out["repo_meta"] = [r for r in out["repo_meta"] if r["name"] != "schema_version"]
    return out


# --------------------------------------------------------- round trip


def build_every_kind_of_row(config: Mapping[str, Any], tmp_path: Path) -> None:
    """Versions in every state (and one claimed for purging), file tags, date tags, path
    tags, a non-ASCII path, two hosts' cached copies, and copies in another store."""
    with Repo(config) as r:
        a1 = publish(r, "docs/a.txt", b"first a")
        a1.tag("old", "shared")
        a2 = r.add_file("docs/a.txt").touch(b"second a").publish().tag("current", "shared")
        a2.tag_date(datetime(2024, 2, 29, 13, tzinfo=UTC), "hour")
        a2.tag_path("documentation")
        b = publish(r, "docs/b.txt", b"b")
        b.expire()
        r.add_file("drafts/c.txt").touch(b"draft c").upload().tag("draft").tag_path("wip")
        r.add_file("drafts/d.txt").touch(b"never uploaded")
        publish(r, "données/été.txt", "accentué".encode()).tag("ünïcode")
        doomed = r.add_file("tmp/e.txt").touch(b"e").upload()
        r.commit()
        # Copies in another store (docs/replicas.md): one verified, one found lost.
        now = datetime.now(UTC)
        assert r.catalog.claim_replica(a2.file_id, "second", a2.key, when=now)
        assert r.catalog.replica_verified(
            a2.file_id, "second", a2.key, md5=a2.md5, size=a2.size, verified_with="etag", when=now
        )
        r.catalog.replica_lost(b.file_id, "second", b.key, when=now)
        r.commit()
        claimed = r.catalog.claim_for_purge(
            [doomed.file_id],
            now=datetime.now(UTC),
            unpublished_before=datetime.now(UTC) + timedelta(days=1),
            expired_before=None,
        )
        assert [c.file_id for c in claimed] == [doomed.file_id]
    with Repo({**as_host(config, tmp_path, "host-b"), "cache_max_bytes": 10**9}) as other:
        assert other.current("docs/a.txt").read_bytes() == b"second a"
        assert other.file(a1.file_id).read_bytes() == b"first a"


def test_restore_brings_back_every_table_row_for_row(
    repo_config: dict[str, Any], tmp_path: Path
) -> None:
    build_every_kind_of_row(repo_config, tmp_path)
    with Repo(repo_config) as r:
        taken = r.backup()
    before = read_tables(repo_config)
    assert {t: len(rows) > 0 for t, rows in before.items()} == dict.fromkeys(before, True)
    assert len({row["host_id"] for row in before["file_hosts"]}) == 2

    lose_catalog(repo_config)
    report = restore_catalog(repo_config)

    assert (report.backup, report.rejected, report.adopted) == (taken.name, [], [])
    assert report.journal_entries == 0
    # The backup's own record is written after its snapshot; current_tags is not backed
    # up but rebuilt, row for row.
    loaded = {t: len(rows) for t, rows in rows_without(before).items() if t != "current_tags"}
    assert report.rows == loaded | {"backups": 0}
    after = read_tables(repo_config)
    assert rows_without(after) == rows_without(before)
    # Restore records the backups it finds in the bucket: the same one, under a new id.
    assert without_ids(after["backups"], "backup_id") == without_ids(before["backups"], "backup_id")


def test_restored_catalog_serves_content_and_hands_out_fresh_ids(
    repo_config: dict[str, Any], tmp_path: Path
) -> None:
    with Repo(repo_config) as r:
        old = publish(r, "keep/f", b"kept")
        r.backup()
    lose_catalog(repo_config)
    restore_catalog(repo_config)
    with Repo(as_host(repo_config, tmp_path, "fresh-host")) as r:
        assert r.current("keep/f").read_bytes() == b"kept"
        new = publish(r, "keep/f", b"newer")
        assert new.file_id > old.file_id
        assert r.file(old.file_id).refresh().state == "expired"


# ------------------------------------------------ nothing committed is lost

PATHS = ["set/a.bin", "set/b.bin", "set/c.bin", "deep/x/y.bin", "ünï/z.bin"]
TAGS = ["red", "green", "blue", "2024-01-31", "q1"]


class History:
    """A random sequence of adds, publishes, expires and (path) tags and untags, committed
    as it goes (with `rollbacks`, some rolled back), with one backup in the middle."""

    def __init__(self, r: Repo, seed: int, *, rollbacks: bool) -> None:
        self.r = r
        self.rollbacks = rollbacks
        self.rng = random.Random(seed)
        self.backup_name: str | None = None
        #: Objects uploaded by transactions that were rolled back (no version names them).
        self.rolled_back_uploads: set[str] = set()
        self._uploads: list[str] = []

    def run(self, operations: int) -> None:
        backup_at = self.rng.randrange(operations // 4, 3 * operations // 4)
        for i in range(operations):
            if i == backup_at:
                self.commit()
                self.backup_name = self.r.backup().name
            getattr(self, self.rng.choice(self.OPS))()
            roll = self.rng.random()
            if roll < 0.5:
                self.commit()
            elif roll < 0.55 and self.rollbacks:
                self.r.rollback()
                self.rolled_back_uploads.update(self._uploads)
                self._uploads.clear()
        self.commit()

    OPS = (
        ("add",) * 3
        + ("publish",) * 2
        + ("expire", "untag", "untag_path")
        + ("tag",) * 3
        + ("tag_path",) * 2
    )

    def commit(self) -> None:
        self.r.commit()
        self._uploads.clear()

    def _versions(self, *states: str) -> list[RepoFile]:
        return [f for f in self.r.list("*", state="all") if f.state in states]

    def add(self) -> None:
        f = self.r.add_file(self.rng.choice(PATHS)).touch(
            self.rng.randbytes(self.rng.randrange(64))
        )
        if self.rng.random() < 0.9:
            f.upload()
            self._uploads.append(f.key)
            if self.rng.random() < 0.5:
                f.publish()

    def publish(self) -> None:
        ready = [f for f in self._versions("unpublished") if f.uploaded]
        if ready:
            self.rng.choice(ready).publish()

    def expire(self) -> None:
        live = self._versions("unpublished", "published")
        if live:
            self.rng.choice(live).expire()

    def tag(self) -> None:
        every = self._versions("unpublished", "published", "expired")
        if every:
            self.rng.choice(every).tag(self.rng.choice(TAGS))

    def untag(self) -> None:
        tagged = [f for f in self._versions("unpublished", "published", "expired") if f.file_tags]
        if tagged:
            f = self.rng.choice(tagged)
            f.untag(self.rng.choice(f.file_tags))

    def tag_path(self) -> None:
        every = self._versions("unpublished", "published", "expired")
        if every:
            self.rng.choice(every).tag_path(self.rng.choice(TAGS))

    def untag_path(self) -> None:
        tagged = [f for f in self._versions("unpublished", "published", "expired") if f.path_tags]
        if tagged:
            f = self.rng.choice(tagged)
            f.untag_path(self.rng.choice(f.path_tags))


def nothing_committed_is_lost(
    config: Config, seed: int, *, rollbacks: bool = False
) -> tuple[History, RestoreReport]:
    print(f"seed={seed}")  # shown on failure: rerun with this seed
    with Repo(config) as r:
        history = History(r, seed, rollbacks=rollbacks)
        history.run(operations=50)
    truth = committed_truth(config)
    states = {v["state"] for v in truth["versions"].values()}
    tagged = any(v["tags"] for v in truth["versions"].values())
    thin = "this seed's history is too thin to prove anything: pick another"
    assert {"published", "expired"} <= states, thin
    assert tagged, thin
    assert truth["path_tags"], thin

    lose_catalog(config)
    report = restore_catalog(config)

    assert report.backup == history.backup_name
    assert report.journal_entries > 0
    restored = committed_truth(config)
    # Uploads whose transaction was rolled back went with the rollback (else they would
    # look exactly like commits whose journal entry was lost, and come back unpublished).
    assert report.adopted == []
    assert restored == truth
    with Repo(config) as r:
        r.clear_cache()  # every published file is read back from the store
        for path, (file_id, md5) in truth["published"].items():
            f = r.current(path)
            assert (f.file_id, f.md5) == (file_id, md5)
            assert hashlib.md5(f.read_bytes()).hexdigest() == md5
    return history, report


SEEDS = [11, 22, 33]


@pytest.mark.parametrize("seed", SEEDS)
def test_nothing_committed_is_lost_on_postgresql_and_s3(
    pg_url: str, rclone_server: Any, tmp_path: Path, seed: int
) -> None:
    nothing_committed_is_lost(s3_config(rclone_server, pg_url, tmp_path), seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_nothing_committed_is_lost_on_the_embedded_default(seed: int) -> None:
    assert load_config(None).is_embedded
    nothing_committed_is_lost(None, seed)


# The PostgreSQL id sequences are moved past the backup's ids before the journal is
# replayed, and not again after: versions the journal brings back hold ids the sequence
# still hands out, so the next new version (adopted by the restore itself, or added by a
# user afterwards) collides with one of them.


def test_rolled_back_uploads_are_gone_and_nothing_else_changes(
    request: pytest.FixtureRequest, local_config: dict[str, Any]
) -> None:
    history, _ = nothing_committed_is_lost(local_config, SEEDS[1], rollbacks=True)
    assert history.rolled_back_uploads
    with Repo(local_config) as r:
        stored = {o.key for o in r.store.list(r.store.key_prefix)}
    assert not history.rolled_back_uploads & stored


def test_after_a_restore_that_replayed_new_versions_a_new_version_gets_a_fresh_id(
    request: pytest.FixtureRequest, local_config: dict[str, Any]
) -> None:
    with Repo(local_config) as r:
        publish(r, "before", b"in the backup")
        r.backup()
        replayed = publish(r, "after", b"only in the journal")
    lose_catalog(local_config)
    assert restore_catalog(local_config).journal_entries == 1
    with Repo(local_config) as r:
        assert r.current("after").file_id == replayed.file_id
        fresh = publish(r, "later", b"new")
        assert fresh.file_id > replayed.file_id


# ------------------------------------------------------- lost journal entries


def test_objects_whose_journal_entries_were_lost_are_adopted_as_unpublished_versions(
    store_config: dict[str, Any],
) -> None:
    with Repo(store_config) as r:
        publish(r, "base.txt", b"in the backup")
        r.backup()
        entries_before = journal_keys(r)
        late = publish(r, "late/published.bin", b"published after the backup").tag("lost-tag")
        r.commit()
        staged = r.add_file("late/staged.bin").touch(b"uploaded, never published").upload()
        r.commit()
        r.add_file("late/never-uploaded.bin").touch(b"only on this host")
        r.commit()
        journal = journal_keys(r)
        assert len(journal) > len(entries_before)
        r.backups.store.delete_many(journal)
    lose_catalog(store_config)
    restored_at = datetime.now(UTC)

    report = restore_catalog(store_config)

    assert report.journal_entries == 0
    assert sorted(report.adopted) == sorted([late.key, staged.key])
    with Repo(store_config) as r:
        assert r.current("base.txt").read_bytes() == b"in the backup"
        for lost in (late, staged):
            (found,) = r.history(lost.path)
            assert (found.key, found.state, found.md5, found.size) == (
                lost.key,
                "unpublished",
                lost.md5,
                lost.size,
            )
            assert found.origin == lost.origin
            # Created at adoption: the unpublished TTL gives a person time to decide.
            assert found.created_at is not None
            assert found.created_at >= restored_at
            assert found.tags == []  # tags lived only in the lost entries
        # The first gc after the restore keeps them (it once purged them at once).
        later = restored_at + timedelta(seconds=r.config.unpublished_ttl_seconds // 2)
        assert r.gc(now=later).unpublished.count == 0
        assert len(r.history("late/staged.bin")) == 1
        assert r.history("late/never-uploaded.bin") == []  # nothing in the store to find


# ------------------------------------------------------------- journal order

# Entries are replayed in key order, and a key (like the `committed_at` inside) comes from
# the committing host's clock. Host B publishes p after host A did, but B's clock runs a
# millisecond behind A's, so B's entry (v2 published, v1 expired) sorts before A's (v1
# published). Replaying A's entry last makes v1 current again beside v2: the
# one-current-version index refuses it, and the whole restore fails. Two hosts' entries
# sharing a millisecond do the same half the time (the random token breaks the tie). The
# rows carry what would settle it (a state never moves back; v2's `published_at` is later
# than v1's whatever the clocks say), but the upsert ignores it.


def test_replay_survives_publishes_by_hosts_whose_clocks_disagree(
    file_config: dict[str, Any], tmp_path: Path
) -> None:
    with Repo(file_config) as a:
        taken_at = a.backup().taken_at
        seen = set(journal_keys(a))
        publish(a, "p", b"v1 from host a")
        (entry_a,) = set(journal_keys(a)) - seen
        committed_a = json.loads(b"".join(a.backups.store.iter_bytes(entry_a)))["committed_at"]
    with Repo(as_host(file_config, tmp_path, "host-b")) as b:
        seen = set(journal_keys(b))
        v2 = publish(b, "p", b"v2 from host b")
        (entry_b,) = set(journal_keys(b)) - seen
        # What host B writes when its clock is a millisecond behind host A's.
        lag = timedelta(milliseconds=1)
        doc = json.loads(b"".join(b.backups.store.iter_bytes(entry_b)))
        doc["committed_at"] = (datetime.fromisoformat(committed_a) - lag).isoformat()
        assert datetime.fromisoformat(doc["committed_at"]) > taken_at
        stamp_a = int(entry_a[len(b.backups.journal_prefix) :].split("-")[0])
        lagging = f"{b.backups.journal_prefix}{stamp_a - 1:013d}-{entry_b.rsplit('-', 1)[1]}"
        moved = tmp_path / "entry-b.json"
        moved.write_text(json.dumps(doc))
        b.backups.store.put_file(lagging, moved)
        b.backups.store.delete_many([entry_b])
    lose_catalog(file_config)

    report = restore_catalog(file_config)

    assert report.journal_entries == 2
    with Repo(file_config) as r:
        assert r.current("p").file_id == v2.file_id


# ----------------------------------------------- damaged or missing backups


def two_backups(config: Mapping[str, Any]) -> tuple[str, str]:
    """Backup A with one file; one more file; backup B. Returns (A, B)."""
    with Repo(config) as r:
        publish(r, "first", b"1")
        older = r.backup().name
        publish(r, "second", b"2")
        newer = r.backup().name
    assert older < newer
    return older, newer


def manifest_key(r: Repo, name: str) -> str:
    return f"{r.backups.backups_prefix}{name}/manifest.json"


@pytest.mark.parametrize(
    "damage",
    ["deleted", "garbage", "truncated", "another backup's", "unknown format"],
)
def test_a_backup_without_a_valid_manifest_does_not_exist(
    file_config: dict[str, Any], tmp_path: Path, damage: str
) -> None:
    older, newer = two_backups(file_config)
    with Repo(file_config) as r:
        key = manifest_key(r, newer)
        good = b"".join(r.backups.store.iter_bytes(key))
        replacement = {
            "garbage": b"\x00\xffnot json",
            "truncated": good[: len(good) // 2],
            "another backup's": b"".join(r.backups.store.iter_bytes(manifest_key(r, older))),
            "unknown format": json.dumps({**json.loads(good), "format": 99}).encode(),
        }
        if damage == "deleted":
            r.backups.store.delete_many([key])
        else:
            replace_object(r.backups.store, key, replacement[damage], tmp_path)
        assert [m["name"] for m in r.list_backups()] == [older]
    lose_catalog(file_config)

    report = restore_catalog(file_config)

    assert (report.backup, report.rejected) == (older, [])
    with Repo(file_config) as r:  # the journal brings back what came after the older one
        assert r.current("second").read_bytes() == b"2"
        assert [b.name for b in r.catalog.completed_backups()] == [older]


def test_a_backup_whose_table_does_not_match_its_manifest_is_rejected(
    file_config: dict[str, Any], tmp_path: Path
) -> None:
    older, newer = two_backups(file_config)
    with Repo(file_config) as r:
        key = f"{r.backups.backups_prefix}{newer}/files.jsonl.gz"
        lines = gzip.decompress(b"".join(r.backups.store.iter_bytes(key))).splitlines(True)
        kept = lines[:-1]  # one version fewer: a table that lost rows
        replace_object(r.backups.store, key, gzip.compress(b"".join(kept)), tmp_path)
    lose_catalog(file_config)

    report = restore_catalog(file_config)

    got = hashlib.sha256(b"".join(kept)).hexdigest()
    want = hashlib.sha256(b"".join(lines)).hexdigest()
    assert report.rejected == [
        (
            newer,
            f"{key}: {len(kept)} rows with SHA-256 {got[:12]}..., the manifest says "
            f"{len(lines)} rows with {want[:12]}...",
        )
    ]
    assert report.backup == older
    with Repo(file_config) as r:
        assert [f.path for f in r.list()] == ["first", "second"]


def test_restore_fails_when_no_backup_is_usable(file_config: dict[str, Any]) -> None:
    with Repo(file_config) as r:
        with pytest.raises(NotFoundError) as missing:
            restore_catalog(file_config)
        assert missing.value.hint == (
            "take one with `repo backup` while the catalog is there; if there should be "
            "some, check 'backup_s3_bucket' and the store settings"
        )
        publish(r, "f", b"x")
        only = r.backup().name
        r.backups.store.delete_many([f"{r.backups.backups_prefix}{only}/files.jsonl.gz"])
    lose_catalog(file_config)
    with pytest.raises(VerificationError, match=f"^no usable backup: {only}: "):
        restore_catalog(file_config)
    with pytest.raises(NotFoundError, match="no complete backup named 'nope'"):
        restore_catalog(file_config, backup="nope")


# ------------------------------------------------------------------ --verify


def flipped(data: bytes) -> bytes:
    out = bytearray(data)
    out[len(out) // 2] ^= 0x01
    return bytes(out)


def published_twice(config: Mapping[str, Any]) -> tuple[str, str, RepoFile]:
    """Backup A (p's first version current), p's second version published, backup B.
    Returns (A, B, the second version)."""
    with Repo(config) as r:
        publish(r, "p", b"version one")
        older = r.backup().name
        second = publish(r, "p", b"version two")
        newer = r.backup().name
    return older, newer, second


# `_check_published` names the damaged file by `row["path"]`, but rows of the backed-up
# ``files`` table carry ``path_id``: the KeyError escapes the per-backup `except`, so
# instead of falling back to an older backup the whole restore crashes.


@pytest.mark.parametrize(
    ("damage", "reason", "needs_deep"),
    [
        ("deleted", "published file p is missing ({key})", False),
        ("replaced", "published file p has the wrong checksum", False),
        ("truncated", "published file p has 5 bytes, not 11", False),
        ("bit rot", "published file p has the wrong content", True),
    ],
)
def test_verify_rejects_a_backup_whose_published_object_is_damaged(
    file_config: dict[str, Any], tmp_path: Path, damage: str, reason: str, needs_deep: bool
) -> None:
    older, newer, second = published_twice(file_config)
    with Repo(file_config) as r:
        if damage == "deleted":
            r.store.delete_many([second.key])
        elif damage == "replaced":
            replace_object(r.store, second.key, flipped(b"version two"), tmp_path)
        elif damage == "truncated":
            replace_object(r.store, second.key, b"versi", tmp_path)
        else:  # the bytes change on disk; the store's checksum record does not
            on_disk = Path(r.store.bucket) / second.key
            on_disk.chmod(0o644)
            on_disk.write_bytes(flipped(on_disk.read_bytes()))
    lose_catalog(file_config)
    assert restore_catalog(file_config).backup == newer  # without --verify: the newest

    shallow = restore_catalog(file_config, verify=True, force=True)
    deep = restore_catalog(file_config, verify=True, deep=True, force=True)

    rejected = [(newer, reason.format(key=second.key))]
    assert (shallow.backup, shallow.rejected) == ((newer, []) if needs_deep else (older, rejected))
    assert (deep.backup, deep.rejected) == (older, rejected)


def test_verify_accepts_the_newest_backup_when_every_published_object_is_whole(
    store_config: dict[str, Any],
) -> None:
    with Repo(store_config) as r:
        publish(r, "p", b"x" * 1000)
        r.backup()
        expired = publish(r, "p", b"y" * 1000)
        publish(r, "p", b"z")
        newest = r.backup().name
        r.store.delete_many([expired.key])  # expired versions are not checked
    lose_catalog(store_config)
    report = restore_catalog(store_config, verify=True, deep=True)
    assert (report.backup, report.rejected) == (newest, [])


# ------------------------------------------------------------ a catalog with data


def test_restore_refuses_a_catalog_with_data_and_replaces_it_with_force(
    local_config: dict[str, Any],
) -> None:
    with Repo(local_config) as r:
        publish(r, "backed-up", b"1")
        name = r.backup().name
        publish(r, "journaled", b"2")
    # Data the journal never saw (another repository's catalog, say).
    engine = create_engine(load_config(local_config).database_url)
    with engine.begin() as conn:
        conn.execute(tags.insert().values(name="stray"))
    engine.dispose()
    before = read_tables(local_config)

    with pytest.raises(CatalogError) as refused:
        restore_catalog(local_config)
    assert refused.value.message == "the catalog is not empty; restore replaces it"
    assert "`repo restore --force`" in (refused.value.hint or "")
    assert read_tables(local_config) == before

    report = restore_catalog(local_config, force=True)

    assert (report.backup, report.journal_entries) == (name, 1)
    with Repo(local_config) as r:
        assert [f.path for f in r.list()] == ["backed-up", "journaled"]
        assert "stray" not in {t["name"] for t in read_tables(local_config)["tags"]}


def test_restore_into_a_created_but_empty_catalog_needs_no_force(
    file_config: dict[str, Any],
) -> None:
    with Repo(file_config) as r:
        publish(r, "f", b"x")
        name = r.backup().name
    lose_catalog(file_config)
    Repo(file_config).close()  # `repo create`, or any first command, made it anew
    assert restore_catalog(file_config).backup == name


# ------------------------------------------------------------------ retention


@pytest.mark.parametrize(("keep", "before_purge", "kept"), [(2, 2, 2), (1, 2, 2), (3, 1, 3)])
def test_retention_keeps_the_newest_backups_and_never_fewer_than_gc_needs(
    file_config: dict[str, Any], keep: int, before_purge: int, kept: int
) -> None:
    config = {**file_config, "backup_keep": keep, "backups_before_purge": before_purge}
    with Repo(config) as r:
        taken = []
        for i in range(4):
            publish(r, f"f{i}", b"x")
            taken.append(r.backup())
        names = [t.name for t in taken]
        assert [t.deleted_backups for t in taken] == [[] for _ in range(kept)] + [
            [names[i]] for i in range(4 - kept)
        ]
        newest_first = names[::-1][:kept]
        assert [m["name"] for m in r.list_backups()] == newest_first
        assert [b.name for b in r.catalog.completed_backups()] == newest_first
        left = {k[len(r.backups.backups_prefix) :].split("/")[0] for k in backup_keys(r)}
        assert left == set(newest_first)  # no table objects of deleted backups remain


def test_retention_deletes_journal_entries_only_an_hour_before_the_oldest_kept_backup(
    file_config: dict[str, Any], tmp_path: Path
) -> None:
    config = {**file_config, "backup_keep": 1, "backups_before_purge": 1}
    with Repo(config) as r:
        publish(r, "f", b"x")
        recent = journal_keys(r)
        first = r.backup()
        assert (first.deleted_journal_entries, journal_keys(r)) == (0, recent)
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        scratch = tmp_path / "entry.json"
        scratch.write_text("{}")
        stale = f"{r.backups.journal_prefix}{now_ms - 2 * 3600_000:013d}-old.json"
        margin = f"{r.backups.journal_prefix}{now_ms - 1800_000:013d}-in-the-margin.json"
        for key in (stale, margin):
            r.backups.store.put_file(key, scratch)
        second = r.backup()
        assert second.deleted_journal_entries == 1
        assert journal_keys(r) == sorted([*recent, margin])


# --------------------------------------------------------------- GC interplay


def test_a_restore_does_not_resurrect_versions_gc_purged_after_the_backup(
    local_config: dict[str, Any],
) -> None:
    config = {**local_config, "expired_ttl_seconds": 0, "backups_before_purge": 2}
    with Repo(config) as r:
        old = publish(r, "p", b"old")
        current = publish(r, "p", b"current")
        r.backup()
        newest = r.backup().name
        gc = r.gc()
        assert gc.expired.keys == [old.key]
    lose_catalog(config)

    report = restore_catalog(config)

    assert report.backup == newest
    assert report.journal_entries >= 2  # the claim, then the purge
    assert report.adopted == []
    with Repo(config) as r:
        assert [(f.file_id, f.state) for f in r.history("p")] == [(current.file_id, "published")]
        with pytest.raises(NotFoundError):
            r.file(old.file_id)


# ----------------------------------------------------------- --purge-orphans


def put_stray(r: Repo, key: str, tmp_path: Path) -> str:
    """An object under the data prefix that is not ours: no catalog metadata."""
    scratch = tmp_path / "stray"
    scratch.write_bytes(b"not a version of anything")
    r.store.put_file(key, scratch)
    return key


def test_purge_orphans_deletes_unreferenced_objects_after_the_restore(
    file_config: dict[str, Any], tmp_path: Path
) -> None:
    config = {**file_config, "orphan_grace_seconds": 0}
    with Repo(config) as r:
        kept = publish(r, "kept", b"published")
        r.backup()
        late = publish(r, "late", b"journaled")
        stray = put_stray(r, f"{r.store.key_prefix}data/stray~{late.key[-26:]}", tmp_path)
        bare = put_stray(r, f"{r.store.key_prefix}data/no-token.bin", tmp_path)
        outside = put_stray(r, f"{r.store.key_prefix}elsewhere/readme", tmp_path)
    lose_catalog(config)
    assert restore_catalog(config).orphans_purged == 0  # off by default
    with Repo(config) as r:
        assert {stray, bare} <= {i.key for i in r.store.list()}

    report = restore_catalog(config, force=True, purge_orphans=True)

    assert (report.orphans_purged, report.adopted) == (2, [])
    with Repo(config) as r:
        left = {i.key for i in r.store.list(r.store.key_prefix + "data/")}
        assert left == {kept.key, late.key}
        assert outside in {i.key for i in r.store.list()}
        assert [f.read_bytes() for f in r.list()] == [b"published", b"journaled"]


# `restore(purge_orphans=True)` runs a whole garbage collection, whose TTL rules then
# purge referenced versions too: unpublished ones (the ones a restore has just adopted
# among them, whose `created_at` comes from the object and may be days old) and expired
# ones past their TTL. The option is meant to delete only objects nothing refers to.


def test_purge_orphans_keeps_every_version_the_catalog_refers_to(
    file_config: dict[str, Any],
) -> None:
    config = {**file_config, "orphan_grace_seconds": 0, "unpublished_ttl_seconds": 0}
    with Repo(config) as r:
        draft = r.add_file("draft").touch(b"in the backup, unpublished").upload()
        r.commit()
        r.backup()
        lost = r.add_file("lost-entry").touch(b"its journal entry is lost").upload()
        r.commit()
        r.backups.store.delete_many(journal_keys(r))
    lose_catalog(config)

    report = restore_catalog(config, purge_orphans=True)

    assert report.adopted == [lost.key]
    with Repo(config) as r:
        assert [f.key for f in r.list("*", state="unpublished")] == [draft.key, lost.key]
        assert report.orphans_purged == 0


# ------------------------------------------------------------------------ CLI


@pytest.fixture
def run(tmp_path: Path, file_config: dict[str, Any]) -> CliRun:
    """`repo` with a config file on SQLite and a directory store."""
    return CliRun(write_config(tmp_path / "repo_cfg.json", file_config), tmp_path)


def newest_manifest(config: Mapping[str, Any]) -> dict[str, Any]:
    with Repo(config) as r:
        return r.list_backups()[0]


def human(size: int) -> str:
    return f"{size} B" if size < 1024 else f"{size / 1024:.1f} KiB"


def test_cli_backup_says_what_it_wrote_and_where(run: CliRun, file_config: dict[str, Any]) -> None:
    assert run("add", "a.txt", "-", "--publish", input=b"aaa").exit_code == 0
    done = run("backup")
    assert done.exit_code == 0
    m = newest_manifest(file_config)
    size = sum(t["object_size"] for t in m["tables"].values())
    location = f"{file_config['store']}/backups/{m['name']}/"
    assert done.stdout == f"backup {m['name']}: 1 file versions, {human(size)} at {location}\n"

    as_json = run("backup", "--json")
    assert as_json.exit_code == 0
    doc = json.loads(as_json.stdout)
    m = newest_manifest(file_config)
    assert doc == {
        "name": m["name"],
        "taken_at": m["taken_at"],
        "completed_at": m["completed_at"],
        "rows": {t: spec["rows"] for t, spec in m["tables"].items()},
        "bytes": sum(t["object_size"] for t in m["tables"].values()),
        "location": f"{file_config['store']}/backups/{m['name']}/",
        "deleted_backups": [],
        "deleted_journal_entries": 0,
    }
    assert doc["rows"]["files"] == 1
    assert doc["rows"]["backups"] == 1


def test_cli_backup_reports_backups_deleted_by_retention(
    tmp_path: Path, file_config: dict[str, Any]
) -> None:
    config = {**file_config, "backup_keep": 1, "backups_before_purge": 1}
    run = CliRun(write_config(tmp_path / "keep1.json", config), tmp_path)
    assert run("backup").exit_code == 0
    second = run("backup")
    assert second.exit_code == 0
    assert second.stdout.splitlines()[1:] == ["deleted 1 old backups (backup_keep)"]


def test_cli_restore_lists_backups_newest_first(run: CliRun, file_config: dict[str, Any]) -> None:
    empty = run("restore", "--list")
    assert (empty.exit_code, empty.stdout, empty.stderr) == (0, "", "no backups\n")
    assert run("backup").exit_code == 0
    assert run("add", "a.txt", "-", "--publish", input=b"a").exit_code == 0
    assert run("backup").exit_code == 0
    with Repo(file_config) as r:
        newer, older = r.list_backups()

    listed = run("restore", "--list")

    assert listed.exit_code == 0
    width = len(newer["name"])
    assert listed.stdout == (
        f"{'BACKUP':<{width}}  {'TAKEN (UTC)':<19}  FILES\n"
        f"{newer['name']}  {human_time(newer['taken_at'])}  1\n"
        f"{older['name']}  {human_time(older['taken_at'])}  0\n"
    )
    as_json = run("restore", "--list", "--json")
    assert json.loads(as_json.stdout) == {
        "backups": [
            {"name": m["name"], "taken_at": m["taken_at"], "file_count": files}
            for m, files in ((newer, 1), (older, 0))
        ]
    }


def test_cli_restore_prints_one_line_and_refuses_a_catalog_with_data(
    run: CliRun, file_config: dict[str, Any]
) -> None:
    assert run("add", "a.txt", "-", "--publish", input=b"a").exit_code == 0
    assert run("backup").exit_code == 0
    m = newest_manifest(file_config)

    refused = run("restore")
    assert (refused.exit_code, refused.stdout) == (1, "")
    assert refused.stderr == (
        "Error: the catalog is not empty; restore replaces it\n"
        "Try: restore into an empty database, or run `repo restore --force` to replace it\n"
    )

    assert run("add", "b.txt", "-", "--publish", input=b"b").exit_code == 0
    forced = run("restore", "--force")
    assert (forced.exit_code, forced.stderr) == (0, "")
    assert forced.stdout == (
        f"restored backup {m['name']} (taken {human_time(m['taken_at'])} UTC): 1 file versions; "
        "replayed 1 journal entries; adopted 0 objects\n"
    )
    assert run("cat", "b.txt").stdout == "b"

    assert run("destroy", "--yes").exit_code == 0
    as_json = run("restore", "--json", "--purge-orphans")
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout) == {
        "backup": m["name"],
        "taken_at": m["taken_at"],
        "rejected": [],
        # The fresh schema keeps its own version row rather than the backup's.
        "rows": {t: spec["rows"] - (t == "repo_meta") for t, spec in m["tables"].items()},
        "journal_entries": 1,
        "skipped_entries": [],
        "adopted": [],
        "copies_found": [],
        "orphans_purged": 0,
    }


def test_cli_ctl_restore_is_restore(run: CliRun, file_config: dict[str, Any]) -> None:
    assert run("add", "a.txt", "-", "--publish", input=b"a").exit_code == 0
    assert run("backup").exit_code == 0
    m = newest_manifest(file_config)
    assert run("ctl", "--destroy", "--yes").exit_code == 0

    restored = run("ctl", "--restore")

    assert (restored.exit_code, restored.stderr) == (0, "")
    assert restored.stdout == (
        f"restored backup {m['name']} (taken {human_time(m['taken_at'])} UTC): 1 file versions; "
        "replayed 0 journal entries; adopted 0 objects\n"
    )
    assert run("cat", "a.txt").stdout == "a"


def test_cli_restore_errors_say_what_to_try(run: CliRun, file_config: dict[str, Any]) -> None:
    none = run("restore")
    assert (none.exit_code, none.stdout) == (1, "")
    assert none.stderr == (
        f"Error: no complete backup in {file_config['store']}/backups/\n"
        "Try: take one with `repo backup` while the catalog is there; if there should be "
        "some, check 'backup_s3_bucket' and the store settings\n"
    )
    assert run("backup").exit_code == 0
    unknown = run("restore", "--backup", "nope", "--force")
    assert (unknown.exit_code, unknown.stderr) == (
        1,
        "Error: no complete backup named 'nope'\nTry: see `repo restore --list`\n",
    )
    deep_alone = run("restore", "--deep")
    assert deep_alone.exit_code == 2
    assert "--deep goes with --verify" in deep_alone.stderr


def test_cli_restore_picks_a_named_backup(run: CliRun, file_config: dict[str, Any]) -> None:
    assert run("backup").exit_code == 0
    older = newest_manifest(file_config)
    assert run("add", "a.txt", "-", "--publish", input=b"a").exit_code == 0
    assert run("backup").exit_code == 0
    assert run("destroy", "--yes").exit_code == 0

    picked = run("restore", "--backup", older["name"])

    assert picked.exit_code == 0
    assert picked.stdout.startswith(f"restored backup {older['name']} ")
    assert "; replayed 1 journal entries;" in picked.stdout
    assert run("cat", "a.txt").stdout == "a"


def test_cli_restore_verify_reports_each_rejected_backup(
    run: CliRun, file_config: dict[str, Any]
) -> None:
    older, newer, second = published_twice(file_config)
    with Repo(file_config) as r:
        r.store.delete_many([second.key])
    assert run("destroy", "--yes").exit_code == 0

    verified = run("restore", "--verify")

    assert verified.exit_code == 0
    assert verified.stdout.splitlines()[0] == (
        f"rejected backup {newer}: published file p is missing ({second.key})"
    )
    assert verified.stdout.splitlines()[1].startswith(f"restored backup {older} ")


# ------------------------------------------------------------- where backups live


def test_backups_and_journal_go_to_the_backup_bucket_and_restore_finds_them_there(
    moto_server: Any, sqlite_url: str, tmp_path: Path
) -> None:
    config = s3_config(moto_server, sqlite_url, tmp_path)
    backup_bucket = moto_server.create_bucket(f"t-{uuid.uuid4().hex[:16]}")
    config["backup_s3_bucket"] = backup_bucket
    with Repo(config) as r:
        publish(r, "f", b"before")
        name = r.backup().name
        publish(r, "g", b"after")
        assert r.backups.store.bucket == backup_bucket
        assert backup_keys(r)
        assert journal_keys(r)
        in_data_bucket = {i.key.split("/")[1] for i in r.store.list(r.store.key_prefix)}
        assert in_data_bucket == {"data"}
    lose_catalog(config)

    report = restore_catalog(config)

    assert (report.backup, report.journal_entries) == (name, 1)
    with Repo(config) as r:
        assert [f.read_bytes() for f in r.list()] == [b"before", b"after"]


def test_a_backup_taken_on_sqlite_restores_into_postgresql(
    file_config: dict[str, Any], pg_url: str, tmp_path: Path
) -> None:
    build_every_kind_of_row(file_config, tmp_path)
    with Repo(file_config) as r:
        r.backup()
    on_postgresql = {**file_config, "database": pg_url}

    restore_catalog(on_postgresql)

    assert rows_without(read_tables(on_postgresql)) == rows_without(read_tables(file_config))


def test_a_backup_needs_a_session_without_uncommitted_changes(
    file_config: dict[str, Any],
) -> None:
    with Repo(file_config) as r:
        r.add_file("pending").touch(b"x")
        with pytest.raises(UsageError, match="uncommitted changes"):
            r.backup()
        r.rollback()
        assert r.list_backups() == []


def test_a_backup_taken_on_postgresql_restores_into_sqlite(
    file_config: dict[str, Any], pg_url: str, tmp_path: Path
) -> None:
    # PostgreSQL backups are COPY text; restoring one into SQLite parses it (escapes,
    # NULLs, times), so every row must come back the same.
    on_postgresql = {**file_config, "database": pg_url}
    build_every_kind_of_row(on_postgresql, tmp_path)
    with Repo(on_postgresql) as r:
        r.add_file("odd\\path\u00e9 \\N-like/x.txt").touch(b"q").publish().tag("tag\\with\\slashes")
        r.commit()
        r.backup()

    restore_catalog(file_config)

    assert rows_without(read_tables(file_config)) == rows_without(read_tables(on_postgresql))


# ------------------------------------------------------- interrupted restores, partial backups


def test_a_half_restored_catalog_refuses_to_open_and_a_plain_rerun_finishes_it(
    file_config: dict[str, Any],
) -> None:
    from repo.admin import status_report
    from repo.catalog import Catalog

    with Repo(file_config) as r:
        publish(r, "backed-up", b"1")
        name = r.backup().name
        publish(r, "journaled", b"2")
    destroy_catalog(file_config)
    restore_catalog(file_config)
    # What a restore killed between its load and its last commit leaves.
    catalog = Catalog(load_config(file_config).database_url)
    catalog.mark_restore_started(name)
    catalog.commit()
    catalog.close()

    with pytest.raises(CatalogError) as refused:
        Repo(file_config)
    assert refused.value.message == (
        f"the catalog is half restored: a restore of backup {name} did not finish, "
        "so it lacks the commits made after that backup"
    )
    assert refused.value.hint == "run `repo restore` again to finish it"
    status = status_report(file_config)
    assert not status.ok
    assert "run `repo restore` again" in (status.catalog_error or "")

    report = restore_catalog(file_config)  # no force needed

    assert (report.backup, report.journal_entries) == (name, 1)
    with Repo(file_config) as r:
        assert [f.path for f in r.list()] == ["backed-up", "journaled"]
    assert status_report(file_config).ok


def _partial(store_root: Path, name: str, age_seconds: float, manifest: bool = False) -> Path:
    """A backup directory as a backup killed before its manifest leaves it."""
    directory = store_root / "backups" / name
    directory.mkdir(parents=True)
    table = directory / "files.jsonl.gz"
    table.write_bytes(gzip.compress(b"{}\n"))
    if manifest:
        (directory / "manifest.json").write_text("not json")
    when = datetime.now(UTC).timestamp() - age_seconds
    for path in directory.iterdir():
        os.utime(path, (when, when))
    return directory


def test_retention_removes_partial_backups_only_when_older_than_a_complete_one_and_the_grace(
    file_config: dict[str, Any],
) -> None:
    config = {**file_config, "orphan_grace_seconds": 3600}
    root = Path(load_config(config).store_url.removeprefix("file://"))
    old = _partial(root, "20000101T000000000000Z-aaaaaaaa", age_seconds=7200)
    young = _partial(root, "20000102T000000000000Z-bbbbbbbb", age_seconds=60)
    later = _partial(root, "29990101T000000000000Z-cccccccc", age_seconds=7200)
    unreadable = _partial(root, "20000103T000000000000Z-dddddddd", 7200, manifest=True)
    stranger = _partial(root, "not-a-backup", age_seconds=7200)

    with Repo(config) as r:
        report = r.backup()

    assert report.deleted_partial_backups == [old.name]
    assert not old.exists() or not any(old.iterdir())  # its objects are gone
    assert all(d.exists() for d in (young, later, unreadable, stranger))


# ----------------------------------------------------------- locations


def test_backup_locations_name_the_store_prefix_once(
    store_config: dict[str, Any], tmp_path: Path
) -> None:
    """With a store under a prefix (``s3://bucket/repo``), the location a backup reports,
    records and keeps after a restore is where its manifest really is."""
    with Repo(store_config) as r:
        r.add("a.txt", io.BytesIO(b"a"), publish=True)
        r.commit()
        report = r.backup()
        store = r.backups.store
        manifest_key = f"{r.backups.backups_prefix}{report.name}/manifest.json"
    expected = f"{store_config['store']}/backups/{report.name}/"
    assert report.location == expected
    # The key under the store's URL is the manifest's real key, prefix counted once.
    assert f"{report.location}manifest.json".removeprefix(f"{store.url}/") == (
        manifest_key.removeprefix(store.key_prefix)
    )
    destroy_catalog(store_config)
    restore_catalog(store_config)
    with Repo(store_config) as r:
        recorded = r.catalog.completed_backups()
    assert [b.location for b in recorded] == [expected]
