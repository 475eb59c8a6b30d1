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
  translated to `VerificationError`) and drops the whole multipart upload itself; moto
  stores the part and our part-ETag check catches it, and our abort removes the upload.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import socket
import stat
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

import repo
from harness.proxy import FaultProxy, flip_middle_byte
from repo.stores.s3 import S3Store

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from harness.s3servers import S3Server

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


@pytest.fixture
def mp_store(s3_server: S3Server, proxy: FaultProxy, bucket: str) -> Iterator[S3Store]:
    """An S3Store behind the proxy that goes multipart above 5 MiB, in 5 MiB parts."""
    store = S3Store(
        f"s3://{bucket}",
        endpoint_url=proxy.endpoint_url,
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        region=s3_server.region,
        multipart_threshold=5 * MiB,
        part_size=5 * MiB,
    )
    try:
        yield store
    finally:
        store.close()


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
    s3_server: S3Server,
    proxy: FaultProxy,
    direct: Any,
    bucket: str,
    tmp_path: Path,
    mp_store: S3Store,
) -> None:
    store = mp_store
    source = tmp_path / "big.bin"
    data = os.urandom(11 * MiB)  # three parts: 5 + 5 + 1 MiB
    source.write_bytes(data)
    key = f"mp/big-{uuid.uuid4().hex[:8]}.bin"
    proxy.corrupt_request_bodies(method="PUT", query="partNumber=", count=1)
    with pytest.raises(repo.VerificationError, match=PART_REJECTED_BY[s3_server.name]):
        store.put_file(key, source)
    assert proxy.fired("corrupt_request") == 1
    assert not _exists(direct, bucket, key)
    uploads = direct.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u["Key"] for u in uploads] == []  # aborted (by us, or by rclone itself)

    proxy.reset()
    result = store.put_file(key, source)
    assert result.multipart
    assert result.size == len(data)
    assert _object_bytes(direct, bucket, key) == data


def test_upload_whose_answer_was_lost_succeeds_on_retry(
    r: repo.Repo, proxy: FaultProxy, direct: Any, bucket: str
) -> None:
    rf = r.add_file("up/lost-answer.bin").touch(DATA)
    # Every answer lost (one lost answer is retried by the store: test_store_faults).
    proxy.drop_responses(method="PUT", count=None)
    with pytest.raises(repo.StoreError):
        rf.upload()
    assert proxy.fired("drop_response") >= 2
    assert r.file(rf.file_id).md5 is None
    assert _object_bytes(direct, bucket, rf.key) == DATA  # the server did store it

    proxy.reset()
    rf.upload()  # the object already there is exactly ours: kept, not a conflict
    assert rf.md5 == r.file(rf.file_id).md5 is not None
    assert _object_bytes(direct, bucket, rf.key) == DATA


def test_leftover_that_could_not_be_removed_is_never_overwritten(
    r: repo.Repo, proxy: FaultProxy, direct: Any, bucket: str, s3_server: S3Server
) -> None:
    rf = r.add_file("up/leftover.bin").touch(DATA)
    proxy.corrupt_request_bodies(method="PUT", count=1)
    proxy.fail_requests(503, method="POST", query="delete", count=None)
    proxy.fail_requests(503, method="DELETE", count=None)
    with pytest.raises(repo.VerificationError, match="left for garbage collection"):
        rf.upload()
    first_key = rf.key
    assert _exists(direct, bucket, first_key)  # the bad object could not be removed

    proxy.reset()
    rf.upload()
    assert r.file(rf.file_id).md5 == rf.md5 is not None
    assert r.file(rf.file_id).key == rf.key
    assert _object_bytes(direct, bucket, rf.key) == DATA
    if s3_server.name == "moto":
        # Objects are never overwritten: the version moved to a fresh key and the
        # leftover stays behind for garbage collection.
        assert rf.key != first_key
        assert _object_bytes(direct, bucket, first_key) != DATA
    else:
        # rclone ignores If-None-Match, so the retry simply replaced the leftover.
        assert rf.key == first_key


@pytest.mark.parametrize("code", ["BadDigest", "XAmzContentSHA256Mismatch"])
def test_server_side_checksum_rejection_is_a_verification_error(
    r: repo.Repo, proxy: FaultProxy, code: str
) -> None:
    rf = r.add_file("up/rejected.bin").touch(DATA)
    proxy.fail_requests(400, code=code, method="PUT", count=1)
    with pytest.raises(repo.VerificationError, match=code):
        rf.upload()
    assert r.file(rf.file_id).md5 is None
    rf.upload()
    assert rf.uploaded


def test_multipart_upload_whose_completion_answer_was_lost_is_kept(
    proxy: FaultProxy, direct: Any, bucket: str, tmp_path: Path, mp_store: S3Store
) -> None:
    store = mp_store
    source = tmp_path / "big.bin"
    data = os.urandom(6 * MiB)
    source.write_bytes(data)
    key = f"mp/lost-{uuid.uuid4().hex[:8]}.bin"
    proxy.drop_responses(method="POST", query="uploadId=", count=1)
    result = store.put_file(key, source)
    assert proxy.fired("drop_response") == 1
    assert result.multipart
    assert result.size == len(data)
    assert result.md5 == hashlib.md5(data).hexdigest()
    assert _object_bytes(direct, bucket, key) == data


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


