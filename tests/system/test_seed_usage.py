"""The seed's "Typical usage" and the core contract, on every catalog and store."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from typing import Any

import pytest

import repo


def test_seed_typical_usage_works_as_written(repo_config: dict[str, str]) -> None:
    # The seed's example, with the config passed explicitly instead of ~/.repo_cfg.
    r = repo.Repo(config=repo_config)
    try:
        rf = r.add_file()
        rf.touch("this is some data that I want to write in my file")
        rf.publish()
        rf.tag("abc")
        rf.tag_date(datetime(2026, 11, 25, 18, 30), type="hour")
        r.commit()
        path = rf.path
    finally:
        r.close()

    with repo.Repo(config=repo_config) as other:
        got = other.get_file(path)
        assert got is not None
        assert got.file_id == rf.file_id
        assert got.state == "published"
        assert got.read_text() == "this is some data that I want to write in my file"
        assert got.tags == sorted(
            ["abc", "hour=2026-11-25T18", "day=2026-11-25", "week=2026-W48", "month=2026-11"]
        )
        assert [f.file_id for f in other.find(all=["abc", "day=2026-11-25"])] == [rf.file_id]


def test_published_file_carries_its_catalog_facts(repo: repo.Repo) -> None:
    rf = repo.add_file("reports/daily.csv")
    rf.touch(b"a,b\n1,2\n")
    assert rf.state == "unpublished"
    assert rf.md5 is None
    assert rf.size is None
    rf.publish()
    assert rf.state == "published"
    import hashlib

    assert rf.md5 == hashlib.md5(b"a,b\n1,2\n").hexdigest()
    assert rf.size == 8
    assert rf.origin == "test-host"
    assert rf.bucket == repo.store.bucket
    assert rf.key.startswith(repo.store.key_prefix + "data/reports/daily.csv~")
    assert rf.created_at <= rf.uploaded_at <= rf.published_at  # type: ignore[operator]
    assert rf.created_at.tzinfo is not None
    assert rf.expired_at is None


def test_open_for_writing_then_reading(repo: repo.Repo) -> None:
    rf = repo.add_file("notes/a.txt")
    with rf.open("w") as fp:
        fp.write("héllo\n")
    with rf.open("a") as fp:
        fp.write("more\n")
    assert rf.read_text() == "héllo\nmore\n"  # readable before upload, on this host
    rf.upload()
    with rf.open() as fp:
        assert fp.read() == "héllo\nmore\n"
    with rf.open("rb") as fp:
        assert fp.read() == "héllo\nmore\n".encode()


def test_local_copy_is_read_only_after_upload(repo: repo.Repo) -> None:
    rf = repo.add_file("x/y.bin").touch(b"\x00\x01")
    rf.upload()
    mode = os.stat(rf.local_path).st_mode
    assert not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def test_upload_is_a_noop_when_already_uploaded(repo: repo.Repo) -> None:
    rf = repo.add_file("x/once.txt").touch("once")
    rf.upload()
    first = (rf.md5, rf.uploaded_at)
    rf.upload()
    assert (rf.md5, rf.uploaded_at) == first


def test_another_host_reads_through_its_own_verified_cache(
    repo_config: dict[str, str], tmp_path: Any
) -> None:
    with repo.Repo(config=repo_config) as writer:
        rf = writer.add_file("shared/data.bin")
        rf.touch(os.urandom(70_000))
        rf.publish()
        expected = rf.read_bytes()

    reader_cfg = dict(repo_config, host_name="reader", local_root=str(tmp_path / "reader"))
    with repo.Repo(config=reader_cfg) as reader:
        got = reader.get_file("shared/data.bin")
        assert got is not None
        assert got.read_bytes() == expected
        assert str(got.local_path).startswith(str(tmp_path / "reader"))
        assert sorted(h.host for h in got.hosts) == ["reader", "test-host"]


def test_context_manager_commits_on_success_and_rolls_back_on_error(
    repo_config: dict[str, str],
) -> None:
    with repo.Repo(config=repo_config) as r:
        r.add_file("kept.txt").touch("k").publish()

    def publish_then_fail() -> None:
        with repo.Repo(config=repo_config) as r:
            r.add_file("dropped.txt").touch("d").publish()
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        publish_then_fail()
    with repo.Repo(config=repo_config) as r:
        assert r.get_file("kept.txt") is not None
        assert r.get_file("dropped.txt") is None
        assert r.history("dropped.txt") == []


def test_changes_are_invisible_to_others_until_commit(local_config: dict[str, str]) -> None:
    a = repo.Repo(config=local_config)
    rf = a.add_file("pending.txt").touch("p").publish()
    a.commit()
    rf2 = a.add_file("pending.txt").touch("p2").publish()
    b = repo.Repo(config=local_config)
    try:
        current = b.get_file("pending.txt")
        assert current is not None
        assert current.file_id == rf.file_id
        a.commit()
        current = b.get_file("pending.txt")
        assert current is not None
        assert current.file_id == rf2.file_id
    finally:
        a.close()
        b.close()


def test_list_matches_globs_on_current_files(repo: repo.Repo) -> None:
    for path in (
        "reports/a.csv",
        "reports/b.csv",
        "reports/2026/c.csv",
        "other/d.csv",
        "Reports/e.csv",
    ):
        repo.add_file(path).touch(path).publish()
    repo.add_file("reports/unpublished.csv").touch("u")
    assert [f.path for f in repo.list("reports/*")] == [
        "reports/2026/c.csv",
        "reports/a.csv",
        "reports/b.csv",
    ]
    assert [f.path for f in repo.list("reports/?.csv")] == ["reports/a.csv", "reports/b.csv"]
    assert [f.path for f in repo.list("*[de].csv")] == ["Reports/e.csv", "other/d.csv"]
    assert [f.path for f in repo.list("100%_*")] == []


def test_history_is_newest_first(local_config: dict[str, str]) -> None:
    with repo.Repo(config=local_config) as r:
        ids = []
        for i in range(3):
            ids.append(r.add_file("h.txt").touch(str(i)).publish().file_id)
        hist = r.history("h.txt")
        assert [f.file_id for f in hist] == ids[::-1]
        assert [f.state for f in hist] == ["published", "expired", "expired"]


def test_file_by_id_and_missing_id(local_config: dict[str, str]) -> None:
    with repo.Repo(config=local_config) as r:
        rf = r.add_file("by/id.txt").touch("x")
        assert r.file(rf.file_id).path == "by/id.txt"
        with pytest.raises(repo.NotFoundError):
            r.file(10**9)


def test_date_tags_use_utc(local_config: dict[str, str]) -> None:
    from datetime import timedelta, timezone

    with repo.Repo(config=local_config) as r:
        rf = r.add_file("d.txt").touch("d")
        rf.tag_date(datetime(2027, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=3))), type="hour")
        assert rf.tags == ["day=2026-12-31", "hour=2026-12-31T22", "month=2026-12", "week=2026-W53"]


def test_repo_without_config_uses_the_embedded_default(tmp_path: Any) -> None:
    # conftest points REPO_HOME at tmp_path/"home" and HOME at an empty directory.
    with repo.Repo() as r:
        assert r.config.is_embedded
        r.add_file("embedded.txt").touch("e").publish()
    home = tmp_path / "home"
    assert (home / "catalog.db").is_file()
    assert any((home / "store" / "data").iterdir())
    with repo.Repo() as r:
        got = r.get_file("embedded.txt")
        assert got is not None
        assert got.read_text() == "e"


@pytest.fixture(params=["rclone", "moto"])
def s3_repo(request: Any, tmp_path: Any, sqlite_url: str) -> Any:
    server = request.getfixturevalue(f"{request.param}_server")
    bucket = server.create_bucket(f"big-{os.urandom(6).hex()}")
    cfg = {
        "store": f"s3://{bucket}/pre",
        "s3_endpoint_url": server.endpoint_url,
        "s3_access_key": server.access_key,
        "s3_secret_key": server.secret_key,
        "local_root": str(tmp_path / "local"),
        "database": sqlite_url,
        "host_name": "big-writer",
    }
    r = repo.Repo(config=cfg)
    yield r, cfg
    r.close()


def test_large_file_goes_up_in_parallel_parts_and_comes_back_verified(
    s3_repo: Any, tmp_path: Any
) -> None:
    import hashlib
    import shutil

    r, cfg = s3_repo
    data = os.urandom(17 * 1024 * 1024 + 3)  # over the 16 MiB multipart threshold
    rf = r.add_file("big/blob.bin").touch(data).publish()
    r.commit()
    assert rf.md5 == hashlib.md5(data).hexdigest()
    assert rf.size == len(data)
    info = r.store.head(rf.key)
    assert info.size == len(data)
    assert info.metadata.get("repo-path") in ("big/blob.bin", None)  # rclone may drop it
    shutil.rmtree(r.cache.cache_dir)
    with repo.Repo(config=dict(cfg, local_root=str(tmp_path / "other"))) as other:
        got = other.get_file("big/blob.bin")
        assert got is not None
        assert got.read_bytes() == data


def test_seed_example_verbatim_with_a_home_config_file(
    postgres_server: Any, moto_server: Any, tmp_path: Any
) -> None:
    """~/.repo_cfg in the seed's format (database as an object), then the seed's code."""
    import json
    import uuid
    from pathlib import Path

    dbname = "seed_" + uuid.uuid4().hex[:12]
    postgres_server.create_database(dbname)
    bucket = moto_server.create_bucket("seed-" + uuid.uuid4().hex[:12])
    try:
        cfg = {
            "local_root": str(tmp_path / "mnt-repo"),
            "default_s3_bucket": bucket,
            "backup_s3_bucket": bucket,
            "s3_access_key": moto_server.access_key,
            "s3_secret_key": moto_server.secret_key,
            "s3_endpoint_url": moto_server.endpoint_url,
            "database": {
                "host": "127.0.0.1",
                "port": postgres_server.port,
                "user": "postgres",
                "password": "411B107B-A7ED-48AE-AE19-5BD427865041",
                "database": dbname,
            },
        }
        (Path.home() / ".repo_cfg").write_text(json.dumps(cfg, indent=4))

        # The seed's "Typical usage", with `now` spelled out.
        def now() -> datetime:
            return datetime.now(UTC)

        import repo as repo_module

        repo = repo_module.Repo()

        rf = repo.add_file()
        rf.touch("this is some data that I want to write in my file")
        rf.publish()
        rf.tag("abc")
        rf.tag_date(now(), type="hour")
        repo.commit()
        repo.close()

        with repo_module.Repo() as again:
            assert again.config.source == str(Path.home() / ".repo_cfg")
            found = again.find(all=["abc"])
            assert [f.file_id for f in found] == [rf.file_id]
            assert found[0].bucket == bucket
            assert found[0].read_text() == "this is some data that I want to write in my file"
    finally:
        postgres_server.drop_database(dbname)
