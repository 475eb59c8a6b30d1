"""Drill (2) of docs/replicas.md: the catalog restored from the backups and journal kept
in the second store alone, the default store gone."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from replica_stores import bucket_of, delete_bucket, three_store_config
from repo import Repo, restorable_backups, restore_catalog

if TYPE_CHECKING:
    from harness.s3servers import S3Server

pytestmark = pytest.mark.s3


def test_the_catalog_comes_back_from_the_second_stores_backups_with_the_first_store_gone(
    tmp_path: Path, sqlite_url: str, moto_server: S3Server, rclone_server: S3Server
) -> None:
    config = three_store_config(tmp_path, sqlite_url, moto_server, rclone_server)
    with Repo(config) as r:
        before = r.add_file("before.txt").touch(b"in the backup").publish()
        before.tag("kept")
        r.commit()
        taken = r.backup()
        after = r.add_file("after.txt").touch(b"only in the journal").publish()
        r.commit()
        assert r.replicate().backup_objects > 0
        expected = {f.path: (f.file_id, f.read_bytes()) for f in (before, after)}
    delete_bucket(moto_server, bucket_of(config["store"]))  # the default store is gone
    Path(sqlite_url.removeprefix("sqlite:///")).unlink()  # and the catalog with it
    assert [b["name"] for b in restorable_backups(config)] == [taken.name]
    report = restore_catalog(config)
    assert (report.backup, report.journal_entries) == (taken.name, report.journal_entries)
    assert report.journal_entries >= 1  # `after.txt` and its copies came from the journal
    with Repo({**config, "local_root": str(tmp_path / "new-host")}) as r:
        for path, (file_id, data) in expected.items():
            f = r.current(path)
            assert (f.file_id, f.read_bytes()) == (file_id, data)  # from `second`
        assert [f.path for f in r.find(all=["kept"])] == ["before.txt"]
        copies = r.catalog.replicas_of(i for i, _ in expected.values())
        assert {c.store for cs in copies.values() for c in cs} == {"second"}
