"""Administration: create the repository, destroy its catalog, report its health.

Run against real catalogs and stores; unreachable services are closed ports on
127.0.0.1, so a failure is a refused connection and never a long network timeout.
"""

from __future__ import annotations

import io
import socket
import time
from typing import TYPE_CHECKING, Any

import pytest

import repo
from repo.catalog import SCHEMA_VERSION

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import StoreTarget

#: The most a status report may take when a service refuses connections.
STATUS_DEADLINE_S = 30.0


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound once, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _store_keys(config: dict[str, str]) -> set[str]:
    """The data objects (not the change journal, which every commit adds to)."""
    with repo.Repo(config=config) as r:
        return {info.key for info in r.store.list(r.store.key_prefix + "data/")}


def _s3_config(tmp_path: Path, store: StoreTarget, catalog_url: str) -> dict[str, str]:
    assert store.endpoint_url
    assert store.access_key
    assert store.secret_key
    assert store.region
    return {
        "local_root": str(tmp_path / "local"),
        "store": store.url,
        "database": catalog_url,
        "host_name": "test-host",
        "s3_endpoint_url": store.endpoint_url,
        "s3_access_key": store.access_key,
        "s3_secret_key": store.secret_key,
        "s3_region": store.region,
    }


# --------------------------------------------------------------- create_repository


def test_create_repository_creates_the_catalog_then_finds_it(repo_config: dict[str, Any]) -> None:
    first = repo.create_repository(repo_config)
    second = repo.create_repository(repo_config)

    assert first.created is True
    assert second.created is False
    assert first.schema_version == second.schema_version == SCHEMA_VERSION
    assert first.store == repo_config["store"]
    with repo.Repo(config=repo_config) as r:
        assert r.status() == {}


def test_create_repository_keeps_what_an_existing_catalog_holds(
    local_config: dict[str, Any],
) -> None:
    with repo.Repo(config=local_config) as r:
        r.add("kept.txt", io.BytesIO(b"kept"), publish=True)

    assert repo.create_repository(local_config).created is False

    with repo.Repo(config=local_config) as r:
        assert r.current("kept.txt").read_bytes() == b"kept"


@pytest.mark.parametrize("store_url", ["moto", "rclone"], indirect=True)
def test_create_repository_on_a_missing_bucket_is_a_store_error(
    tmp_path: Path, sqlite_url: str, store_url: StoreTarget
) -> None:
    missing = f"missing-{store_url.bucket}"
    config = _s3_config(tmp_path, store_url, sqlite_url)
    config["store"] = f"s3://{missing}/prefix"

    with pytest.raises(repo.StoreError) as err:
        repo.create_repository(config)

    assert missing in str(err.value)
    assert "does not exist" in str(err.value)
    assert err.value.hint


# ----------------------------------------------------------------- destroy_catalog


def test_destroy_catalog_forgets_every_version_and_leaves_the_store_alone(
    repo_config: dict[str, Any],
) -> None:
    with repo.Repo(config=repo_config) as r:
        r.add("a.txt", io.BytesIO(b"a1"), publish=True)
        r.add("a.txt", io.BytesIO(b"a2"), publish=True)  # expires a1
        r.add("b.txt", io.BytesIO(b"b"))
        r.add("c.txt", io.BytesIO(b"c"), publish=True).expire()
    objects_before = _store_keys(repo_config)
    assert len(objects_before) == 4

    forgotten = repo.destroy_catalog(repo_config)

    assert forgotten == 4
    with repo.Repo(config=repo_config) as fresh:  # recreates an empty catalog
        assert fresh.status() == {}
        assert fresh.list("*", state="all") == []
        data = fresh.store.key_prefix + "data/"
        assert {info.key for info in fresh.store.list(data)} == objects_before


def test_destroy_catalog_without_a_catalog_returns_none(local_config: dict[str, Any]) -> None:
    assert repo.destroy_catalog(local_config) is None


def test_destroy_catalog_twice_returns_none_the_second_time(local_config: dict[str, Any]) -> None:
    with repo.Repo(config=local_config) as r:
        r.add("a.txt", io.BytesIO(b"a"))

    assert repo.destroy_catalog(local_config) == 1
    assert repo.destroy_catalog(local_config) is None
    assert repo.create_repository(local_config).created is True


# ------------------------------------------------------------------- status_report


