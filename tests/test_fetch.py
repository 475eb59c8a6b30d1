"""`Repo.fetch` and `repo fetch`: many versions into a host's cache, verified, in parallel."""

from __future__ import annotations

import hashlib
import io
import json
import os
from typing import TYPE_CHECKING, Any

import pytest

import repo
from conftest import CliRun, last_read, recorded_statements
from harness.proxy import FaultProxy
from repo import ConflictError, StateError, UsageError, VerificationError
from repo.cache import USED_RESOLUTION_SECONDS

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from harness.s3servers import S3Server


def _content(i: int) -> bytes:
    return f"file number {i}\n".encode() * (i + 1)


@pytest.fixture
def other_host(repo_config: dict[str, str], tmp_path: Path) -> Iterator[repo.Repo]:
    """A second host: same catalog and store, its own empty cache."""
    config = dict(repo_config, local_root=str(tmp_path / "other"), host_name="other-host")
    with repo.Repo(config=config) as r:
        yield r


def _publish_set(r: repo.Repo, n: int) -> dict[str, bytes]:
    data = {f"set/{i:02d}.txt": _content(i) for i in range(n)}
    for path, body in data.items():
        r.add(path, io.BytesIO(body), tags=["set"], publish=True)
    r.add("elsewhere.txt", io.BytesIO(b"not in the set"), publish=True)
    r.commit()
    return data


def _cached_files(root: Path) -> dict[str, bytes]:
    cache = root / "cache"
    return {
        str(p.relative_to(cache)): p.read_bytes()
        for p in cache.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


def test_fetch_downloads_what_is_missing_then_serves_hits(
    repo: repo.Repo, other_host: repo.Repo, tmp_path: Path
) -> None:
    data = _publish_set(repo, 12)
    found = other_host.find(all=["set"])
    assert sorted(f.path for f in found) == sorted(data)

    first = other_host.fetch(found, workers=4)
    assert (first.downloaded, first.cached) == (12, 0)
    assert first.bytes == sum(len(b) for b in data.values())
    cached = _cached_files(tmp_path / "other")
    assert sorted(cached.values()) == sorted(data.values())  # each verified copy, once

    again = other_host.fetch(other_host.find(all=["set"]))
    assert (again.downloaded, again.cached) == (0, 12)
    for rf in found:
        assert rf.read_bytes() == data[rf.path]
        assert "other-host" in {h.host for h in rf.hosts}


def test_a_warm_fetch_writes_nothing_to_the_catalog(
    local_config: dict[str, str], tmp_path: Path
) -> None:
    with repo.Repo(config=dict(local_config, local_root=str(tmp_path / "w"))) as writer:
        _publish_set(writer, 8)
    with repo.Repo(config=dict(local_config, local_root=str(tmp_path / "r"))) as r:
        assert r.fetch(r.find(all=["set"])).downloaded == 8
        found = r.find(all=["set"])
        r.commit()
        with recorded_statements(r) as seen:
            assert r.fetch(found).cached == 8
            assert seen == []
            r.commit()
            # Copies read less than a minute ago: the catalog's access times are as
            # fresh as the copies' own, and nothing is written even at commit.
            assert not any("file_hosts" in s for s in seen)
            for rf in found:
                last_read(r, rf, seconds_ago=3 * USED_RESOLUTION_SECONDS)
            assert r.fetch(found).cached == 8
            assert seen == []  # hits: access times wait for the periodic flush
            r.commit()
        assert any("file_hosts" in s for s in seen)


def test_fetch_to_a_directory_writes_each_path_below_it(
    repo: repo.Repo, other_host: repo.Repo, tmp_path: Path
) -> None:
    data = _publish_set(repo, 5)
    out = tmp_path / "out"
    report = other_host.fetch(other_host.find(all=["set"]), dest=out)
    assert {p: t.read_bytes() for p, t in report.written.items()} == data
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == sorted(data)
    with pytest.raises(ConflictError):
        other_host.fetch(other_host.find(all=["set"]), dest=out)
    other_host.fetch(other_host.find(all=["set"]), dest=out, overwrite=True)


def test_fetch_to_a_directory_checks_every_place_before_downloading_anything(
    repo: repo.Repo, other_host: repo.Repo, tmp_path: Path
) -> None:
    _publish_set(repo, 6)
    out = tmp_path / "out"
    (out / "set").mkdir(parents=True)
    (out / "set" / "04.txt").write_bytes(b"mine")
    with pytest.raises(ConflictError, match=r"04\.txt already exists"):
        other_host.fetch(other_host.find(all=["set"]), dest=out)
    assert _cached_files(tmp_path / "other") == {}
    assert sorted(p.name for p in (out / "set").iterdir()) == ["04.txt"]
    assert (out / "set" / "04.txt").read_bytes() == b"mine"


def test_fetch_to_a_directory_writes_files_as_any_new_file_and_leaves_no_temporaries(
    repo: repo.Repo, other_host: repo.Repo, tmp_path: Path
) -> None:
    data = _publish_set(repo, 4)
    out = tmp_path / "out"
    old = os.umask(0o027)
    try:
        report = other_host.fetch(other_host.find(all=["set"]), dest=out)
    finally:
        os.umask(old)
    assert list(report.written) == sorted(data)
    for path, target in report.written.items():
        assert target == out / path
        assert target.read_bytes() == data[path]
        assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in (out / "set").iterdir()) == [f"{i:02d}.txt" for i in range(4)]


