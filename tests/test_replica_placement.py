"""`placement` for trees, and `replicate_on_publish: now` for every way of publishing
(docs/replicas.md), over three stores (`replica_stores`): the default one on moto,
`second` on rclone and `nas`, a directory."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from conftest import CliRun, write_config
from replica_stores import bucket_of, new_bucket, three_store_config
from repo import Repo, restore_catalog
from repo.errors import NotFoundError
from repo.fs import RepoFileSystem

if TYPE_CHECKING:
    from pathlib import Path

    from harness.s3servers import S3Server

pytestmark = pytest.mark.s3

#: raw/ goes to `second`, raw/nas/ (the longer prefix) to `nas`, the rest to the default.
PLACEMENT = {"raw/": "second", "raw/nas/": "nas"}
#: A tree with paths under each: small files (sent from memory) and a large one (sent from
#: a staging copy), in each store.
TREE = {
    "cooked/a.txt": b"cooked a",
    "cooked/deep/b.bin": bytes(range(256)) * 3,
    "raw/c.txt": b"raw c",
    "raw/big.bin": b"0123456789abcdef" * (300 * 1024),  # 4.7 MiB: past SMALL_OBJECT_MAX
    "raw/nas/d.txt": b"raw, on the nas",
}
STORE_OF = {"cooked/": "main", "raw/nas/": "nas", "raw/": "second"}


def _store_of(path: str) -> str:
    return next(name for prefix, name in STORE_OF.items() if path.startswith(prefix))


@pytest.fixture
def placed(
    tmp_path: Path, catalog_url: str, moto_server: S3Server, rclone_server: S3Server
) -> dict[str, Any]:
    config = three_store_config(tmp_path, catalog_url, moto_server, rclone_server)
    return {
        **config,
        "numcopies": 1,
        "placement": PLACEMENT,
        "expired_ttl_seconds": 0,
        "backups_before_purge": 0,
    }


def _write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return root


def _s3_keys(server: S3Server, url: str) -> dict[str, bytes]:
    """The data objects under the store's prefix, with their bytes."""
    bucket, _, prefix = url[len("s3://") :].partition("/")
    client = server.client()
    try:
        listed = client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/data/")
        return {
            o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            for o in listed.get("Contents", [])
        }
    finally:
        client.close()


def _stored(
    config: dict[str, Any], moto: S3Server, rclone: S3Server, tmp_path: Path
) -> dict[str, dict[str, bytes]]:
    """Every data object of every store, by store name: key -> bytes."""
    nas = tmp_path / "nas"
    return {
        "main": _s3_keys(moto, config["store"]),
        "second": _s3_keys(rclone, config["stores"]["second"]["url"]),
        "nas": {
            str(p.relative_to(nas)): p.read_bytes()
            for p in (nas / "data").rglob("*")
            if p.is_file() and "~" in p.name
        }
        if (nas / "data").exists()
        else {},
    }


def test_a_tree_under_two_prefixes_lands_in_each_paths_store_and_nowhere_else(
    placed: dict[str, Any], moto_server: S3Server, rclone_server: S3Server, tmp_path: Path
) -> None:
    tree = _write_tree(tmp_path / "tree", TREE)
    with Repo(placed) as r:
        report = r.add_tree(tree, publish=True, workers=3)
        r.commit()
        assert sorted(f.path for f in report.files) == sorted(TREE)
        buckets = {name: r.session.stores.named(name).bucket for name in ("main", "second", "nas")}
        for f in report.files:
            assert f.record.bucket == buckets[_store_of(f.path)], f.path
            assert r.session.locate(f.record) is r.session.stores.named(_store_of(f.path))
        keys = {f.path: f.key for f in report.files}
    stored = _stored(placed, moto_server, rclone_server, tmp_path)
    assert stored == {
        name: {keys[p]: data for p, data in TREE.items() if _store_of(p) == name}
        for name in ("main", "second", "nas")
    }
    assert all(k.startswith("copies/data/raw/") for k in stored["second"])
    assert all(k.startswith("repo/data/cooked/") for k in stored["main"])
    # Read back byte for byte, on a host with an empty cache, in every way there is.
    with Repo({**placed, "local_root": str(tmp_path / "other-host")}) as r:
        for path, data in TREE.items():
            assert r.current(path).read_bytes() == data, path
        out = tmp_path / "fetched"
        r.fetch(r.list("*"), dest=out)
        assert {p: (out / p).read_bytes() for p in TREE} == TREE
        verified = r.verify(deep=True)
        assert (verified.checked, verified.ok) == (5, True)
    run = CliRun(write_config(tmp_path / "cfg.json", placed), tmp_path)
    cat = run("cat", "raw/nas/d.txt")
    assert (cat.exit_code, cat.stdout_bytes) == (0, TREE["raw/nas/d.txt"])
    listed = run("list", "--json")
    assert listed.exit_code == 0, listed.output
    assert sorted(f["path"] for f in json.loads(listed.stdout)["files"]) == sorted(TREE)


