"""Several stores with the fault proxy in front of one S3 store (issue 19's tests): reads
fail over, replication survives throttling and a store that refuses every write,
copies into a store imitating SSE-KMS are read back, and `repo verify` tells an
unreachable store from a lost copy (docs/replicas.md)."""

from __future__ import annotations

import io
import json
import os
from typing import TYPE_CHECKING, Any

import pytest

from conftest import CliRun, write_config
from harness.proxy import FaultProxy
from replica_stores import three_store_config
from repo import Repo, restore_catalog
from repo.admin import destroy_catalog

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from harness.s3servers import S3Server

pytestmark = pytest.mark.s3

#: A small file (read in one call) and one above the 1 MiB small-download limit.
CONTENTS = {"a.txt": b"alpha " * 50, "big.bin": os.urandom(2 * 1024 * 1024 + 7)}
#: The requests for the versions' objects (not catalog backups or journal entries).
DATA = "/data/"


@pytest.fixture
def stores(
    tmp_path: Path, sqlite_url: str, moto_server: S3Server, rclone_server: S3Server
) -> dict[str, Any]:
    return three_store_config(tmp_path, sqlite_url, moto_server, rclone_server)


@pytest.fixture
def moto_proxy(moto_server: S3Server) -> Iterator[FaultProxy]:
    with FaultProxy(moto_server.endpoint_url) as proxy:
        yield proxy


def _publish(config: dict[str, Any], *, replicate: bool = True) -> dict[str, int]:
    with Repo(config) as r:
        ids = {p: r.add_file(p).touch(data).publish().file_id for p, data in CONTENTS.items()}
        r.commit()
        if replicate:
            assert r.replicate().copied == len(CONTENTS)
    return ids


def _host(config: dict[str, Any], tmp_path: Path, name: str, **more: Any) -> dict[str, Any]:
    """The repository seen from another host (an empty cache), with `more` settings."""
    return {**config, "local_root": str(tmp_path / name), "host_name": name, **more}


def _states(r: Repo, ids: dict[str, int]) -> dict[str, list[tuple[str, str]]]:
    found = r.catalog.replicas_of(ids.values())
    r.catalog.end_read()
    return {p: [(c.store, c.state) for c in found.get(i, [])] for p, i in ids.items()}


def _cli(tmp_path: Path, config: dict[str, Any], name: str) -> CliRun:
    return CliRun(write_config(tmp_path / f"{name}.json", config), tmp_path)


def _keys(server: S3Server, url: str, prefix: str) -> list[str]:
    """Every key under `prefix` of the store at `url` (asked of the server directly)."""
    bucket, _, root = url[len("s3://") :].partition("/")
    client = server.client()
    try:
        listed = client.list_objects_v2(Bucket=bucket, Prefix=f"{root}/{prefix}")
    finally:
        client.close()
    return sorted(o["Key"] for o in listed.get("Contents", []))


def _second_through(config: dict[str, Any], proxy: FaultProxy) -> dict[str, Any]:
    """`config` with the store `second` reached through `proxy`."""
    second = {**config["stores"]["second"], "s3_endpoint_url": proxy.endpoint_url}
    return {**config, "stores": {**config["stores"], "second": second}}


@pytest.fixture
def rclone_proxy(rclone_server: S3Server) -> Iterator[FaultProxy]:
    with FaultProxy(rclone_server.endpoint_url) as proxy:
        yield proxy


# -- (a) reads ------------------------------------------------------------------------