def test_status_report_is_ok_with_counts_and_cache_use(repo_config: dict[str, Any]) -> None:
    with repo.Repo(config=repo_config) as r:
        published = r.add("p.txt", io.BytesIO(b"published!"), publish=True)
        r.add("u.txt", io.BytesIO(b"pending"))

    report = repo.status_report(repo_config)

    assert report.ok
    assert report.catalog_error is None
    assert report.store_error is None
    assert report.schema_version == SCHEMA_VERSION
    assert report.host == "test-host"
    assert report.store == repo_config["store"]
    assert report.counts == {"published": (1, 10), "unpublished": (1, 7)}
    # Both uploads left their verified copies in this host's cache.
    assert (report.cache_files, report.cache_bytes) == (2, 17)
    assert report.cache_limit is None

    with repo.Repo(config=repo_config) as r:
        r.cache.evict(published.key)
        assert repo.status_report(repo_config).cache_files == 1
        assert r.current("p.txt").read_bytes() == b"published!"  # downloaded again

    again = repo.status_report(repo_config)
    assert (again.cache_files, again.cache_bytes) == (2, 17)


def test_status_report_on_an_empty_database_is_ok_without_a_schema(
    local_config: dict[str, Any],
) -> None:
    """Reachable but empty is healthy: the first command (or `repo create`) sets it up."""
    report = repo.status_report(local_config)

    assert report.ok
    assert report.schema_version is None
    assert report.counts == {}
    assert (report.cache_files, report.cache_bytes) == (0, 0)


def _unreachable_catalog(config: dict[str, str]) -> int:
    port = _closed_port()
    config.update(database=f"postgresql://repo:secret@127.0.0.1:{port}/catalog")
    return port


def test_status_report_with_the_catalog_unreachable_still_checks_the_store(
    tmp_path: Path, store_url: StoreTarget
) -> None:
    if store_url.is_s3:
        config = _s3_config(tmp_path, store_url, "sqlite:///unused.db")
    else:
        config = {"local_root": str(tmp_path / "local"), "store": store_url.url}
    port = _unreachable_catalog(config)

    started = time.monotonic()
    report = repo.status_report(config)
    elapsed = time.monotonic() - started

    assert not report.ok
    assert report.catalog_error is not None
    assert str(port) in report.catalog_error
    assert "secret" not in report.catalog_error
    assert "secret" not in report.catalog
    assert report.schema_version is None
    assert report.counts == {}
    assert report.store_error is None  # checked, and fine
    assert elapsed < STATUS_DEADLINE_S


def test_status_report_with_catalog_and_store_unreachable_reports_both(tmp_path: Path) -> None:
    store_port = _closed_port()
    config = {
        "local_root": str(tmp_path / "local"),
        "store": "s3://bucket/prefix",
        "s3_endpoint_url": f"http://127.0.0.1:{store_port}",
        "s3_access_key": "key",
        "s3_secret_key": "secret-key",
        "s3_region": "us-east-1",
    }
    catalog_port = _unreachable_catalog(config)

    started = time.monotonic()
    report = repo.status_report(config)
    elapsed = time.monotonic() - started

    assert report.catalog_error is not None
    assert str(catalog_port) in report.catalog_error
    assert report.store_error is not None
    assert str(store_port) in report.store_error
    assert "secret" not in f"{report.catalog_error} {report.store_error}"
    assert elapsed < STATUS_DEADLINE_S, f"status_report took {elapsed:.1f}s"


@pytest.mark.parametrize("store_url", ["moto"], indirect=True)
def test_status_report_with_the_store_unreachable_still_counts_the_catalog(
    tmp_path: Path, catalog_url: str, store_url: StoreTarget
) -> None:
    config = _s3_config(tmp_path, store_url, catalog_url)
    with repo.Repo(config=config) as r:
        r.add("p.txt", io.BytesIO(b"abc"), publish=True)
    port = _closed_port()
    config["s3_endpoint_url"] = f"http://127.0.0.1:{port}"

    started = time.monotonic()
    report = repo.status_report(config)
    elapsed = time.monotonic() - started

    assert not report.ok
    assert report.catalog_error is None
    assert report.counts == {"published": (1, 3)}
    assert report.store_error is not None
    assert f"127.0.0.1:{port}" in report.store_error
    assert (report.cache_files, report.cache_bytes) == (1, 3)
    assert elapsed < STATUS_DEADLINE_S, f"status_report took {elapsed:.1f}s"