def test_gc_deletes_an_expired_version_from_the_store_placement_put_it_in(
    placed: dict[str, Any], moto_server: S3Server, rclone_server: S3Server, tmp_path: Path
) -> None:
    first = _write_tree(tmp_path / "first", {"raw/c.txt": b"old c", "cooked/a.txt": b"old a"})
    second = _write_tree(tmp_path / "second", {"raw/c.txt": b"new c", "cooked/a.txt": b"new a"})
    with Repo(placed) as r:
        old = {f.path: f for f in r.add_tree(first, publish=True).files}
        r.commit()
        new = {f.path: f for f in r.add_tree(second, publish=True).files}  # `old` expired
        r.commit()
        assert r.history("raw/c.txt")[-1].state == "expired"
        report = r.gc(now=datetime.now(UTC) + timedelta(seconds=5))
        assert sorted(report.expired.keys) == sorted(f.key for f in old.values())
        for f in old.values():
            with pytest.raises(NotFoundError):
                r.file(f.file_id)
    assert _stored(placed, moto_server, rclone_server, tmp_path) == {
        "main": {new["cooked/a.txt"].key: b"new a"},
        "second": {new["raw/c.txt"].key: b"new c"},
        "nas": {},
    }


def test_gc_removes_what_a_cut_off_write_left_in_a_placed_store(
    placed: dict[str, Any], tmp_path: Path
) -> None:
    tmp = tmp_path / "nas" / ".repo-tmp"  # where the directory store writes before a rename
    tmp.mkdir()
    (tmp / "put-killed").write_bytes(b"half of raw/nas/d.txt")
    old = time.time() - 7200
    os.utime(tmp / "put-killed", (old, old))
    with Repo({**placed, "orphan_grace_seconds": 3600}) as r:
        assert r.gc(orphans=True).store_temporaries_removed == 1
    assert list(tmp.iterdir()) == []


def test_a_rolled_back_tree_leaves_no_object_in_any_store(
    placed: dict[str, Any], moto_server: S3Server, rclone_server: S3Server, tmp_path: Path
) -> None:
    tree = _write_tree(tmp_path / "tree", TREE)
    with Repo(placed) as r:
        report = r.add_tree(tree, publish=True)
        stored = _stored(placed, moto_server, rclone_server, tmp_path)
        assert [len(stored[n]) for n in ("main", "second", "nas")] == [2, 2, 1]
        r.rollback()
        assert [f.path for f in r.list("*")] == []
        assert report.files
    assert _stored(placed, moto_server, rclone_server, tmp_path) == {
        "main": {},
        "second": {},
        "nas": {},
    }


def test_a_backup_of_a_split_tree_restores_and_verifies_against_each_store(
    placed: dict[str, Any], tmp_path: Path
) -> None:
    placed = {**placed, "numcopies": 2}
    tree = _write_tree(tmp_path / "tree", TREE)
    with Repo(placed) as r:
        added = {f.path: f.file_id for f in r.add_tree(tree, publish=True).files}
        r.commit()
        # The placed versions' copies go to the default store, under its own prefix.
        assert r.replicate().copied == len(TREE)
        taken = r.backup()
    # Every published file is checked in its own store before the backup is used, and
    # the copies in the default store are known by their rows: none is adopted.
    report = restore_catalog(placed, verify=True, deep=True, force=True)
    assert (report.backup, report.rejected, report.adopted) == (taken.name, [], [])
    with Repo({**placed, "local_root": str(tmp_path / "new-host")}) as r:
        for path, data in TREE.items():
            f = r.current(path)
            assert (f.file_id, f.read_bytes()) == (added[path], data)


def _two_copies_each(r: Repo, ids: list[int]) -> None:
    """Each version has its own copy and one more, verified, holding its bytes."""
    copies = r.catalog.replicas_of(ids)
    for file_id in ids:
        rec = r.catalog.get(file_id)
        (copy,) = copies[file_id]
        assert copy.state == "verified"
        home = r.session.stores.home_name(rec)
        assert copy.store != home
        got = b"".join(r.session.locate_copy(rec, copy).iter_bytes(copy.key))
        assert got == r.file(file_id).read_bytes()


