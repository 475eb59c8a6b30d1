"""`repo verify --cache`: a bit flipped in a cached copy on disk is found and replaced.

Reads from the cache check only the copy's size (documented in docs/how-it-works.md), so the
damage is served until this check runs; these tests pin both halves of that.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

import repo
from conftest import CliRun, write_config


@pytest.fixture
def config(tmp_path: Path, sqlite_url: str) -> dict[str, str]:
    store = tmp_path / "store"
    store.mkdir()
    return {
        "store": store.as_uri(),
        "database": sqlite_url,
        "local_root": str(tmp_path / "local"),
        "host_name": "test-host",
    }


def _flip_a_bit(path: Path, offset: int = 3) -> None:
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    path.chmod(0o444)


def _cached(config: dict[str, str], rf: repo.RepoFile) -> Path:
    return Path(config["local_root"], "cache", rf.key)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _publish(config: dict[str, str], files: dict[str, bytes]) -> dict[str, repo.RepoFile]:
    out = {}
    with repo.Repo(config) as r:
        for path, data in files.items():
            rf = r.add_file(path).touch(data)
            rf.publish()
            out[path] = rf
    return out


FILES = {"a.txt": b"alpha-content", "b.txt": b"bravo-content", "c.txt": b"charlie"}


def test_a_flipped_bit_is_served_by_reads_and_replaced_by_verify_cache(
    config: dict[str, str],
) -> None:
    made = _publish(config, FILES)
    cached = _cached(config, made["b.txt"])
    cache_root = Path(config["local_root"], "cache").resolve()
    assert cached.resolve().is_relative_to(cache_root)
    _flip_a_bit(cached)
    damaged = cached.read_bytes()
    with repo.Repo(config) as r:
        # A cache hit checks the size only: the damaged bytes are served.
        assert r.current("b.txt").read_bytes() == damaged != FILES["b.txt"]

        dry = r.verify_cache(repair=False)
        assert (dry.checked, dry.intact, dry.unknown, dry.ok) == (3, 2, 0, False)
        assert [f.path for f in dry.damaged] == ["b.txt"]
        assert dry.evicted == []
        assert dry.bytes == sum(map(len, FILES.values()))
        assert dry.damaged[0].reason == (
            f"the cached copy has md5 {_md5(damaged)} and 13 bytes, the catalog says md5 "
            f"{_md5(FILES['b.txt'])} and 13 bytes"
        )
        assert cached.read_bytes() == damaged  # a dry run changes nothing

        fixed = r.verify_cache()
        assert fixed.ok
        assert fixed.damaged == fixed.evicted == fixed.redownloaded
        assert [f.file_id for f in fixed.redownloaded] == [made["b.txt"].file_id]
        assert fixed.failed == []
        assert cached.read_bytes() == FILES["b.txt"]
        assert oct(cached.stat().st_mode & 0o777) == "0o400"
        assert r.current("b.txt").read_bytes() == FILES["b.txt"]

        again = r.verify_cache()
        assert (again.checked, again.intact, again.damaged, again.ok) == (3, 3, [], True)


def test_truncated_and_unknown_copies(config: dict[str, str]) -> None:
    made = _publish(config, FILES)
    cached = _cached(config, made["a.txt"])
    cached.chmod(0o644)
    cached.write_bytes(b"alp")
    stranger = Path(config["local_root"], "cache", "data", "zz.txt~0000000000000000000000000a")
    stranger.write_bytes(b"not in the catalog")
    with repo.Repo(config) as r:
        report = r.verify_cache()
        assert report.unknown == 1
        assert report.checked == 3
        assert report.ok
        assert "3 bytes" in report.damaged[0].reason
        assert [f.path for f in report.redownloaded] == ["a.txt"]
    assert cached.read_bytes() == FILES["a.txt"]
    assert stranger.read_bytes() == b"not in the catalog"  # left for `repo cache prune`


def test_damage_in_cache_and_store_is_evicted_and_reported(config: dict[str, str]) -> None:
    made = _publish(config, FILES)
    key = made["c.txt"].key
    _flip_a_bit(_cached(config, made["c.txt"]))
    _flip_a_bit(Path(config["store"].removeprefix("file://"), key), offset=0)
    with repo.Repo(config) as r:
        report = r.verify_cache()
        assert not report.ok
        assert report.redownloaded == []
        assert [f.path for f in report.evicted] == [f.path for f in report.failed] == ["c.txt"]
        assert report.failed[0].reason.startswith(f"download of {key!r} failed verification")
    assert not _cached(config, made["c.txt"]).exists()  # nothing damaged is left to serve


def test_cli_verify_cache_output(config: dict[str, str], tmp_path: Path) -> None:
    made = _publish(config, FILES)
    cli = CliRun(write_config(tmp_path / "cfg.json", config), tmp_path)
    clean = cli("verify", "--cache")
    assert (clean.exit_code, clean.stderr) == (0, "")
    assert clean.stdout == "checked 3 cached files on test-host (33 B): 3 intact, 0 damaged\n"

    cached = _cached(config, made["a.txt"])
    _flip_a_bit(cached)
    damaged = cached.read_bytes()
    reason = (
        f"the cached copy has md5 {_md5(damaged)} and 13 bytes, the catalog says md5 "
        f"{_md5(FILES['a.txt'])} and 13 bytes"
    )
    file_id = made["a.txt"].file_id
    dry = cli("verify", "--cache", "--dry-run")
    assert dry.exit_code == 1
    assert dry.stdout == (
        "checked 3 cached files on test-host (33 B): 2 intact, 1 damaged\n"
        "damaged (left in place: --dry-run):\n"
        "ID  PATH   REASON\n"
        f"{file_id}   a.txt  {reason}\n"
    )
    assert dry.stderr == (
        "Error: 1 damaged cached files\n"
        "Try: `repo verify --cache` without --dry-run replaces them\n"
    )
    doc = json.loads(cli("verify", "--cache", "--dry-run", "--json").stdout)
    finding = {"id": file_id, "path": "a.txt", "key": made["a.txt"].key, "reason": reason}
    assert doc == {
        "host": "test-host",
        "repair": False,
        "ok": False,
        "checked": 3,
        "intact": 2,
        "bytes": 33,
        "damaged": [finding],
        "evicted": [],
        "redownloaded": [],
        "failed": [],
        "unknown": 0,
    }
    fixed = cli("verify", "--cache")
    assert (fixed.exit_code, fixed.stderr) == (0, "")
    assert fixed.stdout == (
        "checked 3 cached files on test-host (33 B): 2 intact, 1 damaged\n"
        "damaged (evicted):\n"
        "ID  PATH   REASON\n"
        f"{file_id}   a.txt  {reason}\n"
        "downloaded 1 again from the store, verified\n"
    )
    assert cached.read_bytes() == FILES["a.txt"]
    for argv in (["--cache", "--deep"], ["--dry-run"]):
        bad = cli("verify", *argv)
        assert bad.exit_code == 2
        assert "Error:" in bad.stderr


def test_verify_cache_cost_is_one_read_of_the_cache(config: dict[str, str]) -> None:
    """Bytes hashed equal the cache's size: the whole cost is one sequential read."""
    data = os.urandom(3 * 1024 * 1024)
    with repo.Repo(config) as r:
        r.add_file("big.bin").touch(data).publish()
        r.commit()
        report = r.verify_cache()
        assert report.bytes == len(data) == r.cache_status().bytes
        assert report.ok
