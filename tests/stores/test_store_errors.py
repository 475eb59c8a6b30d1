"""Errors name the real cause (issue 15): a TLS mismatch is not a time-out, a 500 that
repeats is not an overload, a server without a feature or in another region says so.

Real moto behind the fault proxy where the server must misbehave; everything on
127.0.0.1. A failed DNS lookup cannot be provoked without asking a name server outside
this host, so its translation is checked on the texts the clients give (a pure function).
"""

from __future__ import annotations

import io
import uuid
from typing import TYPE_CHECKING, Any

import pytest

import repo
from conftest import CliRun, write_config
from harness.proxy import FaultProxy
from repo.stores.s3 import S3Store
from repo.stores.s3_errors import translate

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from harness.s3servers import MotoS3Server

MiB = 1024 * 1024
KEY = "data/x.txt~01zzzzzzzzzzzzzzzzzzzzzzzz"


def _store(server: MotoS3Server, bucket: str, endpoint_url: str) -> S3Store:
    return S3Store(
        f"s3://{bucket}",
        endpoint_url=endpoint_url,
        access_key=server.access_key,
        secret_key=server.secret_key,
        region=server.region,
        multipart_threshold=5 * MiB,
        part_size=5 * MiB,
        timeout=2,
    )


@pytest.fixture
def bucket(moto_server: MotoS3Server) -> str:
    return moto_server.create_bucket("t-" + uuid.uuid4().hex[:16])


@pytest.fixture
def proxy(moto_server: MotoS3Server) -> Iterator[FaultProxy]:
    with FaultProxy(moto_server.endpoint_url) as p:
        yield p


@pytest.fixture
def big(tmp_path: Path) -> Path:
    path = tmp_path / "big.bin"
    path.write_bytes(b"b" * (6 * MiB))  # multipart: boto3's path
    return path


def _one_line(err: pytest.ExceptionInfo[repo.RepoError]) -> str:
    message = err.value.message
    assert "\n" not in message
    return message


@pytest.mark.parametrize("operation", ["small put", "multipart put", "head", "list"])
def test_https_to_a_plain_http_server_is_a_tls_error_not_a_time_out(
    moto_server: MotoS3Server, bucket: str, big: Path, operation: str
) -> None:
    store = _store(moto_server, bucket, moto_server.endpoint_url.replace("http:", "https:"))
    run: dict[str, Callable[[], object]] = {
        "small put": lambda: store.put_bytes(KEY, b"x"),
        "multipart put": lambda: store.put_file(KEY, big),
        "head": lambda: store.head(KEY),
        "list": lambda: list(store.list("data/")),
    }
    try:
        with pytest.raises(repo.StoreError) as err:
            run[operation]()
    finally:
        store.close()
    assert "the TLS handshake with https://127.0.0.1:" in _one_line(err)
    assert "timed out" not in _one_line(err)
    assert err.value.hint is not None
    assert "https://" in err.value.hint


@pytest.mark.parametrize(
    ("status", "code", "said", "hint"),
    [
        (500, "InternalError", "the server answered InternalError on every attempt", "logs"),
        (501, "NotImplemented", "the server does not support this request", "feature"),
        (400, "AuthorizationHeaderMalformed", "the bucket is in another region", "s3_region"),
        (403, "RequestTimeTooSkewed", "this host's clock is too far", "NTP"),
    ],
)
def test_a_persistent_server_answer_names_its_cause(
    moto_server: MotoS3Server,
    bucket: str,
    proxy: FaultProxy,
    status: int,
    code: str,
    said: str,
    hint: str,
) -> None:
    store = _store(moto_server, bucket, proxy.endpoint_url)
    proxy.fail_requests(status, code=code, method="PUT", count=None)
    try:
        with pytest.raises(repo.StoreError) as err:
            store.put_bytes(KEY, b"x")
    finally:
        store.close()
    assert said in _one_line(err)
    assert err.value.hint is not None
    assert hint in err.value.hint
    assert "overloaded" not in err.value.hint