def test_add_tree_publishing_with_replicate_now_commits_with_two_copies_of_each(
    tmp_path: Path, catalog_url: str, moto_server: S3Server, rclone_server: S3Server
) -> None:
    config = three_store_config(tmp_path, catalog_url, moto_server, rclone_server)
    now = {**config, "numcopies": 2, "replicate_on_publish": "now"}
    tree = _write_tree(tmp_path / "tree", {k: v for k, v in TREE.items() if len(v) < 10_000})
    with Repo(now) as r:
        published = r.add_tree(tree, publish=True).files
        drafts = r.add_tree(tree, prefix="drafts").files  # not published: not copied
        ids = [f.file_id for f in published]
        assert r.catalog.replicas_of(ids) == {}  # nothing before the commit
        r.commit()
        _two_copies_each(r, ids)
        assert r.catalog.replicas_of([f.file_id for f in drafts]) == {}
        rolled = r.add_tree(tree, prefix="rolled", publish=True).files
        r.rollback()
        r.commit()
        assert r.catalog.replicas_of([f.file_id for f in rolled]) == {}
        assert r.replicate(dry_run=True).under == 0


def test_adding_a_local_file_or_writing_through_fsspec_publishes_with_every_copy(
    tmp_path: Path, catalog_url: str, moto_server: S3Server, rclone_server: S3Server
) -> None:
    config = three_store_config(tmp_path, catalog_url, moto_server, rclone_server)
    now = {**config, "numcopies": 3, "replicate_on_publish": "now", "placement": PLACEMENT}
    source = tmp_path / "local.txt"
    source.write_bytes(b"sent from where it is")
    with Repo(now) as r:
        local = r.add("raw/local.txt", source, publish=True)
        r.commit()
        fs = RepoFileSystem(write_config(tmp_path / "cfg.json", now), skip_instance_cache=True)
        with fs.open("repo://cooked/written.txt", "wb") as out:
            out.write(b"through fsspec")
        fs.put_file(str(source), "repo://raw/nas/put.txt")
        written = r.current("cooked/written.txt")
        put = r.current("raw/nas/put.txt")
        copies = r.catalog.replicas_of([local.file_id, written.file_id, put.file_id])
        assert {i: sorted((c.store, c.state) for c in cs) for i, cs in copies.items()} == {
            local.file_id: [("main", "verified"), ("nas", "verified")],
            written.file_id: [("nas", "verified"), ("second", "verified")],
            put.file_id: [("main", "verified"), ("second", "verified")],
        }


def test_repo_add_recursive_publish_with_replicate_now_leaves_every_version_copied(
    tmp_path: Path, sqlite_url: str, moto_server: S3Server, rclone_server: S3Server
) -> None:
    config = three_store_config(tmp_path, sqlite_url, moto_server, rclone_server)
    now = {**config, "numcopies": 2, "replicate_on_publish": "now", "placement": PLACEMENT}
    tree = _write_tree(tmp_path / "tree", {k: v for k, v in TREE.items() if len(v) < 10_000})
    run = CliRun(write_config(tmp_path / "cfg.json", now), tmp_path)
    done = run("add", "-r", str(tree), "--publish", "--json")
    assert done.exit_code == 0, done.output
    ids = [f["id"] for f in json.loads(done.stdout)["files"]]
    assert len(ids) == 4
    with Repo(now) as r:
        _two_copies_each(r, ids)
        homes = {r.file(i).path: r.session.stores.home_name(r.file(i).record) for i in ids}
        assert homes == {p: _store_of(p) for p in homes}
        assert r.replicate(dry_run=True).under == 0