def test_reads_fail_over_when_the_home_stores_answers_are_cut_short(
    stores: dict[str, Any], moto_proxy: FaultProxy, tmp_path: Path
) -> None:
    ids = _publish(stores)
    moto_proxy.truncate_responses(method="GET", path=DATA, count=None)
    through = {"s3_endpoint_url": moto_proxy.endpoint_url}
    # Each way of reading, the sizes taking turns (each failed read of the home copy
    # costs the client's retries: about a second).
    with Repo(_host(stores, tmp_path, "reader-1", **through)) as r:
        assert r.current("big.bin").read_bytes() == CONTENTS["big.bin"]  # into the cache
        out = io.BytesIO()
        assert r.current("a.txt").write_to(out, keep_cached=False) == len(CONTENTS["a.txt"])
        assert out.getvalue() == CONTENTS["a.txt"]
    with Repo(_host(stores, tmp_path, "reader-2", **through)) as r:
        report = r.fetch([r.current(p) for p in CONTENTS], dest=tmp_path / "out")
        assert report.downloaded == len(CONTENTS)
        for path, data in CONTENTS.items():
            assert (tmp_path / "out" / path).read_bytes() == data
    cli = _cli(tmp_path, _host(stores, tmp_path, "reader-3", **through), "reader-3")
    got = cli("cat", "big.bin")
    assert (got.exit_code, got.stdout_bytes) == (0, CONTENTS["big.bin"])
    got = cli("get", "a.txt", "-o", str(tmp_path / "got-a.txt"))
    assert got.exit_code == 0, got.output
    assert (tmp_path / "got-a.txt").read_bytes() == CONTENTS["a.txt"]
    assert moto_proxy.fired("truncate_response") >= 6  # each read tried the home copy first
    # A copy whose answers break off is passed over, never taken for a lost one.
    with Repo(stores) as r:
        assert _states(r, ids) == {p: [("second", "verified")] for p in CONTENTS}


@pytest.mark.parametrize("fault", ["reset", "500"])
def test_reads_fail_over_when_the_home_store_resets_or_fails_and_mark_nothing_lost(
    fault: str, stores: dict[str, Any], moto_proxy: FaultProxy, tmp_path: Path
) -> None:
    ids = _publish(stores)
    if fault == "reset":
        moto_proxy.reset_responses(method="GET", path=DATA, count=None)
    else:
        moto_proxy.fail_requests(500, code="InternalError", method="GET", path=DATA, count=None)
    through = {"s3_endpoint_url": moto_proxy.endpoint_url}
    with Repo(_host(stores, tmp_path, "reader-1", **through)) as r:
        assert r.current("a.txt").read_bytes() == CONTENTS["a.txt"]
        report = r.fetch([r.current(p) for p in CONTENTS], dest=tmp_path / "out")
        assert (report.downloaded, report.cached) == (1, 1)
        for path, data in CONTENTS.items():
            assert (tmp_path / "out" / path).read_bytes() == data
    assert moto_proxy.fired() >= 2
    with Repo(stores) as r:
        assert _states(r, ids) == {p: [("second", "verified")] for p in CONTENTS}


def test_a_corrupted_answer_marks_the_home_copy_lost_verify_names_it_recover_repairs_it(
    stores: dict[str, Any], moto_proxy: FaultProxy, tmp_path: Path
) -> None:
    ids = _publish(stores)
    moto_proxy.corrupt_response_bodies(method="GET", path=DATA, count=None)
    through = _host(stores, tmp_path, "reader", s3_endpoint_url=moto_proxy.endpoint_url)
    with Repo(through) as r:
        for path, data in CONTENTS.items():
            assert r.current(path).read_bytes() == data  # from `second`
        assert _states(r, ids) == {p: [("main", "lost"), ("second", "verified")] for p in CONTENTS}
    cli = _cli(tmp_path, through, "reader")
    found = cli("verify", "--deep", "--json")
    assert found.exit_code == 1, found.output
    doc = json.loads(found.stdout)
    assert sorted(f["path"] for f in doc["published"]["corrupt"]) == sorted(CONTENTS)
    assert all("md5" in f["reason"] for f in doc["published"]["corrupt"])
    assert sorted((f["path"], f["store"]) for f in doc["copies"]["under"]) == [
        (p, "second") for p in sorted(CONTENTS)
    ]
    fixed = cli("recover", "--deep", "--json")
    assert fixed.exit_code == 0, fixed.output
    doc = json.loads(fixed.stdout)
    assert sorted((f["path"], f["store"]) for f in doc["from_stores"]) == [
        (p, "main") for p in sorted(CONTENTS)
    ]
    moto_proxy.reset()
    with Repo(_host(stores, tmp_path, "after")) as r:
        assert _states(r, ids) == {
            p: [("main", "verified"), ("second", "verified")] for p in CONTENTS
        }
        assert r.verify(deep=True).ok
        for path, data in CONTENTS.items():
            assert r.current(path).read_bytes() == data