@pytest.mark.parametrize(
    "text",
    [
        # obstore (reqwest/hyper), botocore (urllib3) and the C library, as they say it.
        "error sending request | dns error: failed to lookup address information: "
        "Name or service not known",
        "Could not connect to the endpoint URL | Failed to resolve 's3.example.invalid' "
        "([Errno -2] Name or service not known)",
        "[Errno -3] Temporary failure in name resolution",
    ],
)
def test_a_failed_name_lookup_says_dns_not_time_out(text: str) -> None:
    cause = OSError(text)
    exc = RuntimeError("Generic S3 error: after 3 retries, retry_timeout: 6s")
    exc.__cause__ = cause
    err = translate(
        exc,
        KEY,
        bucket="b",
        endpoint_url="https://s3.example.invalid:9000",
        timeout=60,
    )
    assert isinstance(err, repo.StoreError)
    assert err.message == (
        f"S3 request for s3://b/{KEY} failed: cannot resolve the server's name "
        "'s3.example.invalid' (DNS lookup failed)"
    )
    assert err.hint == "check the host name in s3_endpoint_url, and this host's DNS"


def test_a_time_out_is_still_a_time_out() -> None:
    exc: Any = TimeoutError("operation timed out")
    err = translate(exc, KEY, bucket="b", endpoint_url="http://127.0.0.1:1", timeout=5)
    assert "timed out: no answer from the server within 5 s" in err.message


def test_gc_on_a_server_that_cannot_list_multipart_uploads_says_what_it_did_not_do(
    moto_server: MotoS3Server, bucket: str, proxy: FaultProxy, tmp_path: Path, sqlite_url: str
) -> None:
    config = {
        "local_root": str(tmp_path / "local"),
        "store": f"s3://{bucket}/p",
        "database": sqlite_url,
        "s3_endpoint_url": proxy.endpoint_url,
        "s3_access_key": moto_server.access_key,
        "s3_secret_key": moto_server.secret_key,
        "s3_region": moto_server.region,
        "unpublished_ttl_seconds": 0,
        "orphan_grace_seconds": 0,
    }
    with repo.Repo(config) as r:
        draft = r.add("draft.txt", io.BytesIO(b"draft"))
        r.commit()
        proxy.fail_requests(501, code="NotImplemented", method="GET", query="uploads", count=None)
        report = r.gc(orphans=True)
        assert proxy.fired() >= 1
        assert report.unpublished.keys == [draft.key]  # the rest of GC stood
        assert len(report.not_done) == 1
        assert report.not_done[0].startswith("leftovers of cut-off writes not cleaned: ")
        assert "does not support this request (NotImplemented)" in report.not_done[0]
        assert report.store_temporaries_removed == 0
    run = CliRun(write_config(tmp_path / "cfg.json", config), tmp_path)
    said = run("gc", "--orphans")
    assert (said.exit_code, said.stderr.count("\n")) == (0, 1)  # the warning, once
    assert said.stdout.splitlines()[-1].startswith(
        "not done: leftovers of cut-off writes not cleaned: S3 request for "
    )


def test_obstores_retry_timeout_setting_in_a_message_is_not_a_time_out() -> None:
    """A 404 whose body was cut off fails in a millisecond; obstore's report of it still
    names its ``retry_timeout`` setting (seen through the proxy's truncated answers)."""
    exc = RuntimeError(
        "Generic S3 error: Error performing GET http://127.0.0.1:1/b/k in 1.1ms - "
        "HTTP error: request or response body error | retry_timeout: 6s"
    )
    err = translate(exc, KEY, bucket="b", endpoint_url="http://127.0.0.1:1", timeout=60)
    assert "timed out" not in err.message
    assert err.message.endswith("HTTP error: request or response body error | retry_timeout: 6s")


@pytest.mark.parametrize(
    ("env", "proxy"),
    [
        ({}, None),
        ({"HTTP_PROXY": "http://me:secret@127.0.0.1:9"}, "http://me:***@127.0.0.1:9"),
        ({"http_proxy": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1"}, None),
    ],
)
def test_a_refused_connection_through_a_proxy_names_the_proxy_masked(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], proxy: str | None
) -> None:
    # The clients connect to the proxy, which may be what refused: the hint names it,
    # without its password.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    exc = ConnectionRefusedError("Connection refused (os error 111)")
    err = translate(exc, KEY, bucket="b", endpoint_url="http://127.0.0.1:1", timeout=60)
    assert err.message.endswith(
        "cannot connect to http://127.0.0.1:1 (connection refused, after retries)"
    )
    expected = "check that the S3 server at http://127.0.0.1:1 is running (s3_endpoint_url)"
    if proxy is not None:
        expected += f", and the proxy {proxy} the environment names (NO_PROXY skips it)"
    assert err.hint == expected
    assert "secret" not in (err.hint or "")