def test_a_version_placed_in_an_s3_store_archives_and_thaws_there(
    tmp_path: Path, sqlite_url: str, moto_server: S3Server
) -> None:
    from harness.moto_restores import restores_held

    (tmp_path / "main").mkdir()
    cold = {
        "url": f"s3://{new_bucket(moto_server)}/cold",
        "s3_endpoint_url": moto_server.endpoint_url,
        "s3_access_key": moto_server.access_key,
        "s3_secret_key": moto_server.secret_key,
        "s3_region": moto_server.region,
    }
    config = {
        "local_root": str(tmp_path / "local"),
        "database": sqlite_url,
        "store": (tmp_path / "main").as_uri(),  # a directory: no archival classes
        "stores": {"cold": cold},
        "placement": {"cold/": "cold"},
    }
    tree = _write_tree(tmp_path / "tree", {"cold/a.bin": b"frozen bytes"})
    with Repo(config) as r, restores_held(moto_server):
        (f,) = r.add_tree(tree, publish=True).files
        r.commit()
        assert [a.file_id for a in r.archive([f]).archived] == [f.file_id]
        client = moto_server.client()
        try:
            answer = client.head_object(Bucket=bucket_of(cold["url"]), Key=f.key)
        finally:
            client.close()
        assert answer["StorageClass"] == "GLACIER"
        (status,) = r.thaw_status([r.file(f.file_id)])
        assert status.status == "archived"
        assert [t.file_id for t in r.thaw([r.file(f.file_id)]).started] == [f.file_id]


def test_prune_keeps_a_cached_copy_the_catalog_lost_while_its_placed_store_has_it(
    tmp_path: Path, sqlite_url: str
) -> None:
    for name in ("main", "nas"):
        (tmp_path / name).mkdir()
    config: dict[str, Any] = {
        "store": (tmp_path / "main").as_uri(),
        "database": sqlite_url,
        "local_root": str(tmp_path / "local"),
        "stores": {"nas": (tmp_path / "nas").as_uri()},
        "placement": {"raw/": "nas"},
    }
    with Repo(config) as r:
        r.backup()
        f = r.add_file("raw/x.txt").touch(b"placed").publish()
        r.commit()
        assert r.current("raw/x.txt").read_bytes() == b"placed"  # cached on this host
    # The catalog loses the version: restored from the backup, its journal entries gone,
    # and the object's metadata too (so the restore cannot adopt it).
    for entry in (tmp_path / "main" / "journal").iterdir():
        entry.unlink()
    (tmp_path / "nas" / ".repo-meta" / f"{f.key}.json").unlink()
    assert restore_catalog(config, force=True).adopted == []
    with Repo(config) as r:
        with pytest.raises(NotFoundError):
            r.file(f.file_id)
        # Its object is still in `nas`: the cached copy is not the last one, but it is
        # not dropped either while a store holds the object.
        assert r.prune_cache().dropped_purged == 0
        assert r.cache.cache_path(f.key).exists()
        (tmp_path / "nas" / f.key).chmod(0o600)
        (tmp_path / "nas" / f.key).unlink()
        assert r.prune_cache().dropped_purged == 1


def test_a_blind_restore_adopts_in_every_store_and_records_copies_as_copies(
    tmp_path: Path, sqlite_url: str, moto_server: S3Server, rclone_server: S3Server
) -> None:
    config = {
        **three_store_config(tmp_path, sqlite_url, moto_server, rclone_server),
        "placement": {"raw/": "second"},
        "orphan_grace_seconds": 0,
    }
    with Repo(config) as r:
        r.backup()
        r.add_file("raw/x.txt").touch(b"placed in second").publish()
        r.add_file("a.txt").touch(b"in main").publish()
        r.commit()
        assert r.replicate().copied == 2  # raw/x.txt into main, a.txt into second
    # The commits after the backup are lost with their journal entries.
    client = moto_server.client()
    bucket = bucket_of(config["store"])
    for entry in client.list_objects_v2(Bucket=bucket, Prefix="repo/journal/")["Contents"]:
        client.delete_object(Bucket=bucket, Key=entry["Key"])
    client.close()
    report = restore_catalog(config, force=True)
    # Each object is one version or one copy of it, never a second version.
    assert (len(report.adopted), len(report.copies_found)) == (2, 2)
    with Repo(config) as r:
        adopted = r.list("*", state="unpublished")
        assert sorted(f.path for f in adopted) == ["a.txt", "raw/x.txt"]
        # Until a person publishes them, the copies found are recorded, not counted.
        assert [c.state for cs in r.copies(adopted).values() for c in cs].count("writing") == 2
        for f in adopted:
            f.publish()
        r.commit()
        assert r.replicate().ok  # the copies found are checked where they are, and kept
        states = [c.state for cs in r.copies(adopted).values() for c in cs]
        assert states == ["verified"] * 4
        assert r.gc(orphans=True).orphans.count == 0
        assert {f.path: f.read_bytes() for f in adopted} == {
            "a.txt": b"in main",
            "raw/x.txt": b"placed in second",
        }