def test_a_copy_marked_lost_by_one_bad_answer_is_kept_by_replicate_after_a_read_back(
    stores: dict[str, Any], moto_proxy: FaultProxy, moto_server: S3Server, tmp_path: Path
) -> None:
    ids = _publish(stores)
    moto_proxy.corrupt_response_bodies(method="GET", path=DATA, count=1)
    with Repo(_host(stores, tmp_path, "reader", s3_endpoint_url=moto_proxy.endpoint_url)) as r:
        assert r.current("a.txt").read_bytes() == CONTENTS["a.txt"]
        assert _states(r, ids)["a.txt"] == [("main", "lost"), ("second", "verified")]
    before = _keys(moto_server, stores["store"], "data/")
    with Repo(stores) as r:
        report = r.replicate()
        assert (report.under, report.copied, report.ok) == (1, 1, True)
        assert _states(r, ids)["a.txt"] == [("main", "verified"), ("second", "verified")]
        assert r.current("a.txt").read_bytes() == CONTENTS["a.txt"]
    assert _keys(moto_server, stores["store"], "data/") == before  # the same object, kept


def test_recover_counts_again_a_copy_marked_lost_whose_object_is_whole(
    stores: dict[str, Any], moto_proxy: FaultProxy, moto_server: S3Server, tmp_path: Path
) -> None:
    ids = _publish(stores)
    moto_proxy.corrupt_response_bodies(method="GET", path=DATA, count=1)
    with Repo(_host(stores, tmp_path, "reader", s3_endpoint_url=moto_proxy.endpoint_url)) as r:
        assert r.current("a.txt").read_bytes() == CONTENTS["a.txt"]
    before = _keys(moto_server, stores["store"], "data/")
    cli = _cli(tmp_path, stores, "recover")
    dry = json.loads(cli("recover", "--dry-run", "--json").stdout)
    assert [(f["id"], f["store"]) for f in dry["from_stores"]] == [(ids["a.txt"], "main")]
    done = cli("recover", "--json")
    assert done.exit_code == 0, done.output
    assert [f["path"] for f in json.loads(done.stdout)["from_stores"]] == ["a.txt"]
    with Repo(stores) as r:
        assert _states(r, ids)["a.txt"] == [("main", "verified"), ("second", "verified")]
    assert _keys(moto_server, stores["store"], "data/") == before  # the same object, kept


