"""Large downloads as parallel ranges, through the fault proxy, into the cache.

Ranges land at their offsets in the cache's temporary file from several threads while
one thread hashes them in order (and, for ``get -o -``, writes them to the reader): a
range that breaks off is asked for again and the copy is still verified; one that keeps
failing fails the download, and the cache is left without the copy or any partial file.
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from typing import TYPE_CHECKING

import pytest

from harness.proxy import FaultProxy, Rule
from repo.cache import LocalCache
from repo.errors import RepoError
from repo.stores import s3_download, s3_http_ranges
from repo.stores.s3 import S3Store

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from harness.s3servers import S3Server

KiB = 1024
DATA = os.urandom(2 * 1024 * KiB + 777)  # eight ranges of 256 KiB and a short last one


@pytest.fixture(params=["rclone", "moto"])
def s3_server(request: pytest.FixtureRequest) -> S3Server:
    server: S3Server = request.getfixturevalue(f"{request.param}_server")
    return server


@pytest.fixture
def proxy(s3_server: S3Server) -> Iterator[FaultProxy]:
    with FaultProxy(s3_server.endpoint_url) as p:
        yield p


@pytest.fixture
def stored(
    s3_server: S3Server, proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[S3Store, str]]:
    """An S3 store behind the proxy holding `DATA`, downloaded as small ranges."""
    monkeypatch.setattr(s3_download, "RANGE_THRESHOLD", 1024 * KiB)
    monkeypatch.setattr(s3_download, "RANGE_PART", 128 * KiB)
    monkeypatch.setattr(s3_download, "FILE_RANGE_PART", 256 * KiB)
    monkeypatch.setattr(s3_download, "STREAM_CHUNK", 64 * KiB)
    monkeypatch.setattr("repo.stores.s3_retry.FIRST_BACKOFF_SECONDS", 0.01)
    bucket = s3_server.create_bucket("t-" + uuid.uuid4().hex[:16])
    store = S3Store(
        f"s3://{bucket}",
        endpoint_url=proxy.endpoint_url,
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        region=s3_server.region,
    )
    key = "data/big/ranged.bin~t1"
    source = tmp_path / "src.bin"
    source.write_bytes(DATA)
    store.put_file(key, source)
    try:
        yield store, key
    finally:
        store.close()


def _leftovers(cache: LocalCache) -> list[str]:
    return [p.name for p in cache.cache_dir.rglob("*") if p.is_file()]


def test_download_into_the_cache_for_a_reader_is_verified_and_in_order(
    stored: tuple[S3Store, str], tmp_path: Path
) -> None:
    store, key = stored
    cache = LocalCache(tmp_path / "local")
    reader = io.BytesIO()
    seen: list[int] = []
    path = cache.download(
        store, key, md5=hashlib.md5(DATA).hexdigest(), size=len(DATA), tee=reader,
        progress=seen.append,
    )  # fmt: skip
    assert path.read_bytes() == DATA
    assert reader.getvalue() == DATA
    assert sum(seen) == len(DATA)
    assert _leftovers(cache) == [path.name]


@pytest.mark.parametrize("fault", ["truncate", "reset"])
def test_a_range_that_breaks_off_once_is_fetched_again(
    stored: tuple[S3Store, str],
    s3_server: S3Server,
    proxy: FaultProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
) -> None:
    store, key = stored
    cache = LocalCache(tmp_path / "local")
    monkeypatch.setattr(s3_download, "RANGE_CONCURRENCY", 1)  # requests in a known order
    # The first GET is the whole object (only its first part is used); then the first
    # range: on rclone, obstore's attempt (refused: rclone answers with status 200) and
    # the plain-HTTP one. The fault hits that first range once, half-way through its answer.
    first_range = 3 if s3_server.name == "rclone" else 2
    arm = proxy.truncate_responses if fault == "truncate" else proxy.reset_responses
    rule = arm(method="GET", path=key, count=first_range)
    reader = io.BytesIO()
    path = cache.download(store, key, md5=hashlib.md5(DATA).hexdigest(), size=len(DATA), tee=reader)
    assert rule.fired == first_range
    assert path.read_bytes() == DATA
    assert reader.getvalue() == DATA


def _arm_after_first_part(arm: Callable[[], Rule]) -> Callable[[int], None]:
    """A progress callback that arms `arm`'s rule when the first bytes arrive: after the
    whole-object GET whose first part starts the download, so only ranges meet it."""
    armed: list[Rule] = []

    def progress(_n: int) -> None:
        if not armed:
            armed.append(arm())

    return progress


@pytest.mark.parametrize("status", [500, 503])
def test_a_range_refused_with_a_passing_error_is_asked_again(
    stored: tuple[S3Store, str],
    proxy: FaultProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
) -> None:
    store, key = stored
    monkeypatch.setattr(s3_download, "RANGE_CONCURRENCY", 1)
    cache = LocalCache(tmp_path / "local")
    rules: list[Rule] = []

    def arm() -> Rule:
        rules.append(proxy.fail_requests(status, method="GET", path=key, count=1))
        return rules[-1]

    md5 = hashlib.md5(DATA).hexdigest()
    path = cache.download(store, key, md5=md5, size=len(DATA), progress=_arm_after_first_part(arm))
    assert rules[0].fired == 1
    assert path.read_bytes() == DATA


def test_a_range_refused_for_good_fails_at_once_and_says_why(
    stored: tuple[S3Store, str],
    s3_server: S3Server,
    proxy: FaultProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, key = stored
    monkeypatch.setattr(s3_download, "RANGE_CONCURRENCY", 1)
    store.get_into(key, io.BytesIO())  # rclone's ranges are known to come with status 200
    cache = LocalCache(tmp_path / "local")
    rules: list[Rule] = []

    def arm() -> Rule:
        rules.append(proxy.fail_requests(403, method="GET", path=key, count=None))
        return rules[-1]

    md5 = hashlib.md5(DATA).hexdigest()
    with pytest.raises(RepoError) as caught:
        cache.download(store, key, md5=md5, size=len(DATA), progress=_arm_after_first_part(arm))
    assert rules[0].fired == 1  # not asked again: a refusal is an answer
    if s3_server.name == "rclone":  # the plain-HTTP ranges' own message
        assert "answered 403 (AccessDenied)" in caught.value.message
    assert _leftovers(cache) == []


@pytest.mark.parametrize(
    ("env", "plain"),
    [
        ({}, True),
        ({"HTTP_PROXY": "http://proxy.invalid:3128"}, False),
        ({"http_proxy": "http://proxy.invalid:3128", "no_proxy": "127.0.0.1"}, True),
        ({"HTTPS_PROXY": "http://proxy.invalid:3128"}, True),  # the endpoint is http://
    ],
)
def test_plain_http_ranges_step_aside_for_a_proxy_in_the_environment(
    stored: tuple[S3Store, str], monkeypatch: pytest.MonkeyPatch, env: dict[str, str], plain: bool
) -> None:
    store, _key = stored
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert s3_http_ranges.usable(store._conn) is plain


def test_a_range_that_keeps_failing_fails_and_leaves_nothing_in_the_cache(
    stored: tuple[S3Store, str], proxy: FaultProxy, tmp_path: Path
) -> None:
    store, key = stored
    cache = LocalCache(tmp_path / "local")
    proxy.truncate_responses(method="GET", path=key, count=None)
    with pytest.raises(RepoError):
        cache.download(store, key, md5=hashlib.md5(DATA).hexdigest(), size=len(DATA))
    assert _leftovers(cache) == []
    assert cache.entries() == []


def test_ranges_with_bytes_other_than_recorded_never_enter_the_cache(
    stored: tuple[S3Store, str], tmp_path: Path
) -> None:
    store, key = stored
    cache = LocalCache(tmp_path / "local")
    reader = io.BytesIO()
    with pytest.raises(RepoError, match="md5"):
        cache.download(store, key, md5="0" * 32, size=len(DATA), tee=reader)
    assert reader.getvalue() == DATA  # the reader saw the bytes, in order; the cache kept none
    assert _leftovers(cache) == []
