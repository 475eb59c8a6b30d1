"""`repo replicate` between two buckets of one S3 server: the server copies (CopyObject),
and the copy counts only once checked (src/repo/stores/s3_copy.py, docs/replicas.md).

Both stores reach moto through the fault proxy, whose log shows what was asked of the
server: a PUT with ``x-amz-copy-source``, and no GET of the source object."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import pytest

from harness.proxy import FaultProxy
from replica_stores import bucket_of, new_bucket, three_store_config
from repo import Repo
from repo.stores.base import server_copy

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from harness.s3servers import S3Server

pytestmark = pytest.mark.s3

SMALL = b"small file\n" * 3
LARGER = bytes(range(256)) * 300


@pytest.fixture
def proxy(moto_server: S3Server) -> Iterator[FaultProxy]:
    with FaultProxy(moto_server.endpoint_url) as p:
        yield p


@pytest.fixture
def twins(
    tmp_path: Path, sqlite_url: str, moto_server: S3Server, proxy: FaultProxy
) -> dict[str, Any]:
    """`main` and `twin`: two buckets of one moto, same keys; `nas`, a directory."""
    (tmp_path / "nas").mkdir()
    return {
        "local_root": str(tmp_path / "local"),
        "database": sqlite_url,
        "host_name": "test-host",
        "store": f"s3://{new_bucket(moto_server)}/repo",
        "s3_endpoint_url": proxy.endpoint_url,
        "s3_access_key": moto_server.access_key,
        "s3_secret_key": moto_server.secret_key,
        "s3_region": moto_server.region,
        "stores": {
            "nas": (tmp_path / "nas").as_uri(),
            "twin": f"s3://{new_bucket(moto_server)}/copies",
        },
        "numcopies": 2,
    }


def _copied_on_server(proxy: FaultProxy) -> list[str]:
    """The request targets of every PUT that asked the server to copy."""
    return [t for m, t, h in proxy.received if m == "PUT" and "x-amz-copy-source" in h]


def _path(target: str) -> str:
    return unquote(target.split("?")[0])


def _gets(proxy: FaultProxy, key: str) -> int:
    return sum(1 for m, t, _h in proxy.received if m == "GET" and _path(t).endswith(key))


def _rows(r: Repo, file_id: int) -> list[tuple[str, str, str | None]]:
    return [
        (c.store, c.state, c.verified_with)
        for c in r.catalog.replicas_of([file_id]).get(file_id, [])
    ]


def _object(server: S3Server, url: str, key: str) -> tuple[bytes, dict[str, str]]:
    client = server.client()
    try:
        got = client.get_object(Bucket=bucket_of(url), Key=key)
        return got["Body"].read(), got["Metadata"]
    finally:
        client.close()


def test_two_buckets_of_one_server_copy_on_the_server_checked_by_etag(
    twins: dict[str, Any], proxy: FaultProxy, moto_server: S3Server
) -> None:
    config = {**twins, "stores": {"twin": twins["stores"]["twin"]}}
    with Repo(config) as r:
        a = r.add_file("a.txt").touch(SMALL).publish()
        b = r.add_file("dir/b.bin").touch(LARGER).publish()
        r.commit()
        recs = [r.catalog.get(f.file_id) for f in (a, b)]
        keys = [r.session.stores.copy_key(rec, "twin") for rec in recs]
        proxy.reset()
        report = r.replicate()
        assert (report.copied, report.bytes, report.ok) == (2, len(SMALL) + len(LARGER), True)
        assert [_rows(r, f.file_id) for f in (a, b)] == [[("twin", "verified", "etag")]] * 2
    copied = _copied_on_server(proxy)
    assert sorted(_path(t).split("/", 2)[-1] for t in copied) == sorted(keys)
    assert all(_gets(proxy, rec.key) == 0 for rec in recs)  # no byte came through here
    for rec, key, body in zip(recs, keys, (SMALL, LARGER), strict=True):
        copy, meta = _object(moto_server, config["stores"]["twin"], key)
        assert copy == body
        _own, own_meta = _object(moto_server, config["store"], rec.key)
        assert meta == own_meta
        assert meta["repo-path"] == rec.path


def test_a_store_on_another_server_is_still_streamed(
    tmp_path: Path,
    sqlite_url: str,
    moto_server: S3Server,
    rclone_server: S3Server,
    proxy: FaultProxy,
) -> None:
    config = three_store_config(tmp_path, sqlite_url, moto_server, rclone_server)
    config["s3_endpoint_url"] = proxy.endpoint_url  # `main` through the proxy; `second`
    with Repo(config) as r:
        f = r.add_file("a.txt").touch(SMALL).publish()
        r.commit()
        rec = r.catalog.get(f.file_id)
        main, second = (r.session.stores.named(n) for n in ("main", "second"))
        assert server_copy(second, main, len(SMALL)) is None  # another endpoint and keys
        proxy.reset()
        assert r.replicate().copied == 1
        assert _rows(r, f.file_id) == [("second", "verified", "etag")]
    assert _copied_on_server(proxy) == []
    assert _gets(proxy, rec.key) == 1


def test_with_etags_that_are_no_md5s_a_server_copy_is_read_back(
    twins: dict[str, Any], proxy: FaultProxy, moto_server: S3Server
) -> None:
    config = {**twins, "stores": {"twin": twins["stores"]["twin"]}}
    with Repo(config) as r:
        f = r.add_file("a.txt").touch(LARGER).publish()
        r.commit()
        key = r.session.stores.copy_key(r.catalog.get(f.file_id), "twin")
    proxy.imitate("opaque-etags")  # as SSE-KMS would: the copy's ETag proves nothing
    proxy.reset()
    with Repo(config) as r:
        assert r.replicate().copied == 1
        assert _rows(r, f.file_id) == [("twin", "verified", "read-back")]
    assert len(_copied_on_server(proxy)) == 1
    assert _gets(proxy, key) == 1  # the copy read back, the source never read
    assert _object(moto_server, config["stores"]["twin"], key)[0] == LARGER


def _damage(server: S3Server, url: str, key: str, body: bytes) -> None:
    """The object's bytes replaced, same length, behind the repository's back."""
    client = server.client()
    try:
        client.put_object(Bucket=bucket_of(url), Key=key, Body=body)
    finally:
        client.close()


def test_a_server_copy_of_a_corrupt_source_is_deleted_and_streamed_from_a_good_one(
    twins: dict[str, Any], proxy: FaultProxy, moto_server: S3Server, tmp_path: Path
) -> None:
    with Repo(twins) as r:  # numcopies 2: the copy goes to `nas`, streamed
        f = r.add_file("a.txt").touch(LARGER).publish()
        r.commit()
        assert r.replicate().copied == 1
        rec = r.catalog.get(f.file_id)
        key = r.session.stores.copy_key(rec, "twin")
    _damage(moto_server, twins["store"], rec.key, bytes(len(LARGER)))
    proxy.reset()
    with Repo({**twins, "numcopies": 3}) as r:
        report = r.replicate()
        assert (report.copied, report.ok) == (1, True)
        assert _rows(r, f.file_id) == [
            ("main", "lost", None),
            ("nas", "verified", "etag"),
            ("twin", "verified", "etag"),
        ]
    assert len(_copied_on_server(proxy)) == 1  # tried on the server first, found bad
    # The bad copy deleted (a batch delete), then the good bytes put.
    twin = bucket_of(twins["stores"]["twin"])
    writes = [(m, _path(t)) for m, t, _h in proxy.received if m in ("PUT", "POST", "DELETE")]
    at_key = [w for w in writes if w[1] in (f"/{twin}/{key}", f"/{twin}")]
    assert at_key == [("PUT", f"/{twin}/{key}"), ("POST", f"/{twin}"), ("PUT", f"/{twin}/{key}")]
    assert _object(moto_server, twins["stores"]["twin"], key)[0] == LARGER


def test_a_server_copy_of_the_only_copy_found_corrupt_counts_nothing(
    twins: dict[str, Any], proxy: FaultProxy, moto_server: S3Server
) -> None:
    config = {**twins, "stores": {"twin": twins["stores"]["twin"]}}
    with Repo(config) as r:
        f = r.add_file("a.txt").touch(SMALL).publish()
        r.commit()
        rec = r.catalog.get(f.file_id)
    _damage(moto_server, config["store"], rec.key, b"X" * len(SMALL))
    proxy.reset()
    with Repo(config) as r:
        report = r.replicate()
        assert (report.copied, report.ok, list(report.still_under)) == (0, False, [f.file_id])
        assert _rows(r, f.file_id) == [("main", "lost", None), ("twin", "writing", None)]
    assert len(_copied_on_server(proxy)) == 1
    client = moto_server.client()
    try:
        listed = client.list_objects_v2(
            Bucket=bucket_of(config["stores"]["twin"]), Prefix="copies/data/"
        )
    finally:
        client.close()
    assert [o["Key"] for o in listed.get("Contents", [])] == []  # the bad copy deleted


def test_a_server_copy_the_server_refuses_is_streamed_instead(
    twins: dict[str, Any], proxy: FaultProxy, moto_server: S3Server
) -> None:
    config = {**twins, "stores": {"twin": twins["stores"]["twin"]}}
    with Repo(config) as r:
        f = r.add_file("a.txt").touch(SMALL).publish()
        r.commit()
        rec = r.catalog.get(f.file_id)
        key = r.session.stores.copy_key(rec, "twin")
        proxy.reset()
        # As a server that cannot read the other bucket would: the copy refused.
        proxy.fail_requests(403, code="AccessDenied", method="PUT", path=key, count=1)
        assert r.replicate().copied == 1
        assert _rows(r, f.file_id) == [("twin", "verified", "etag")]
    assert proxy.fired() == 1
    assert len(_copied_on_server(proxy)) == 1
    assert _gets(proxy, rec.key) == 1  # then streamed through this host
    assert _object(moto_server, config["stores"]["twin"], key)[0] == SMALL
