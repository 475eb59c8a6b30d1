"""Reads that fail over to another store's copy, and the lost-bucket drill
(src/repo/failover.py; docs/replicas.md)."""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, Any

import pytest

from replica_stores import bucket_of, delete_bucket, new_bucket, three_store_config
from repo import Repo
from repo.errors import StoreError

if TYPE_CHECKING:
    from pathlib import Path

    from harness.s3servers import S3Server

pytestmark = pytest.mark.s3

#: Small files (read in one call), and one above the 1 MiB small-download limit.
CONTENTS = {
    "a.txt": b"alpha",
    "dir/b.txt": b"bravo " * 100,
    "big.bin": os.urandom(3 * 1024 * 1024 + 17),
}


@pytest.fixture
def stores(
    tmp_path: Path, sqlite_url: str, moto_server: S3Server, rclone_server: S3Server
) -> dict[str, Any]:
    return three_store_config(tmp_path, sqlite_url, moto_server, rclone_server)


def _publish_and_replicate(config: dict[str, Any]) -> dict[str, int]:
    with Repo(config) as r:
        ids = {p: r.add_file(p).touch(data).publish().file_id for p, data in CONTENTS.items()}
        r.commit()
        assert r.replicate().copied == len(CONTENTS)
    return ids


def _on_a_new_host(config: dict[str, Any], tmp_path: Path, name: str) -> dict[str, Any]:
    """The same repository seen from a host with an empty cache."""
    return {**config, "local_root": str(tmp_path / name), "host_name": name}


def _states(r: Repo, ids: dict[str, int]) -> dict[str, list[tuple[str, str]]]:
    found = r.catalog.replicas_of(ids.values())
    return {p: [(c.store, c.state) for c in found.get(i, [])] for p, i in ids.items()}


def test_a_lost_bucket_is_invisible_to_readers_and_replicate_refills_its_replacement(
    stores: dict[str, Any], moto_server: S3Server, rclone_server: S3Server, tmp_path: Path
) -> None:
    ids = _publish_and_replicate(stores)
    delete_bucket(moto_server, bucket_of(stores["store"]))  # the default store is gone

    # Every way of reading still gives every byte, from the copies in `second`.
    with Repo(_on_a_new_host(stores, tmp_path, "reader-1")) as r:
        for path, data in CONTENTS.items():
            assert r.current(path).read_bytes() == data
        # A store that fails as a whole (here: no bucket) is passed over, but only a
        # missing or corrupt object is recorded lost: a wrong URL must not mark them all.
        assert _states(r, ids) == {p: [("second", "verified")] for p in CONTENTS}
    with Repo(_on_a_new_host(stores, tmp_path, "reader-2")) as r:
        report = r.fetch([r.current(p) for p in CONTENTS], dest=tmp_path / "out")
        assert report.downloaded == len(CONTENTS)
        for path, data in CONTENTS.items():
            assert (tmp_path / "out" / path).read_bytes() == data
    with Repo(_on_a_new_host(stores, tmp_path, "reader-3")) as r:
        for path, data in CONTENTS.items():
            out = io.BytesIO()
            r.current(path).write_to(out, keep_cached=False)
            assert out.getvalue() == data

    # The lost store is replaced: same name, a new bucket; replicate fills it again.
    replaced = {
        **_on_a_new_host(stores, tmp_path, "admin"),
        "store": f"s3://{new_bucket(moto_server)}/repo",
    }
    with Repo(replaced) as r:
        report = r.replicate()
        assert (report.under, report.copied, report.ok) == (3, 3, True)
        assert _states(r, ids) == {
            p: [("main", "verified"), ("second", "verified")] for p in CONTENTS
        }
    # Now `second` is lost as well: the replacement serves every read.
    delete_bucket(rclone_server, bucket_of(stores["stores"]["second"]["url"]))
    with Repo(_on_a_new_host(replaced, tmp_path, "reader-4")) as r:
        for path, data in CONTENTS.items():
            assert r.current(path).read_bytes() == data


def test_a_corrupt_copy_is_passed_over_and_recorded_lost(
    stores: dict[str, Any], moto_server: S3Server, tmp_path: Path
) -> None:
    ids = _publish_and_replicate(stores)
    with Repo(stores) as r:
        key = r.catalog.get(ids["a.txt"]).key
    client = moto_server.client()
    client.put_object(Bucket=bucket_of(stores["store"]), Key=key, Body=b"ALPHA")  # same size
    client.close()
    with Repo(_on_a_new_host(stores, tmp_path, "reader")) as r:
        assert r.current("a.txt").read_bytes() == b"alpha"
        assert _states(r, ids)["a.txt"] == [("main", "lost"), ("second", "verified")]
        assert _states(r, ids)["dir/b.txt"] == [("second", "verified")]


def test_a_read_with_no_good_copy_names_every_copy_it_tried(
    stores: dict[str, Any], moto_server: S3Server, rclone_server: S3Server, tmp_path: Path
) -> None:
    _publish_and_replicate(stores)
    delete_bucket(moto_server, bucket_of(stores["store"]))
    delete_bucket(rclone_server, bucket_of(stores["stores"]["second"]["url"]))
    reader = Repo(_on_a_new_host(stores, tmp_path, "reader"))
    with reader as r, pytest.raises(StoreError, match=r"could be read: main: .*; second: "):
        r.current("a.txt").read_bytes()


def test_a_lost_second_store_is_refilled_by_recover_under_its_old_name(
    stores: dict[str, Any], rclone_server: S3Server, tmp_path: Path
) -> None:
    ids = _publish_and_replicate(stores)
    delete_bucket(rclone_server, bucket_of(stores["stores"]["second"]["url"]))
    second = {**stores["stores"]["second"], "url": f"s3://{new_bucket(rclone_server)}/copies"}
    replaced = {**stores, "stores": {**stores["stores"], "second": second}}
    with Repo(replaced) as r:
        found = r.verify()
        assert found.copies is not None
        assert sorted(f.path for f in found.copies.missing) == sorted(CONTENTS)
        repaired = r.recover()
        assert repaired.ok
        assert repaired.from_stores is not None
        assert len(repaired.from_stores) == len(CONTENTS)
        again = r.verify(deep=True)
        assert again.ok
        assert again.copies is not None
        assert again.copies.under == []
        assert _states(r, ids) == {p: [("second", "verified")] for p in CONTENTS}