def test_fetch_to_a_directory_writes_large_versions_from_their_cached_copy(
    repo: repo.Repo, other_host: repo.Repo, tmp_path: Path
) -> None:
    from repo.cache import SMALL_DOWNLOAD_MAX

    big = os.urandom(SMALL_DOWNLOAD_MAX + 12345)
    repo.add("big/one.bin", io.BytesIO(big), tags=["big"], publish=True)
    repo.add("big/two.txt", io.BytesIO(b"small"), tags=["big"], publish=True)
    repo.commit()
    report = other_host.fetch(other_host.find(all=["big"]), dest=tmp_path / "out")
    assert report.downloaded == 2
    assert (tmp_path / "out" / "big" / "one.bin").read_bytes() == big
    assert (tmp_path / "out" / "big" / "two.txt").read_bytes() == b"small"
    cached = _cached_files(tmp_path / "other")
    assert sorted(cached.values(), key=len) == [b"small", big]


def test_fetch_to_a_directory_never_copies_out_a_damaged_cached_copy(
    repo: repo.Repo, other_host: repo.Repo, tmp_path: Path
) -> None:
    data = _publish_set(repo, 3)
    found = other_host.find(all=["set"])
    assert other_host.fetch(found).downloaded == 3
    damaged = next(f for f in found if f.path == "set/02.txt")
    copy = tmp_path / "other" / "cache" / damaged.key
    copy.chmod(0o600)
    copy.write_bytes(b"X" * len(data["set/02.txt"]))  # same size: only the md5 tells
    report = other_host.fetch(found, dest=tmp_path / "out")
    assert report.cached == 3
    assert {p: t.read_bytes() for p, t in report.written.items()} == data
    assert copy.read_bytes() == data["set/02.txt"]  # downloaded again, verified


def test_fetch_refuses_versions_without_content_and_two_versions_of_a_path_to_one_dir(
    local_repo_pair: tuple[repo.Repo, Path],
) -> None:
    r, tmp = local_repo_pair
    empty = r.add_file("never-uploaded.txt")
    with pytest.raises(StateError):
        r.fetch([empty])
    one = r.add("twice.txt", io.BytesIO(b"one"), publish=True)
    two = r.add("twice.txt", io.BytesIO(b"two"), publish=True)
    with pytest.raises(UsageError):
        r.fetch([one, two], dest=tmp / "out")
    assert not (tmp / "out").exists()
    with pytest.raises(UsageError):
        r.fetch([one], workers=0)


@pytest.fixture
def local_repo_pair(
    local_config: dict[str, str], tmp_path: Path
) -> Iterator[tuple[repo.Repo, Path]]:
    with repo.Repo(config=local_config) as r:
        yield r, tmp_path


def test_a_damaged_object_fails_the_fetch_and_never_enters_the_cache(
    tmp_path: Path, sqlite_url: str, s3_server: S3Server
) -> None:
    bucket = s3_server.create_bucket("fetch-" + os.urandom(6).hex())
    base: dict[str, Any] = {
        "store": f"s3://{bucket}",
        "database": sqlite_url,
        "s3_access_key": s3_server.access_key,
        "s3_secret_key": s3_server.secret_key,
        "s3_region": s3_server.region,
    }
    with repo.Repo(
        config=dict(base, local_root=str(tmp_path / "a"), s3_endpoint_url=s3_server.endpoint_url)
    ) as writer:
        _publish_set(writer, 6)
    with (
        FaultProxy(s3_server.endpoint_url) as proxy,
        repo.Repo(
            config=dict(base, local_root=str(tmp_path / "b"), s3_endpoint_url=proxy.endpoint_url)
        ) as reader,
    ):
        found = reader.find(all=["set"])
        proxy.corrupt_response_bodies(method="GET", path="03.txt")
        with pytest.raises(VerificationError):
            reader.fetch(found, workers=2)
        assert proxy.fired("corrupt_response") >= 1
        cached = _cached_files(tmp_path / "b")
        good = {hashlib.md5(b).hexdigest() for b in cached.values()}
        assert good <= {f.md5 for f in found}  # whatever made it in is verified content
        assert _content(3) not in cached.values()
        proxy.reset()
        report = reader.fetch(found)
        assert report.downloaded + report.cached == 6
        assert sorted(_cached_files(tmp_path / "b").values()) == sorted(
            _content(i) for i in range(6)
        )


def test_cli_fetch_by_tag_and_pattern(
    cli: CliRun, repo_config: dict[str, str], tmp_path: Path
) -> None:
    writer = dict(repo_config, local_root=str(tmp_path / "writer"), host_name="writer")
    with repo.Repo(config=writer) as r:
        data = _publish_set(r, 3)
    out = tmp_path / "dl"
    first = cli("fetch", "--all", "set", "-o", str(out))
    assert first.exit_code == 0, first.output
    size = sum(len(b) for b in data.values())
    assert first.stdout == f"3 files, {size} B: 3 downloaded, 0 already cached; copied to {out}\n"
    assert (out / "set" / "01.txt").read_bytes() == data["set/01.txt"]

    second = cli("fetch", "set/0[02].txt", "--json")
    assert second.exit_code == 0, second.output
    doc = json.loads(second.stdout)
    assert [(f["path"], f["state"]) for f in doc.pop("files")] == [
        ("set/00.txt", "published"),
        ("set/02.txt", "published"),
    ]
    assert doc == {
        "file_count": 2,
        "downloaded": 0,
        "cached": 2,
        "bytes": len(data["set/00.txt"]) + len(data["set/02.txt"]),
        "written": {},
    }
    both = cli("fetch", "*", "--any", "set", "--exclude", "nothing")
    assert both.exit_code == 0
    assert both.stdout.startswith("3 files,")

    usage = cli("fetch")
    assert usage.exit_code == 2
    assert "say which files" in usage.output
