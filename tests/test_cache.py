"""The per-host cache: its size limit and LRU eviction, readers that hold an evicted file
open, the catalog's record of which hosts hold which files, prune/clear/status, the list
of hosts, and the `repo cache` and `repo host` commands.

A "host" here is a `Repo` with its own ``host_name`` and ``local_root``; hosts share one
catalog and one store. Files are published by a writer host (whose uploads land in its
own cache) and read by other hosts, so a reader's cache only fills by downloading.
Cache use is measured by walking the cache directory, never through `cache_status()`,
which would also reset the cache's in-memory tally.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import repo
from conftest import CliRun, last_read, recorded_statements, write_config
from repo.cache import USED_RESOLUTION_SECONDS
from repo.cache_admin import CacheStatus

if TYPE_CHECKING:
    from collections.abc import Mapping

WRITER = "test-host"  # the host_name of the `repo_config` and `local_config` fixtures


# ----------------------------------------------------------------- helpers


def publish(config: Mapping[str, Any], files: Mapping[str, bytes]) -> None:
    """Publish `files` (path -> content) from the host of `config`, committed."""
    with repo.Repo(config=dict(config)) as r:
        for path, data in files.items():
            r.add_file(path).touch(data).publish()


def host_config(
    config: Mapping[str, Any], tmp_path: Path, name: str, **extra: Any
) -> dict[str, Any]:
    """`config` as seen from another host: its own name and cache directory."""
    return {**config, "host_name": name, "local_root": str(tmp_path / name), **extra}


def cached_bytes(r: repo.Repo) -> int:
    """Bytes of verified copies on disk (downloads in progress excluded)."""
    total = 0
    for root, _dirs, names in os.walk(r.cache.cache_dir):
        total += sum(
            os.path.getsize(os.path.join(root, n)) for n in names if not n.startswith(".part-")
        )
    return total


def is_cached(r: repo.Repo, f: repo.RepoFile) -> bool:
    return r.cache.cache_path(f.key).exists()


def holders(f: repo.RepoFile) -> list[str]:
    return [c.host for c in f.hosts]


def summaries(r: repo.Repo) -> dict[str, tuple[int, int, int | None]]:
    """Host name -> (files, bytes, cache limit) as the catalog records them."""
    return {h.name: (h.files, h.bytes, h.cache_max_bytes) for h in r.hosts()}


@pytest.fixture
def gc_config(local_config: dict[str, str]) -> dict[str, Any]:
    """The writer host, with purge rules that take expired and unpublished files at once."""
    return {
        **local_config,
        "unpublished_ttl_seconds": 0,
        "expired_ttl_seconds": 0,
        "backups_before_purge": 0,
    }


@pytest.fixture
def local_cli(tmp_path: Path, local_config: dict[str, str]) -> CliRun:
    """`repo` as the writer host, on a directory store (both catalogs)."""
    return CliRun(write_config(tmp_path / "repo_cfg.json", local_config), tmp_path)


# ------------------------------------------------------- size limit and LRU


def test_reads_past_the_limit_evict_and_keep_the_cache_within_it(
    repo_config: dict[str, str], tmp_path: Path
) -> None:
    content = {f"data/f{i}.bin": bytes([65 + i]) * 100 for i in range(6)}
    publish(repo_config, content)
    with repo.Repo(config=host_config(repo_config, tmp_path, "reader", cache_max_bytes=250)) as r:
        files = [r.current(p) for p in content]
        for f in files:
            assert f.read_bytes() == content[f.path]
            assert cached_bytes(r) <= 250

        # Two 100-byte copies fit under 250 bytes: the last two read.
        assert [is_cached(r, f) for f in files] == [False] * 4 + [True] * 2
        # Every eviction was recorded in the catalog as it happened.
        assert [holders(f) for f in files] == [[WRITER]] * 4 + [["reader", WRITER]] * 2
        assert summaries(r)["reader"] == (2, 200, 250)
        # An evicted file is downloaded again, verified, when it is read again.
        assert files[0].read_bytes() == content[files[0].path]
        assert cached_bytes(r) <= 250


def test_eviction_takes_the_least_recently_read_copy_first(
    local_config: dict[str, str], tmp_path: Path
) -> None:
    content = {p: p.encode() * 20 for p in ("a.txt", "b.txt", "c.txt", "d.txt")}  # 100 B each
    publish(local_config, content)
    with repo.Repo(config=host_config(local_config, tmp_path, "reader", cache_max_bytes=350)) as r:
        a, b, c, d = (r.current(p) for p in content)
        # Ages beyond the resolution of "last read" (a read refreshes an older one only).
        for f, age in ((a, 3000), (b, 2000), (c, 1000)):
            f.read_bytes()
            last_read(r, f, seconds_ago=age)
        assert a.read_bytes() == content["a.txt"]  # a hit: now the most recently read

        assert d.read_bytes() == content["d.txt"]  # needs room for 100 bytes: one goes

        assert [is_cached(r, f) for f in (a, b, c, d)] == [True, False, True, True]
        assert "reader" not in holders(b)
        assert all("reader" in holders(f) for f in (a, c, d))
        assert summaries(r)["reader"] == (3, 300, 350)


def test_a_file_larger_than_the_limit_empties_the_cache_and_is_still_served(
    local_config: dict[str, str], tmp_path: Path
) -> None:
    content = {"a.bin": b"a" * 100, "b.bin": b"b" * 100, "big.bin": b"B" * 400}
    publish(local_config, content)
    with repo.Repo(config=host_config(local_config, tmp_path, "reader", cache_max_bytes=250)) as r:
        a, b, big = (r.current(p) for p in content)
        a.read_bytes()
        b.read_bytes()

        # Documented behaviour of make_room: everything else is evicted to make as much
        # room as possible, then the file is downloaded anyway; the cache holds just it,
        # over the limit, until the next download makes room again.
        assert big.read_bytes() == content["big.bin"]
        assert [is_cached(r, f) for f in (a, b, big)] == [False, False, True]
        assert cached_bytes(r) == 400
        assert summaries(r)["reader"] == (1, 400, 250)

        assert a.read_bytes() == content["a.bin"]
        assert [is_cached(r, f) for f in (a, b, big)] == [True, False, False]
        assert cached_bytes(r) == 100


# ----------------------------------------------------------- open readers


@pytest.mark.parametrize("evicted_by", ["clear_cache", "reading_other_files"])
def test_a_reader_with_the_file_open_keeps_reading_it_after_eviction(
    local_config: dict[str, str], tmp_path: Path, evicted_by: str
) -> None:
    data = os.urandom(64 * 1024)
    publish(local_config, {"a.bin": data, "b.bin": b"b" * 40_000})
    cfg = host_config(local_config, tmp_path, "reader", cache_max_bytes=100_000)
    with repo.Repo(config=cfg) as r:
        a = r.current("a.bin")
        path = a.local_path
        first = {c.host: c for c in a.hosts}["reader"]
        with open(path, "rb") as held:
            head = held.read(1000)
            if evicted_by == "clear_cache":
                r.clear_cache()
            else:
                r.current("b.bin").read_bytes()  # 64 KiB + 40 000 B > 100 000 B: a goes
            assert not path.exists()  # the name is gone
            assert head + held.read() == data  # the open file is whole

            # The next read downloads afresh (a new file, verified), not the held one.
            assert a.read_bytes() == data
            assert os.stat(path).st_ino != os.fstat(held.fileno()).st_ino
        again = {c.host: c for c in a.hosts}["reader"]
        assert again.downloaded_at > first.downloaded_at


# ------------------------------------------------- the catalog's record of copies


def test_a_hit_remembered_before_eviction_does_not_bring_the_copy_back(
    local_config: dict[str, str], tmp_path: Path
) -> None:
    publish(local_config, {p: p.encode() * 20 for p in ("a.txt", "b.txt", "c.txt")})
    with repo.Repo(config=host_config(local_config, tmp_path, "reader", cache_max_bytes=250)) as r:
        a, b, c = (r.current(p) for p in ("a.txt", "b.txt", "c.txt"))
        a.read_bytes()
        b.read_bytes()
        a.read_bytes()  # hits: remembered in memory, written at the next flush
        b.read_bytes()
        last_read(r, a, seconds_ago=20)
        last_read(r, b, seconds_ago=10)

        c.read_bytes()  # evicts a, then records c and flushes the hits of a and b

        assert not is_cached(r, a)
        assert holders(a) == [WRITER]


def test_evictions_are_recorded_even_when_the_callers_transaction_rolls_back(
    local_config: dict[str, str], tmp_path: Path
) -> None:
    publish(local_config, {"a.bin": b"a" * 100, "b.bin": b"b" * 100})
    with repo.Repo(config=host_config(local_config, tmp_path, "reader", cache_max_bytes=150)) as r:
        a, b = r.current("a.bin"), r.current("b.bin")
        a.read_bytes()
        r.add_file("draft.txt")  # the caller's transaction now writes
        b.read_bytes()  # evicts a
        r.rollback()

        assert not is_cached(r, a)
        assert (holders(a), holders(b)) == ([WRITER], ["reader", WRITER])


def test_clear_cache_removes_every_cached_copy_and_forgets_them(
    local_config: dict[str, str], tmp_path: Path
) -> None:
    publish(local_config, {"a.txt": b"a" * 100, "b.txt": b"b" * 150})
    with repo.Repo(config=host_config(local_config, tmp_path, "reader")) as r:
        a, b = r.current("a.txt"), r.current("b.txt")
        a.read_bytes()
        b.read_bytes()
        draft = r.add_file("draft.txt").touch("not uploaded yet")
        r.commit()
        assert summaries(r)["reader"] == (2, 250, None)

        report = r.clear_cache()

        assert (report.evicted_for_space, report.bytes) == (2, 250)
        assert sorted(report.keys) == sorted([a.key, b.key])
        assert (report.dropped_expired, report.dropped_purged, report.staging_removed) == (0, 0, 0)
        assert r.cache.entries() == []
        assert holders(a) == holders(b) == [WRITER]
        assert summaries(r)["reader"] == (0, 0, None)
        # Staging copies of unfinished versions are not cache: they stay, and still upload.
        assert draft.local_path.read_text() == "not uploaded yet"
        draft.publish()
        r.commit()
        assert r.current("draft.txt").read_text() == "not uploaded yet"


def test_content_of_a_rolled_back_upload_survives_clear_cache(
    local_config: dict[str, str],
) -> None:
    with repo.Repo(config=local_config) as r:
        f = r.add_file("x.txt")
        r.commit()
        f.touch("hello").upload()
        r.rollback()  # the row stays unuploaded; its bytes moved into the cache
        f.refresh()
        assert not f.uploaded

        r.clear_cache()

        f.upload()  # NotFoundError: "has no content to upload"
        r.commit()
        assert f.read_bytes() == b"hello"


# -------------------------------------------------------------------- prune


def test_prune_drops_expired_and_purged_copies_and_keeps_the_rest(
    local_config: dict[str, str], gc_config: dict[str, Any], tmp_path: Path
) -> None:
    content = {"keep.txt": b"k" * 100, "old.txt": b"o" * 100, "gone.txt": b"g" * 100}
    publish(local_config, content)
    cfg = host_config(local_config, tmp_path, "reader")
    with repo.Repo(config=cfg) as r:
        keep, old, gone = (r.current(p) for p in content)
        for f in (keep, old, gone):
            f.read_bytes()
        # An upload whose process died before its commit (the catalog's transaction
        # ends, the session's own rollback never runs): its object stays in the store (an
        # orphan for GC) and its copy in this cache, under a key the catalog does not
        # know. Such a copy may be the last one (a catalog restored from an older backup
        # forgets keys too), so prune keeps it while the store still has the object.
        lost = r.add_file("lost.txt").touch(b"l" * 100).upload()
        r.catalog.rollback()
        assert is_cached(r, lost)
        r.store.head(lost.key)  # still in the store

    with repo.Repo(config=gc_config) as w:
        w.current("gone.txt").expire()
        w.commit()
        report = w.gc()
        assert report.expired.keys == [gone.key]  # object and row are gone
        w.add_file("old.txt").touch("new").publish()  # the old version expires
        w.commit()

    with repo.Repo(config=cfg) as r:
        pruned = r.prune_cache()

        assert (pruned.dropped_expired, pruned.dropped_purged, pruned.evicted_for_space) == (
            1,
            1,
            0,
        )
        assert pruned.bytes == 200
        assert sorted(pruned.keys) == sorted([old.key, gone.key])
        assert [is_cached(r, f) for f in (keep, old, gone, lost)] == [True, False, False, True]
        assert holders(keep.refresh()) == ["reader", WRITER]
        assert holders(old.refresh()) == [WRITER]
        assert summaries(r)["reader"] == (1, 100, None)  # the unknown copy is not counted


def test_prune_evicts_least_recently_read_copies_down_to_a_lowered_limit(
    local_config: dict[str, str], tmp_path: Path
) -> None:
    content = {p: p.encode() * 20 for p in ("a.txt", "b.txt", "c.txt")}  # 100 B each
    publish(local_config, content)
    with repo.Repo(config=host_config(local_config, tmp_path, "reader")) as r:
        a, b, c = (r.current(p) for p in content)
        for f, age in ((b, 30), (c, 20), (a, 10)):
            f.read_bytes()
            last_read(r, f, seconds_ago=age)

    lowered = host_config(local_config, tmp_path, "reader", cache_max_bytes=150)
    with repo.Repo(config=lowered) as r:
        pruned = r.prune_cache()

        assert (pruned.evicted_for_space, pruned.bytes, pruned.keys) == (2, 200, [b.key, c.key])
        assert (pruned.dropped_expired, pruned.dropped_purged) == (0, 0)
        assert [is_cached(r, f) for f in (a, b, c)] == [True, False, False]
        assert [holders(f) for f in (a, b, c)] == [["reader", WRITER], [WRITER], [WRITER]]
        assert cached_bytes(r) == 100


# ------------------------------------------------------------------- status


def test_cache_status_counts_verified_copies_only(
    local_config: dict[str, str], tmp_path: Path
) -> None:
    publish(local_config, {"a.txt": b"a" * 100, "b.txt": b"b" * 150})
    cfg = host_config(local_config, tmp_path, "reader", cache_max_bytes=10_000)
    with repo.Repo(config=cfg) as r:
        assert r.cache_status() == CacheStatus(
            host="reader",
            directory=str(tmp_path / "reader" / "cache"),
            files=0,
            bytes=0,
            limit=10_000,
        )
        a = r.current("a.txt")
        a.read_bytes()
        r.current("b.txt").read_bytes()
        # A download in progress (another process): a temp file beside the copies.
        fd, part = tempfile.mkstemp(dir=r.cache.cache_path(a.key).parent, prefix=".part-")
        os.write(fd, b"p" * 5000)
        os.close(fd)

        st = r.cache_status()
        assert (st.host, st.files, st.bytes, st.limit) == ("reader", 2, 250, 10_000)

        r.clear_cache()
        assert Path(part).exists()  # never removed under the download
        st = r.cache_status()
        assert (st.files, st.bytes) == (0, 0)


# -------------------------------------------------------------------- hosts


def test_two_hosts_sharing_a_catalog_are_listed_and_one_can_be_decommissioned(
    local_config: dict[str, str], tmp_path: Path
) -> None:
    host_a = host_config(local_config, tmp_path, "host-a", cache_max_bytes=1_000_000)
    host_b = host_config(local_config, tmp_path, "host-b")
    publish(host_a, {"one.txt": b"1" * 100, "two.txt": b"2" * 200})  # cached on host-a
    with repo.Repo(config=host_a) as a, repo.Repo(config=host_b) as b:
        assert a.current("one.txt").read_bytes() == b"1" * 100  # a hit
        assert b.current("one.txt").read_bytes() == b"1" * 100  # a download
        a.commit()
        b.commit()
        assert summaries(a) == {
            "host-a": (2, 300, 1_000_000),
            "host-b": (1, 100, None),
        }
        assert holders(a.current("one.txt")) == ["host-a", "host-b"]

        assert a.decommission_host("host-b") == 1
        a.commit()

        assert summaries(b) == {"host-a": (2, 300, 1_000_000)}
        assert holders(b.current("one.txt")) == ["host-a"]
        assert b.cache.cache_path(b.current("one.txt").key).exists()  # files are untouched
        with pytest.raises(repo.NotFoundError) as err:
            a.decommission_host("host-c")
        assert err.value.message == "no host named 'host-c'"
        assert err.value.hint == "see `repo host list`"


@pytest.mark.parametrize("call", ["hosts", "prune_cache"])
def test_cache_and_host_calls_keep_uncommitted_work(
    local_config: dict[str, str], call: str
) -> None:
    with repo.Repo(config=local_config) as r:
        r.add_file("pending.txt").touch("x").publish()
        getattr(r, call)()
        r.commit()
        assert r.get_file("pending.txt") is not None


# ---------------------------------------------------------------- hit path


def test_a_cache_hit_after_a_download_sends_no_statement_to_the_catalog(
    local_config: dict[str, str], tmp_path: Path
) -> None:
    publish(local_config, {"hot.txt": b"hot" * 100})
    with repo.Repo(config=host_config(local_config, tmp_path, "reader")) as r:
        f = r.current("hot.txt")
        assert f.read_bytes() == b"hot" * 100  # download, recorded at once
        first = {c.host: c for c in f.hosts}["reader"]
        r.commit()
        with recorded_statements(r) as seen:
            for _ in range(20):
                assert f.read_bytes() == b"hot" * 100
            assert seen == []
            r.commit()
            # The catalog's last access is as fresh as the copy's "last read", which
            # these hits did not move on (less than a minute old): nothing to write.
            assert not any("file_hosts" in s for s in seen)
            last_read(r, f, seconds_ago=USED_RESOLUTION_SECONDS * 3)
            assert f.read_bytes() == b"hot" * 100
            assert seen == []
            r.commit()  # this hit moved it on: written now, in one batch
        assert any("file_hosts" in s for s in seen)
        later = {c.host: c for c in f.hosts}["reader"]
        assert later.last_access > first.last_access
        assert later.downloaded_at == first.downloaded_at


def test_uploaded_copies_count_toward_the_limit_of_the_next_download(
    local_config: dict[str, str], tmp_path: Path
) -> None:
    publish(local_config, {"a.bin": b"a" * 100, "b.bin": b"b" * 100})
    with repo.Repo(config=host_config(local_config, tmp_path, "reader", cache_max_bytes=250)) as r:
        r.current("a.bin").read_bytes()  # tally: 100 bytes
        r.add_file("d.bin").touch(b"d" * 100).publish()  # on disk: 200
        r.add_file("e.bin").touch(b"e" * 100).publish()  # on disk: 300
        r.commit()

        r.current("b.bin").read_bytes()  # tally 100 + 100 <= 250: no eviction

        assert cached_bytes(r) <= 250  # 400


# ---------------------------------------------------------------------- CLI


def test_cli_cache_status(local_cli: CliRun, local_config: dict[str, str], tmp_path: Path) -> None:
    publish(local_config, {"a.txt": b"a" * 100, "b.txt": b"b" * 2000})  # cached here
    directory = str(tmp_path / "local" / "cache")

    result = local_cli("cache", "status", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "host": WRITER,
        "directory": directory,
        "file_count": 2,
        "bytes": 2100,
        "cache_max_bytes": None,
    }

    result = local_cli("cache", "status")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == f"cache on {WRITER} ({directory}): 2 files, 2.1 KiB (no limit)\n"

    write_config(local_cli.config_path, {**local_config, "cache_max_bytes": 4096})
    assert json.loads(local_cli("cache", "status", "--json").stdout)["cache_max_bytes"] == 4096
    assert local_cli("cache", "status").stdout.endswith(": 2 files, 2.1 KiB (limit 4.0 KiB)\n")


def test_cli_cache_prune_and_clear(
    local_cli: CliRun, local_config: dict[str, str], tmp_path: Path
) -> None:
    publish(local_config, {"a.txt": b"a" * 100, "b.txt": b"b" * 200})
    publish(local_config, {"a.txt": b"A" * 300})  # the first a.txt expires, still cached
    with repo.Repo(config=local_config) as r:
        new, old = r.history("a.txt")
        assert old.state == "expired"
        last_read(r, r.current("b.txt"), seconds_ago=20)
        last_read(r, new, seconds_ago=10)

    result = local_cli("cache", "prune", "--json")
    assert (result.exit_code, result.stderr) == (0, "")
    assert json.loads(result.stdout) == {
        "dropped_expired": 1,
        "dropped_purged": 0,
        "evicted_for_space": 0,
        "bytes": 100,
        "staging_removed": 0,
        "partial_downloads_removed": 0,
        "keys": [old.key],
    }

    result = local_cli("cache", "prune")
    assert (result.exit_code, result.stderr) == (0, "")
    assert (
        result.stdout == "dropped 0 expired and 0 purged copies, evicted 0 for space (0 B freed)\n"
    )

    write_config(local_cli.config_path, {**local_config, "cache_max_bytes": 450})
    result = local_cli("cache", "prune")  # 500 B: b.txt was read longest ago
    assert (
        result.stdout
        == "dropped 0 expired and 0 purged copies, evicted 1 for space (200 B freed)\n"
    )

    result = local_cli("cache", "clear", "--yes")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == "removed 1 cached copies (300 B)\n"
    assert local_cli("cache", "clear", "--yes").stdout == "removed 0 cached copies (0 B)\n"
    assert json.loads(local_cli("cache", "status", "--json").stdout)["file_count"] == 0


def test_cli_host_list(local_cli: CliRun, local_config: dict[str, str], tmp_path: Path) -> None:
    publish(local_config, {"a.txt": b"a" * 100, "b.txt": b"b" * 2000})
    with repo.Repo(config=host_config(local_config, tmp_path, "reader", cache_max_bytes=4096)) as r:
        r.current("a.txt").read_bytes()
        r.commit()
        seen = {h.name: h for h in r.hosts()}

    result = local_cli("host", "list")
    assert (result.exit_code, result.stderr) == (0, "")
    reader_seen = seen["reader"].last_seen.strftime("%Y-%m-%d %H:%M:%S")
    writer_seen = seen[WRITER].last_seen.strftime("%Y-%m-%d %H:%M:%S")
    assert result.stdout.splitlines() == [
        "HOST       FILES  BYTES    LIMIT    LAST SEEN (UTC)",
        f"reader     1      100 B    4.0 KiB  {reader_seen}",
        f"{WRITER}  2      2.1 KiB  -        {writer_seen}",
    ]

    result = local_cli("host", "list", "--json")
    assert (result.exit_code, result.stderr) == (0, "")
    assert json.loads(result.stdout) == {
        "hosts": [
            {
                "name": "reader",
                "cache_max_bytes": 4096,
                "file_count": 1,
                "bytes": 100,
                "first_seen": seen["reader"].first_seen.isoformat(),
                "last_seen": seen["reader"].last_seen.isoformat(),
            },
            {
                "name": WRITER,
                "cache_max_bytes": None,
                "file_count": 2,
                "bytes": 2100,
                "first_seen": seen[WRITER].first_seen.isoformat(),
                "last_seen": seen[WRITER].last_seen.isoformat(),
            },
        ]
    }


def test_cli_host_list_with_no_hosts(local_cli: CliRun) -> None:
    result = local_cli("host", "list")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "no hosts\n")
    assert json.loads(local_cli("host", "list", "--json").stdout) == {"hosts": []}


def test_cli_host_decommission(
    local_cli: CliRun,
    local_config: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    publish(local_config, {"a.txt": b"a" * 100, "b.txt": b"b" * 200})
    with repo.Repo(config=host_config(local_config, tmp_path, "reader")) as r:
        r.current("a.txt").read_bytes()
        r.current("b.txt").read_bytes()

    def listed() -> dict[str, int]:
        doc = json.loads(local_cli("host", "list", "--json").stdout)
        return {h["name"]: h["file_count"] for h in doc["hosts"]}

    monkeypatch.setattr("repo.cli.prompts.on_terminal", lambda: True)
    result = local_cli("host", "decommission", "reader", input="n\n")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        "Forget host 'reader' and its cached copies in the catalog? [y/N]: n\nAborted!\n"
    )
    assert listed() == {"reader": 2, WRITER: 2}

    result = local_cli("host", "decommission", "reader", "--yes")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == "forgot host reader (2 cached copies)\n"
    assert listed() == {WRITER: 2}

    result = local_cli("host", "decommission", "reader", "--yes")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "Error: no host named 'reader'",
        "Try: see `repo host list`",
    ]


# ------------------------------------------------------- partial downloads


def _part(r: repo.Repo, name: str, age_seconds: float) -> Path:
    path = r.cache.cache_dir / "some" / f".part-{name}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"half a download")
    when = time.time() - age_seconds
    os.utime(path, (when, when))
    return path


@pytest.mark.parametrize("cleanup", ["gc", "prune_cache", "clear_cache"])
def test_abandoned_partial_downloads_go_after_the_grace_and_held_ones_never(
    local_config: dict[str, str], tmp_path: Path, cleanup: str
) -> None:
    import fcntl

    config = host_config(local_config, tmp_path, "reader", orphan_grace_seconds=3600)
    with repo.Repo(config=config) as r:
        abandoned = _part(r, "abandoned", age_seconds=7200)
        young = _part(r, "young", age_seconds=60)
        held = _part(r, "held", age_seconds=7200)
        with open(held, "rb") as in_progress:  # a download in another process holds it
            fcntl.flock(in_progress.fileno(), fcntl.LOCK_EX)
            if cleanup == "gc":
                assert r.gc(dry_run=True).partial_downloads_removed == 1
                assert abandoned.exists()
                removed = r.gc().partial_downloads_removed
            else:
                removed = getattr(r, cleanup)().partial_downloads_removed
        assert removed == 1
        assert (abandoned.exists(), young.exists(), held.exists()) == (False, True, True)
        assert r.cache.entries() == []


@pytest.mark.parametrize(
    ("command", "said"),
    [
        (["gc", "--dry-run"], "would remove 1 partial downloads on this host"),
        (["gc"], "removed 1 partial downloads on this host"),
        (["cache", "prune"], "removed 1 partial downloads on this host"),
        (["cache", "clear", "--yes"], "removed 1 partial downloads on this host"),
    ],
)
def test_the_commands_say_what_leftovers_they_removed(
    local_config: dict[str, str], tmp_path: Path, command: list[str], said: str
) -> None:
    config = host_config(local_config, tmp_path, "reader", orphan_grace_seconds=3600)
    with repo.Repo(config=config) as r:
        abandoned = _part(r, "abandoned", age_seconds=7200)
    run = CliRun(write_config(tmp_path / "reader.json", config), tmp_path)
    result = run(*command)
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout.splitlines()[-1] == said
    assert abandoned.exists() == ("--dry-run" in command)
    if command[:2] != ["cache", "clear"]:  # the others also say it in JSON
        again = run(*command, "--json")
        assert again.exit_code == 0, again.stderr
        # A dry run left the file, so it is counted again; otherwise it is gone.
        expected = 1 if "--dry-run" in command else 0
        assert json.loads(again.stdout)["partial_downloads_removed"] == expected


def test_a_download_after_partial_cleanup_with_no_grace_still_lands(
    local_config: dict[str, str], tmp_path: Path
) -> None:
    publish(local_config, {"a.txt": b"a" * 100})
    config = host_config(local_config, tmp_path, "reader", orphan_grace_seconds=0)
    with repo.Repo(config=config) as r:
        assert r.prune_cache().partial_downloads_removed == 0
        assert r.current("a.txt").read_bytes() == b"a" * 100
        assert list(r.cache.cache_dir.rglob(".part-*")) == []


def test_a_hit_refreshes_last_read_only_once_it_is_older_than_its_resolution(
    local_config: dict[str, str], tmp_path: Path
) -> None:
    publish(local_config, {"a.txt": b"a" * 100})
    with repo.Repo(config=host_config(local_config, tmp_path, "reader")) as r:
        a = r.current("a.txt")
        a.read_bytes()
        copy = r.cache.cache_path(a.key)
        recent = USED_RESOLUTION_SECONDS / 2
        last_read(r, a, seconds_ago=recent)
        before = copy.stat().st_mtime
        a.read_bytes()  # a hit with a fresh enough time: no metadata write
        assert copy.stat().st_mtime == before
        last_read(r, a, seconds_ago=USED_RESOLUTION_SECONDS * 3)
        a.read_bytes()
        assert time.time() - copy.stat().st_mtime < USED_RESOLUTION_SECONDS


def test_a_small_download_longer_than_the_catalog_says_fails_and_leaves_nothing(
    repo_config: dict[str, str], tmp_path: Path
) -> None:
    # Small versions are taken into memory and verified before their copy is written:
    # an object longer than recorded is refused.
    body = os.urandom(3 * 1024 * 1024)
    publish(repo_config, {"big.bin": body})
    with repo.Repo(config=host_config(repo_config, tmp_path, "reader")) as r:
        f = r.current("big.bin")
        with pytest.raises(repo.VerificationError, match=f"got {len(body)} bytes"):
            r.cache.download(r.store, f.key, md5=f.md5 or "", size=10)
        assert [p for p in r.cache.cache_dir.rglob("*") if p.is_file()] == []
        assert f.read_bytes() == body  # the right size still downloads


def test_a_leftover_with_the_temporary_name_a_download_would_use_is_left_alone(
    local_config: dict[str, str], tmp_path: Path
) -> None:
    # A process that died mid-write with our pid (a restarted container) or a namesake
    # in another pid namespace: the download takes another name and the leftover stays
    # for `remove_partials`.
    import threading

    from repo.cache import PARTIAL_PREFIX
    from repo.paths import TOKEN_LENGTH

    publish(local_config, {"a.txt": b"a" * 100})
    with repo.Repo(config=host_config(local_config, tmp_path, "reader")) as r:
        f = r.current("a.txt")
        final = r.cache.cache_path(f.key)
        final.parent.mkdir(parents=True)
        token = final.name[-TOKEN_LENGTH:]
        leftover = final.parent / f"{PARTIAL_PREFIX}{token}-{os.getpid()}-{threading.get_ident()}"
        leftover.write_bytes(b"half")
        r.cache.download(r.store, f.key, md5=f.md5 or "", size=100)
        assert final.read_bytes() == b"a" * 100
        assert leftover.read_bytes() == b"half"
        assert sorted(p.name for p in final.parent.iterdir()) == sorted([final.name, leftover.name])


def test_a_small_download_keeps_no_more_than_the_recorded_size_in_memory() -> None:
    from repo.cache import _Bounded

    buffer = _Bounded(10)
    assert [buffer.write(b"abcd"), buffer.write(memoryview(b"efgh"))] == [4, 4]
    assert buffer.value() == b"abcdefgh"
    assert buffer.write(b"x" * 1000) == 1000  # counted by the caller, not kept
    assert buffer.write(b"y") == 1
    assert buffer.value() == b"abcdefgh"
