"""Clear, one-line errors for what users get wrong, and nothing stored is harmed."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

import pytest

import repo
from repo import ImmutableError

if TYPE_CHECKING:
    from pathlib import Path

SECRET = "S3CR3T-do-not-print-4f1c"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _one_line(err: repo.RepoError) -> None:
    assert "\n" not in str(err)
    assert len(str(err)) < 400
    assert err.hint is None or "\n" not in err.hint


def test_uploaded_content_is_immutable(repo: repo.Repo) -> None:
    rf = repo.add_file("imm.txt").touch("v1")
    rf.upload()
    for attempt in (lambda: rf.open("w"), lambda: rf.open("ab"), lambda: rf.touch("more")):
        with pytest.raises(ImmutableError) as err:
            attempt()
        _one_line(err.value)
        assert err.value.hint
    assert rf.read_text() == "v1"


def test_bad_path_writes_nothing(local_config: dict[str, str]) -> None:
    with repo.Repo(config=local_config) as r:
        for bad in ["", "/abs", "a/../b", "a//b", "a/", "nul\x00byte", "x" * 300]:
            with pytest.raises(repo.InvalidPathError) as err:
                r.add_file(bad)
            _one_line(err.value)
        assert r.status() == {}
        assert r.find(published=False) == []


def test_bad_tag_writes_nothing(local_config: dict[str, str]) -> None:
    with repo.Repo(config=local_config) as r:
        rf = r.add_file("t.txt").touch("t")
        with pytest.raises(repo.InvalidTagError):
            rf.tag("good", " padded ")
        with pytest.raises(repo.InvalidTagError):
            rf.tag("x" * 256)
        with pytest.raises(repo.InvalidTagError):
            rf.tag_date("2026-11-25", type="day")  # type: ignore[arg-type]
        with pytest.raises(repo.InvalidTagError):
            rf.tag_date(__import__("datetime").datetime(2026, 1, 1), type="year")
        assert rf.tags == []


def test_open_with_an_unknown_mode_is_a_usage_error(local_config: dict[str, str]) -> None:
    with repo.Repo(config=local_config) as r:
        rf = r.add_file("m.txt").touch("m")
        with pytest.raises(repo.UsageError):
            rf.open("r+")


def test_reading_a_file_with_no_content_says_what_to_do(local_config: dict[str, str]) -> None:
    with repo.Repo(config=local_config) as r:
        rf = r.add_file("empty-yet.txt")
        with pytest.raises(repo.NotFoundError) as err:
            rf.read_bytes()
        assert err.value.hint
        with pytest.raises(repo.NotFoundError):
            rf.upload()
        assert rf.touch().upload().size == 0  # touch() with no data makes an empty file


def test_unreachable_postgres_is_a_catalog_error_without_the_password(tmp_path: Path) -> None:
    cfg = {
        "store": (tmp_path / "s").as_uri(),
        "local_root": str(tmp_path / "l"),
        "database": {
            "host": "127.0.0.1",
            "port": _free_port(),
            "user": "repo",
            "password": SECRET,
            "database": "repo",
        },
    }
    with pytest.raises(repo.CatalogError) as err:
        repo.Repo(config=cfg)
    _one_line(err.value)
    assert SECRET not in str(err.value)
    assert SECRET not in (err.value.hint or "")
    assert "database" in (err.value.hint or "")


def test_unreachable_s3_endpoint_is_a_store_error(tmp_path: Path, sqlite_url: str) -> None:
    cfg = {
        "store": "s3://nobucket/p",
        "s3_endpoint_url": f"http://127.0.0.1:{_free_port()}",
        "s3_access_key": "repotestaccesskey",
        "s3_secret_key": SECRET,
        "local_root": str(tmp_path / "l"),
        "database": sqlite_url,
    }
    with repo.Repo(config=cfg) as r:
        rf = r.add_file("x.txt").touch("x")
        with pytest.raises(repo.StoreError) as err:
            rf.upload()
        _one_line(err.value)
        assert SECRET not in str(err.value)
        assert err.value.hint
        assert "s3_endpoint_url" in err.value.hint
        assert r.file(rf.file_id).md5 is None


def _s3_config(
    server: Any, store: str, secret: str, tmp_path: Path, sqlite_url: str
) -> dict[str, str]:
    return {
        "store": store,
        "s3_endpoint_url": server.endpoint_url,
        "s3_access_key": server.access_key,
        "s3_secret_key": secret,
        "local_root": str(tmp_path / "l"),
        "database": sqlite_url,
    }


def test_wrong_credentials_are_a_store_error_naming_the_fix(
    tmp_path: Path, sqlite_url: str, s3_server: Any, s3_bucket: str
) -> None:
    if s3_server.name == "moto":
        pytest.skip("moto accepts any credentials")
    cfg = _s3_config(s3_server, f"s3://{s3_bucket}/p", SECRET, tmp_path, sqlite_url)
    with repo.Repo(config=cfg) as r:
        rf = r.add_file("x.txt").touch("x")
        with pytest.raises(repo.StoreError) as err:
            rf.upload()
        _one_line(err.value)
        assert SECRET not in str(err.value)
        assert "s3_secret_key" in (err.value.hint or "")


def test_missing_bucket_is_a_store_error(tmp_path: Path, sqlite_url: str, s3_server: Any) -> None:
    cfg = _s3_config(
        s3_server, "s3://no-such-bucket-here/p", s3_server.secret_key, tmp_path, sqlite_url
    )
    with repo.Repo(config=cfg) as r:
        rf = r.add_file("x.txt").touch("x")
        with pytest.raises(repo.StoreError) as err:
            rf.upload()
        _one_line(err.value)
        assert r.file(rf.file_id).md5 is None
