"""`repo verify` per copy and `repo recover` from other stores: drill (3) of docs/replicas.md,
copies corrupted in one store are named, then repaired from the other."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from conftest import CliRun, write_config
from replica_stores import bucket_of, three_store_config
from repo import Repo

if TYPE_CHECKING:
    from pathlib import Path

    from harness.s3servers import S3Server

pytestmark = pytest.mark.s3

CONTENTS = {"a.txt": b"alpha", "b.txt": b"bravo!", "c.txt": b"charlie"}


@pytest.fixture
def stores(
    tmp_path: Path, sqlite_url: str, moto_server: S3Server, rclone_server: S3Server
) -> dict[str, Any]:
    config = three_store_config(tmp_path, sqlite_url, moto_server, rclone_server)
    with Repo(config) as r:
        for path, data in CONTENTS.items():
            r.add_file(path).touch(data).publish()
        r.commit()
        assert r.replicate().copied == 3  # into `second`, on rclone
    return config


def _put(server: S3Server, url: str, key: str, body: bytes) -> None:
    client = server.client()
    try:
        client.put_object(Bucket=bucket_of(url), Key=key, Body=body)
    finally:
        client.close()


def _get(server: S3Server, url: str, key: str) -> bytes:
    client = server.client()
    try:
        body: bytes = client.get_object(Bucket=bucket_of(url), Key=key)["Body"].read()
    finally:
        client.close()
    return body


def test_corrupt_copies_in_one_store_are_named_by_verify_and_repaired_by_recover(
    stores: dict[str, Any], moto_server: S3Server, rclone_server: S3Server, tmp_path: Path
) -> None:
    second = stores["stores"]["second"]["url"]
    with Repo(stores) as r:
        recs = {p: r.current(p).record for p in CONTENTS}
        keys = {p: r.session.stores.copy_key(rec, "second") for p, rec in recs.items()}
    # In `second`: a.txt damaged (same size), b.txt replaced by other bytes; in the
    # default store c.txt is damaged.
    _put(rclone_server, second, keys["a.txt"], b"ALPHA")
    _put(rclone_server, second, keys["b.txt"], b"bravo?")
    _put(moto_server, stores["store"], recs["c.txt"].key, b"CHARLIE")
    with Repo(stores) as r:
        found = r.verify(deep=True)
        copies = found.copies
        assert copies is not None
        assert not found.ok
        assert sorted((f.path, f.store) for f in copies.corrupt) == [
            ("a.txt", "second"),
            ("b.txt", "second"),
        ]
        assert [f.path for f in found.corrupt] == ["c.txt"]  # its own copy
        assert sorted((f.path, f.store) for f in copies.under) == [
            ("a.txt", "main"),
            ("b.txt", "main"),
            ("c.txt", "second"),
        ]
        assert copies.below_floor == []  # each still has one good copy
        repaired = r.recover(deep=True)
        assert repaired.ok
        assert repaired.from_stores is not None
        assert sorted((f.path, f.store) for f in repaired.from_stores) == [
            ("a.txt", "second"),
            ("b.txt", "second"),
            ("c.txt", "main"),
        ]
        again = r.verify(deep=True)
        assert again.ok
        assert again.copies is not None
        assert again.copies.under == []
    for path, data in CONTENTS.items():
        assert _get(rclone_server, second, keys[path]) == data
        assert _get(moto_server, stores["store"], recs[path].key) == data


def test_verify_json_lists_the_copies_of_several_stores(
    stores: dict[str, Any], rclone_server: S3Server, tmp_path: Path
) -> None:
    run = CliRun(write_config(tmp_path / "cfg.json", stores), tmp_path)
    with Repo(stores) as r:
        rec = r.current("a.txt").record
        key = r.session.stores.copy_key(rec, "second")
    client = rclone_server.client()
    client.delete_object(Bucket=bucket_of(stores["stores"]["second"]["url"]), Key=key)
    client.close()
    shown = run("verify", "--json")
    assert shown.exit_code == 1, shown.output
    doc = json.loads(shown.stdout)["copies"]
    assert (doc["numcopies"], doc["mincopies"], doc["checked"], doc["ok"]) == (2, 1, 6, False)
    assert doc["missing"] == [
        {
            "id": rec.file_id,
            "path": "a.txt",
            "store": "second",
            "key": key,
            "reason": "not in the store",
        }
    ]
    assert doc["corrupt"] == doc["below_floor"] == []
    assert doc["under"] == [
        {
            "id": rec.file_id,
            "path": "a.txt",
            "store": "main",
            "key": rec.key,
            "reason": "1 of 2 copies good",
        }
    ]


def test_recover_command_lists_the_copies_it_repaired_from_other_stores(
    stores: dict[str, Any], rclone_server: S3Server, tmp_path: Path
) -> None:
    run = CliRun(write_config(tmp_path / "cfg.json", stores), tmp_path)
    with Repo(stores) as r:
        rec = r.current("b.txt").record
        key = r.session.stores.copy_key(rec, "second")
    client = rclone_server.client()
    client.delete_object(Bucket=bucket_of(stores["stores"]["second"]["url"]), Key=key)
    client.close()
    done = run("recover")
    assert done.exit_code == 0, done.output
    # What was found, then what was rewritten; never "nothing to recover" after a repair.
    assert done.stdout == (
        "checked 3 files in the store (shallow): 0 missing, 0 corrupt\n"
        "copies: 6 checked, 1 missing, 0 corrupt\n"
        "repaired 1 copy from good copies in other stores:\n"
        "ID  PATH   STORE   WAS\n"
        f"{rec.file_id:<3} b.txt  second  not in the store\n"
    )
    assert _get(rclone_server, stores["stores"]["second"]["url"], key) == b"bravo!"


def test_verify_command_with_several_stores_counts_every_copy_and_names_recover(
    stores: dict[str, Any], moto_server: S3Server, rclone_server: S3Server, tmp_path: Path
) -> None:
    run = CliRun(write_config(tmp_path / "cfg.json", stores), tmp_path)
    with Repo(stores) as r:
        a, b = r.current("a.txt").record, r.current("b.txt").record
        second_key = r.session.stores.copy_key(b, "second")
    client = moto_server.client()
    client.delete_object(Bucket=bucket_of(stores["store"]), Key=a.key)
    client.close()
    client = rclone_server.client()
    client.delete_object(Bucket=bucket_of(stores["stores"]["second"]["url"]), Key=second_key)
    client.close()
    shown = run("verify")
    assert shown.exit_code == 1, shown.output
    # One missing in the default store, one in `second`: both counted, and the hint is
    # the one that repairs from the other stores.
    assert shown.stderr == (
        "Error: 2 missing and 0 corrupt copies\n"
        "Try: `repo recover` rewrites them from good copies in other stores (then from this "
        "host's cache); `repo replicate` makes what is short of numcopies\n"
    )
