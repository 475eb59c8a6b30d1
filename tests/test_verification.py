"""Verification: a corrupted body is never recorded as uploaded, never enters the cache.

Corruption is real: a fault-injecting proxy (`harness.proxy.FaultProxy`) sits between
the library and a real S3 server (rclone, moto) and flips one byte of a request or
response body, keeping its length. The store is always inspected with a boto3 client
that talks to the server directly, never through the proxy.

What the servers do with a corrupted body (observed; the tests pin it):

* single-part PUT (obstore; it signs ``x-amz-content-sha256`` but sends no Content-MD5):
  rclone and moto both store the bad body; our ETag check catches it
  (`VerificationError`) and deletes the object.
* multipart UploadPart (boto3 with Content-MD5): rclone rejects the part (BadDigest,
  translated to `VerificationError`); moto stores it and our part-ETag check catches it.
"""

from __future__ import annotations

import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

import repo
from harness.proxy import FaultProxy
from harness.s3servers import S3Server
from repo.stores.s3 import S3Store

DATA = bytes(range(256)) * 16  # 4 KiB, every byte value
MiB = 1024 * 1024

# The message of the VerificationError tells which guard caught a corrupted part.
PART_REJECTED_BY = {
    "rclone": "rejected a corrupted body",  # the server's Content-MD5 check (BadDigest)
    "moto": r"part \d+ of .* failed verification",  # our own check of the part's ETag
}


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def proxy(s3_server: S3Server) -> Iterator[FaultProxy]:
    with FaultProxy(s3_server.endpoint_url) as p:
        yield p


@pytest.fixture
def direct(s3_server: S3Server) -> Iterator[Any]:
    """A boto3 client talking to the S3 server itself, bypassing the proxy."""
    client = s3_server.client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.create_bucket("t-" + uuid.uuid4().hex[:16])


@pytest.fixture
def proxied_config(
    tmp_path: Path, sqlite_url: str, s3_server: S3Server, bucket: str, proxy: FaultProxy
) -> dict[str, str]:
    """A repo config whose S3 endpoint is the proxy in front of `s3_server`."""
    return {
        "local_root": str(tmp_path / "local"),
        "store": f"s3://{bucket}/prefix-{uuid.uuid4().hex[:8]}",
        "database": sqlite_url,
        "host_name": "test-host",
        "s3_endpoint_url": proxy.endpoint_url,
        "s3_access_key": s3_server.access_key,
        "s3_secret_key": s3_server.secret_key,
        "s3_region": s3_server.region,
    }


@pytest.fixture
def r(proxied_config: dict[str, str]) -> Iterator[repo.Repo]:
    with repo.Repo(config=proxied_config) as rp:
        yield rp


def _exists(client: Any, bucket: str, key: str) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def _object_bytes(client: Any, bucket: str, key: str) -> bytes:
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    try:
        data: bytes = body.read()
    finally:
        body.close()
    return data


def _published_with_cold_cache(r: repo.Repo, path: str) -> repo.RepoFile:
    """A committed, published file whose local copy has been removed."""
    rf = r.add_file(path).touch(DATA).publish()
    r.commit()
    shutil.rmtree(r.cache.cache_dir)
    return rf


def _assert_nothing_cached(r: repo.Repo, key: str) -> None:
    cached = r.cache.cache_path(key)
    assert not cached.exists()
    if cached.parent.exists():
        assert not [p.name for p in cached.parent.iterdir() if p.name.startswith(".part-")]


# ----------------------------------------------------------------- uploads


def test_corrupted_upload_body_is_never_recorded_as_uploaded(
    r: repo.Repo, proxy: FaultProxy, direct: Any, bucket: str
) -> None:
    rf = r.add_file("up/data.bin").touch(DATA)
    proxy.corrupt_request_bodies(method="PUT", count=1)
    with pytest.raises(repo.VerificationError) as err:
        rf.upload()
    assert proxy.fired("corrupt_request") == 1
    assert err.value.hint
    r.commit()
    assert r.file(rf.file_id).md5 is None
    assert not rf.uploaded
    assert not _exists(direct, bucket, rf.key)

    proxy.reset()
    rf.upload()
    assert rf.md5 == r.file(rf.file_id).md5 is not None
    assert _object_bytes(direct, bucket, rf.key) == DATA