def test_fetch_downloads_a_cached_copy_found_damaged_again_from_another_store(
    stores: dict[str, Any], moto_proxy: FaultProxy, tmp_path: Path
) -> None:
    ids = _publish(stores)
    reader = _host(stores, tmp_path, "reader", s3_endpoint_url=moto_proxy.endpoint_url)
    with Repo(reader) as r:
        assert r.fetch([r.current(p) for p in CONTENTS]).downloaded == len(CONTENTS)
        for path in CONTENTS:  # each cached copy damaged on disk, its size unchanged
            cached = r.cache.cache_path(r.current(path).key)
            cached.chmod(0o600)
            data = bytearray(cached.read_bytes())
            data[len(data) // 2] ^= 0xFF
            cached.write_bytes(bytes(data))
    moto_proxy.fail_requests(500, code="InternalError", method="GET", path=DATA, count=None)
    got = _cli(tmp_path, reader, "reader")("fetch", "*", "-o", str(tmp_path / "out"))
    assert got.exit_code == 0, got.output
    for path, data in CONTENTS.items():
        assert (tmp_path / "out" / path).read_bytes() == data
    assert moto_proxy.fired("status") >= len(CONTENTS)  # the home copies were tried first
    with Repo(reader) as r:
        for path, data in CONTENTS.items():  # the cache holds the good bytes again
            assert r.cache.cache_path(r.current(path).key).read_bytes() == data
        assert _states(r, ids) == {p: [("second", "verified")] for p in CONTENTS}


@pytest.mark.parametrize("pending", [False, True], ids=["side", "in-a-write"])
def test_a_lost_mark_found_by_a_read_survives_a_restore_from_backup_and_journal(
    pending: bool,
    catalog_url: str,
    moto_server: S3Server,
    rclone_server: S3Server,
    moto_proxy: FaultProxy,
    tmp_path: Path,
) -> None:
    stores = three_store_config(tmp_path, catalog_url, moto_server, rclone_server)
    ids = _publish(stores)
    with Repo(stores) as r:
        taken = r.backup()
    moto_proxy.corrupt_response_bodies(method="GET", path=DATA, count=1)
    with Repo(_host(stores, tmp_path, "reader", s3_endpoint_url=moto_proxy.endpoint_url)) as r:
        if pending:  # on SQLite the mark then joins this transaction, and its entry
            r.current("big.bin").tag("read")  # (not a.txt: its row would carry the mark)
        assert r.current("a.txt").read_bytes() == CONTENTS["a.txt"]
        r.commit()
        marked = r.catalog.replicas_of(ids.values())
        r.catalog.end_read()
    assert [(c.store, c.state) for c in marked[ids["a.txt"]]] == [
        ("main", "lost"),
        ("second", "verified"),
    ]
    destroy_catalog(stores)
    report = restore_catalog(stores)
    assert report.backup == taken.name
    assert report.skipped_entries == []
    with Repo(stores) as r:
        assert r.catalog.replicas_of(ids.values()) == marked
        assert [f.path for f in r.find(all=["read"])] == (["big.bin"] if pending else [])
        assert r.current("a.txt").read_bytes() == CONTENTS["a.txt"]  # from `second`


# -- (b) replication into a store that throttles or refuses ------------------------------


def test_replicate_into_a_throttling_store_succeeds_after_retries(
    stores: dict[str, Any], rclone_proxy: FaultProxy, tmp_path: Path
) -> None:
    ids = _publish(stores, replicate=False)
    rclone_proxy.throttle_requests(method="PUT", path=DATA, count=3)
    with Repo(_second_through(stores, rclone_proxy)) as r:
        report = r.replicate()
        assert (report.under, report.copied, report.ok) == (2, 2, True)
        assert _states(r, ids) == {p: [("second", "verified")] for p in CONTENTS}
    assert rclone_proxy.fired("status") == 3
    assert [s for m, t, s in rclone_proxy.requests if m == "PUT" and DATA in t].count(503) == 3


def test_replicate_into_a_store_refusing_every_write_leaves_nothing_counted_then_finishes(
    stores: dict[str, Any], rclone_proxy: FaultProxy, rclone_server: S3Server, tmp_path: Path
) -> None:
    ids = _publish(stores, replicate=False)
    refused = rclone_proxy.fail_requests(
        403, code="AccessDenied", method="PUT", path=DATA, count=None
    )
    config = _second_through(stores, rclone_proxy)
    cli = _cli(tmp_path, config, "admin")
    got = cli("replicate", "--json")
    assert got.exit_code == 1, got.output
    doc = json.loads(got.stdout)
    assert sorted(u["id"] for u in doc["still_under"]) == sorted(ids.values())
    assert (doc["copied"], doc["ok"]) == (0, False)
    assert refused.fired >= 2
    with Repo(stores) as r:
        states = _states(r, ids)
        assert all(("second", "verified") not in s for s in states.values()), states
        assert r.verify().copies.under  # type: ignore[union-attr]
    assert _keys(rclone_server, stores["stores"]["second"]["url"], "data/") == []
    rclone_proxy.reset()
    got = cli("replicate", "--json")
    assert got.exit_code == 0, got.output
    assert json.loads(got.stdout)["copied"] == 2
    with Repo(stores) as r:
        assert _states(r, ids) == {p: [("second", "verified")] for p in CONTENTS}
        copies = r.catalog.replicas_of(ids.values())
        recorded = sorted(c.key for cs in copies.values() for c in cs)
    # Exactly the recorded copies are in the store: no orphan from the refused run.
    assert _keys(rclone_server, stores["stores"]["second"]["url"], "data/") == recorded


# -- (c) a destination imitating SSE-KMS; bodies corrupted on the way --------------------


def test_copies_into_a_store_with_opaque_etags_are_read_back_and_corruption_is_caught(
    stores: dict[str, Any], rclone_proxy: FaultProxy, rclone_server: S3Server, tmp_path: Path
) -> None:
    ids = _publish(stores, replicate=False)
    rclone_proxy.imitate("opaque-etags")
    config = _second_through(stores, rclone_proxy)
    with Repo(config) as r:
        report = r.replicate()
        assert (report.copied, report.ok) == (2, True)
        copies = r.catalog.replicas_of(ids.values())
        r.catalog.end_read()
    assert {c.verified_with for cs in copies.values() for c in cs} == {"read-back"}
    keys = {c.key for cs in copies.values() for c in cs}
    read_back = {t.split("?")[0] for m, t, s in rclone_proxy.requests if m == "GET" and s == 200}
    assert all(any(t.endswith(k) for t in read_back) for k in keys)
    # A body corrupted on its way to the destination: its ETag there proves nothing,
    # the read-back catches it and no copy is counted.
    with Repo(stores) as r:
        new = r.add_file("c.txt").touch(b"charlie " * 64).publish().file_id
        r.commit()
    rclone_proxy.corrupt_request_bodies(method="PUT", path=DATA, count=1)
    with Repo(config) as r:
        report = r.replicate()
        assert list(report.still_under) == [new]
        assert not report.ok
        assert [(c.store, c.state) for c in r.catalog.replicas_of([new])[new]] == [
            ("second", "writing")
        ]
    assert rclone_proxy.fired("corrupt_request") == 1
    with Repo(config) as r:
        report = r.replicate()
        assert (report.copied, report.ok) == (1, True)
        copy = r.catalog.replicas_of([new])[new][0]
        assert (copy.state, copy.verified_with) == ("verified", "read-back")
    second = stores["stores"]["second"]["url"]
    bucket = second[len("s3://") :].split("/", 1)[0]
    client = rclone_server.client()
    try:
        body = client.get_object(Bucket=bucket, Key=copy.key)["Body"].read()
    finally:
        client.close()
    assert body == b"charlie " * 64


# -- (d) verify through an outage ------------------------------------------------------


def test_verify_reports_a_store_in_an_outage_as_unreachable_not_lost(
    stores: dict[str, Any], rclone_proxy: FaultProxy, tmp_path: Path
) -> None:
    ids = _publish(stores)
    config = _second_through(stores, rclone_proxy)
    rclone_proxy.fail_requests(503, code="ServiceUnavailable", path=DATA, count=None)
    cli = _cli(tmp_path, config, "admin")
    for deep in ([], ["--deep"]):
        got = cli("verify", "--json", *deep)
        assert got.exit_code == 1, got.output
        doc = json.loads(got.stdout)["copies"]
        assert (doc["missing"], doc["corrupt"]) == ([], [])
        assert sorted((f["path"], f["store"]) for f in doc["unreachable"]) == [
            (p, "second") for p in sorted(CONTENTS)
        ]
    with Repo(stores) as r:
        assert _states(r, ids) == {p: [("second", "verified")] for p in CONTENTS}
    rclone_proxy.reset()
    got = cli("verify", "--json", "--deep")
    assert got.exit_code == 0, got.output
    assert json.loads(got.stdout)["copies"]["unreachable"] == []
