"""GC and purge delete every copy in every store, in the same claim/delete/forget steps;
an unreachable store holds the purge back (src/repo/every_copy.py, docs/replicas.md)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from replica_stores import three_store_config
from repo import Repo
from repo.errors import NotFoundError, StoreError

if TYPE_CHECKING:
    from pathlib import Path

    from harness.s3servers import S3Server

pytestmark = pytest.mark.s3


@pytest.fixture
def stores(
    tmp_path: Path, sqlite_url: str, moto_server: S3Server, rclone_server: S3Server
) -> dict[str, Any]:
    return {
        **three_store_config(tmp_path, sqlite_url, moto_server, rclone_server),
        "numcopies": 3,
        "expired_ttl_seconds": 0,
        "backups_before_purge": 0,
    }


def _keys(server: S3Server, url: str) -> list[str]:
    """The data objects under the store's prefix (not the journal and backups)."""
    bucket, _, prefix = url[len("s3://") :].partition("/")
    client = server.client()
    try:
        listed = client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/data/").get("Contents", [])
    finally:
        client.close()
    return sorted(o["Key"] for o in listed)


def _everywhere(
    stores: dict[str, Any], moto: S3Server, rclone: S3Server, tmp_path: Path
) -> list[list[str]]:
    nas = sorted(
        str(p.relative_to(tmp_path / "nas"))
        for p in (tmp_path / "nas" / "data").rglob("*")
        if p.is_file()
    )
    return [
        _keys(moto, stores["store"]),
        _keys(rclone, stores["stores"]["second"]["url"]),
        [k for k in nas if "~" in k],
    ]


def test_purge_deletes_the_copies_in_every_store_and_gc_those_of_expired_versions(
    stores: dict[str, Any], moto_server: S3Server, rclone_server: S3Server, tmp_path: Path
) -> None:
    with Repo(stores) as r:
        gone = r.add_file("gone.txt").touch(b"purged now").publish()
        old = r.add_file("kept.txt").touch(b"old").publish()
        kept = r.add_file("kept.txt").touch(b"current").publish()  # `old` expired
        r.commit()
        assert r.replicate().copied == 6
        assert [len(k) for k in _everywhere(stores, moto_server, rclone_server, tmp_path)] == [
            3,
            3,
            3,
        ]
        r.purge(gone.file_id)
        r.gc(now=datetime.now(UTC) + timedelta(seconds=5))
        keys = {
            s: r.session.stores.copy_key(r.catalog.get(kept.file_id), s) for s in ("second", "nas")
        }
        assert r.catalog.replicas_of([gone.file_id, old.file_id]) == {}
        with pytest.raises(NotFoundError):
            r.file(old.file_id)
    left = _everywhere(stores, moto_server, rclone_server, tmp_path)
    assert left == [[kept.key], [keys["second"]], [keys["nas"]]]


def test_an_unreachable_store_holds_the_purge_back_until_a_later_run(
    stores: dict[str, Any], moto_server: S3Server, rclone_server: S3Server, tmp_path: Path
) -> None:
    with Repo(stores) as r:
        f = r.add_file("a.txt").touch(b"a").publish()
        r.commit()
        assert r.replicate().copied == 2
    shutil.move(tmp_path / "nas" / "data", tmp_path / "nas-data")
    (tmp_path / "nas" / "data").write_bytes(b"not a directory: deletes there fail")
    with Repo(stores) as r:
        with pytest.raises(StoreError, match="cannot delete"):
            r.purge(f.file_id)
        r.rollback()
        held = r.file(f.file_id)  # claimed, not forgotten: its rows still name every copy
        assert held.record.purge_started_at is not None
        assert [c.store for c in r.catalog.replicas_of([f.file_id])[f.file_id]] == [
            "nas",
            "second",
        ]
    (tmp_path / "nas" / "data").unlink()
    shutil.move(tmp_path / "nas-data", tmp_path / "nas" / "data")
    with Repo(stores) as r:
        r.gc()  # finishes the claims a run left before anything else
        with pytest.raises(NotFoundError):
            r.file(f.file_id)
    assert _everywhere(stores, moto_server, rclone_server, tmp_path) == [[], [], []]