# ------------------------------------------------- the fault proxy itself


class _Echo(BaseHTTPRequestHandler):
    """Answers every request with what it received, as JSON."""

    protocol_version = "HTTP/1.1"

    def _echo(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            body = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        seen = {
            "method": self.command,
            "target": self.path,
            "headers": [[k.lower(), v] for k, v in self.headers.items()],
            "body": body.decode("latin-1"),
        }
        answer = json.dumps(seen).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _echo

    def handle_expect_100(self) -> bool:
        if self.path != "/reject":
            return super().handle_expect_100()
        self.send_response(404)  # refuse before the body is sent, as servers may
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        return False

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def echo() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def _send(
    proxy: FaultProxy, method: str, target: str, body: Any = None, **headers: str
) -> tuple[int, bytes]:
    """Send one request through the proxy (headers exactly as given; a list body is sent
    chunked); return the status and the answer."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name.replace("_", "-"), value)
        if isinstance(body, list):
            conn.endheaders()
            for chunk in body:
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            conn.send(b"0\r\n\r\n")
        else:
            conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _echoed_body(proxy: FaultProxy, body: bytes) -> str:
    answer = _send(proxy, "PUT", "/k", body, Host="h", Content_Length=str(len(body)))[1]
    echoed: str = json.loads(answer)["body"]
    return echoed


def _proxy_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("fault-proxy-")]


def test_proxy_forwards_requests_unchanged(echo: str) -> None:
    with FaultProxy(echo) as proxy:
        target = "/b/k%20x?partNumber=2&uploadId=a%2Fb"
        status, answer = _send(
            proxy,
            "PUT",
            target,
            b"hello",
            Host="signed.example:9000",
            Content_Length="5",
            Expect="100-continue",
            X_Amz_Meta_A="1",
        )
        seen = json.loads(answer)
        assert status == 200
        assert (seen["method"], seen["target"], seen["body"]) == ("PUT", target, "hello")
        assert seen["headers"] == [
            ["host", "signed.example:9000"],
            ["content-length", "5"],
            ["expect", "100-continue"],
            ["x-amz-meta-a", "1"],
        ]
        status, answer = _send(
            proxy, "PUT", "/c", [b"abc", b"defg"], Host="h", Transfer_Encoding="chunked"
        )
        seen = json.loads(answer)
        assert seen["body"] == "abcdefg"
        assert seen["headers"] == [["host", "h"], ["transfer-encoding", "chunked"]]
        assert proxy.fired() == 0
        assert proxy.requests == [("PUT", target, 200), ("PUT", "/c", 200)]
        # An idle keep-alive connection must not keep the proxy from stopping.
        idle = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
        idle.request("GET", "/")
        idle.getresponse().read()
        assert _proxy_threads()
    idle.close()
    assert _proxy_threads() == []


def test_proxy_relays_an_answer_given_before_the_body(echo: str) -> None:
    with FaultProxy(echo) as proxy, socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        sock.sendall(
            b"PUT /reject HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        sock.settimeout(10)
        answer = b""
        while chunk := sock.recv(4096):  # the proxy closes: the body was never sent
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 404 ")
        assert b"\r\nConnection: close\r\n" in answer
        assert proxy.requests == [("PUT", "/reject", 404)]


def test_proxy_faults_fire_on_matching_requests_then_disarm(echo: str) -> None:
    with FaultProxy(echo) as proxy:
        proxy.fail_requests(503, method="GET", query="uploads", count=2)
        proxy.corrupt_request_bodies(method="PUT", count=1)
        proxy.corrupt_response_bodies(method="POST", count=1)
        assert _send(proxy, "GET", "/b?list", Host="h")[0] == 200
        for _ in range(2):
            status, answer = _send(proxy, "GET", "/b?uploads", Host="h")
            assert status == 503
            assert b"<Code>SlowDown</Code>" in answer
        assert _send(proxy, "GET", "/b?uploads", Host="h")[0] == 200
        assert _echoed_body(proxy, b"abcde") == "ab\x9cde"
        assert _echoed_body(proxy, b"abcde") == "abcde"
        corrupted = _send(proxy, "POST", "/k", b"x", Host="h", Content_Length="1")[1]
        clean = _send(proxy, "POST", "/k", b"x", Host="h", Content_Length="1")[1]
        assert len(corrupted) == len(clean)
        assert corrupted == flip_middle_byte(clean) != clean
        assert proxy.fired("status") == 2
        assert proxy.fired("corrupt_request") == proxy.fired("corrupt_response") == 1

        proxy.reset_connections(method="DELETE")
        with pytest.raises(ConnectionError):
            _send(proxy, "DELETE", "/k", Host="h")
        proxy.drop_responses(method="DELETE")
        with pytest.raises(ConnectionError):
            _send(proxy, "DELETE", "/k", Host="h")
        assert _send(proxy, "DELETE", "/k", Host="h")[0] == 200
        assert proxy.requests[-3:] == [("DELETE", "/k", 0)] * 2 + [("DELETE", "/k", 200)]
        proxy.delay_requests(0.3, method="HEAD")
        started = time.monotonic()
        assert _send(proxy, "HEAD", "/k", Host="h")[0] == 200
        assert time.monotonic() - started >= 0.3
        proxy.reset()
        assert proxy.fired() == 0
        assert proxy.requests == []