def test_corrupted_multipart_part_fails_the_put_and_leaves_nothing(
    s3_server: S3Server, proxy: FaultProxy, direct: Any, bucket: str, tmp_path: Path
) -> None:
    store = S3Store(
        f"s3://{bucket}",
        endpoint_url=proxy.endpoint_url,
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        region=s3_server.region,
        multipart_threshold=5 * MiB,
        part_size=5 * MiB,
    )
    source = tmp_path / "big.bin"
    data = os.urandom(11 * MiB)  # three parts: 5 + 5 + 1 MiB
    source.write_bytes(data)
    key = f"mp/big-{uuid.uuid4().hex[:8]}.bin"
    try:
        proxy.corrupt_request_bodies(method="PUT", query="partNumber=", count=1)
        with pytest.raises(repo.VerificationError, match=PART_REJECTED_BY[s3_server.name]):
            store.put_file(key, source)
        assert proxy.fired("corrupt_request") == 1
        assert not _exists(direct, bucket, key)
        uploads = direct.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        assert [u["Key"] for u in uploads] == []  # the upload was aborted

        proxy.reset()
        result = store.put_file(key, source)
        assert result.multipart and result.size == len(data)
        assert _object_bytes(direct, bucket, key) == data
    finally:
        store.close()


# --------------------------------------------------------------- downloads


def test_corrupted_download_never_enters_the_cache(r: repo.Repo, proxy: FaultProxy) -> None:
    rf = _published_with_cold_cache(r, "down/data.bin")
    proxy.corrupt_response_bodies(method="GET", count=1)
    with pytest.raises(repo.VerificationError):
        rf.read_bytes()
    assert proxy.fired("corrupt_response") == 1
    _assert_nothing_cached(r, rf.key)

    proxy.reset()
    assert rf.read_bytes() == DATA
    assert r.cache.cache_path(rf.key).read_bytes() == DATA


def test_object_damaged_in_the_store_is_detected_on_download(
    r: repo.Repo, direct: Any, bucket: str
) -> None:
    rf = _published_with_cold_cache(r, "down/damaged.bin")
    damaged = bytes(b ^ 0x55 for b in DATA)
    direct.put_object(Bucket=bucket, Key=rf.key, Body=damaged)
    with pytest.raises(repo.VerificationError):
        rf.read_bytes()
    _assert_nothing_cached(r, rf.key)


def test_object_damaged_in_a_local_store_is_detected_on_download(
    tmp_path: Path, sqlite_url: str
) -> None:
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    config = {
        "local_root": str(tmp_path / "local"),
        "store": store_dir.as_uri(),
        "database": sqlite_url,
        "host_name": "test-host",
    }
    with repo.Repo(config=config) as r:
        rf = _published_with_cold_cache(r, "down/damaged.bin")
        obj = store_dir / rf.key
        obj.chmod(0o644)
        with open(obj, "r+b") as fp:
            fp.seek(len(DATA) // 2)
            byte = fp.read(1)
            fp.seek(len(DATA) // 2)
            fp.write(bytes([byte[0] ^ 0xFF]))
        with pytest.raises(repo.VerificationError):
            rf.read_bytes()
        _assert_nothing_cached(r, rf.key)


@pytest.mark.parametrize("store_url", ["file", "rclone", "moto"], indirect=True)
def test_truncated_cache_file_is_not_served(
    tmp_path: Path, sqlite_url: str, store_url: Any
) -> None:
    config = {
        "local_root": str(tmp_path / "local"),
        "store": store_url.url,
        "database": sqlite_url,
        "host_name": "test-host",
    }
    if store_url.is_s3:
        config.update(
            s3_endpoint_url=store_url.endpoint_url,
            s3_access_key=store_url.access_key,
            s3_secret_key=store_url.secret_key,
            s3_region=store_url.region,
        )
    with repo.Repo(config=config) as r:
        rf = _published_with_cold_cache(r, "cache/data.bin")
        assert rf.read_bytes() == DATA  # a verified download
        cached = r.cache.cache_path(rf.key)
        cached.chmod(0o644)
        with open(cached, "r+b") as fp:
            fp.truncate(len(DATA) // 2)
        assert rf.read_bytes() == DATA
        assert cached.read_bytes() == DATA
        assert stat.S_IMODE(cached.stat().st_mode) & 0o222 == 0  # read-only again
