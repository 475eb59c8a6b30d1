"""Errors complete at the boundary: whatever breaks on this host's disk, every public
operation raises a `RepoError` (most often `LocalDiskError`, with a hint), never a raw
`OSError`, and what was stored stays readable once the disk is mended.

The tests run as root in CI, where permission bits stop nothing; a directory of the
local root replaced by a plain file breaks it for root too (ENOTDIR / EEXIST)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import repo

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

#: What can break under ``local_root``: the verified cache, the staging area, scratch.
BROKEN_PLACES = ["cache", "staging", "tmp"]


@pytest.fixture
def stocked(tmp_path: Path, sqlite_url: str) -> Iterator[tuple[repo.Repo, dict[str, Any]]]:
    """A repository on the embedded default with a published, uncached version, a
    published cached one, and a source tree on disk."""
    (tmp_path / "store").mkdir()
    config = {
        "local_root": str(tmp_path / "local"),
        "store": (tmp_path / "store").as_uri(),
        "database": sqlite_url,
        "host_name": "test-host",
        "unpublished_ttl_seconds": 0,
        "orphan_grace_seconds": 0,
    }
    r = repo.Repo(config=config)
    try:
        cold = r.add("data/cold.txt", io.BytesIO(b"cold\n" * 100), publish=True, keep_cached=False)
        warm = r.add("data/warm.txt", io.BytesIO(b"warm\n" * 100), publish=True)
        r.commit()
        tree = tmp_path / "tree"
        (tree / "sub").mkdir(parents=True)
        (tree / "sub" / "one.txt").write_bytes(b"one")
        single = tmp_path / "single.txt"
        single.write_bytes(b"single")
        yield r, {"cold": cold, "warm": warm, "tree": tree, "single": single, "out": tmp_path}
    finally:
        r.close()


def _break(r: repo.Repo, place: str) -> Path:
    """Replace ``local_root/<place>`` by a plain file; returns what to remove to mend it."""
    target = Path(r.config.local_root) / place
    if target.is_dir():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"not a directory")
    return target


def _operations(r: repo.Repo, things: dict[str, Any]) -> dict[str, Callable[[], object]]:
    cold: repo.RepoFile = things["cold"]
    warm: repo.RepoFile = things["warm"]
    out: Path = things["out"]
    return {
        "add a stream": lambda: r.add("new/stream.txt", io.BytesIO(b"x")),
        "add a file, cached": lambda: r.add("new/file.txt", things["single"], keep_cached=True),
        "add a tree": lambda: r.add_tree(things["tree"], prefix="t", keep_cached=True),
        "write a new version": lambda: r.add_file("new/w.txt").touch("w").publish(),
        "open a new version": lambda: r.add_file("new/o.txt").open("w").close(),
        "read an uncached version": cold.read_bytes,
        "read a cached version": warm.read_bytes,
        "local path of an uncached version": lambda: cold.local_path,
        "stream an uncached version": lambda: cold.write_to(io.BytesIO()),
        "save an uncached version, cached": lambda: cold.save_as(
            out / "saved.txt", overwrite=True, keep_cached=True
        ),
        "fetch": lambda: r.fetch([cold, warm]),
        "fetch into a directory": lambda: r.fetch([cold], dest=out / "fetched", overwrite=True),
        "verify the cache": r.verify_cache,
        "verify the store": r.verify,
        "recover": r.recover,
        "cache status": r.cache_status,
        "prune the cache": r.prune_cache,
        "clear the cache": r.clear_cache,
        "gc": lambda: r.gc(orphans=True),
        "backup": r.backup,
        "list backups": r.list_backups,
        "commit": r.commit,
    }


OPERATIONS = [
    "add a stream",
    "add a file, cached",
    "add a tree",
    "write a new version",
    "open a new version",
    "read an uncached version",
    "read a cached version",
    "local path of an uncached version",
    "stream an uncached version",
    "save an uncached version, cached",
    "fetch",
    "fetch into a directory",
    "verify the cache",
    "verify the store",
    "recover",
    "cache status",
    "prune the cache",
    "clear the cache",
    "gc",
    "backup",
    "list backups",
    "commit",
]


def test_every_operation_is_driven(stocked: tuple[repo.Repo, dict[str, Any]]) -> None:
    assert list(_operations(*stocked)) == OPERATIONS


@pytest.mark.parametrize("place", BROKEN_PLACES)
@pytest.mark.parametrize("operation", OPERATIONS)
def test_a_broken_local_disk_gives_a_repo_error_and_loses_nothing(
    stocked: tuple[repo.Repo, dict[str, Any]], place: str, operation: str
) -> None:
    r, things = stocked
    run = _operations(r, things)[operation]
    mend = _break(r, place)
    error: repo.RepoError | None = None  # succeeding is fine too
    try:
        run()
    except repo.RepoError as exc:
        error = exc
    except BaseException as exc:  # pragma: no cover - the failure this test exists for
        pytest.fail(f"{operation} with {place} broken raised {type(exc).__name__}: {exc}")
    finally:
        r.rollback()
        mend.unlink()
    if error is not None:
        assert error.message
        assert "\n" not in error.message
        if isinstance(error, repo.LocalDiskError):
            assert error.hint
    # Nothing stored was lost or damaged.
    assert r.file(things["cold"].file_id).read_bytes() == b"cold\n" * 100
    assert r.file(things["warm"].file_id).read_bytes() == b"warm\n" * 100
    assert r.verify(deep=True).ok


@pytest.mark.parametrize(
    ("place", "operation"),
    [
        ("staging", lambda r, t: r.add("new/stream.txt", io.BytesIO(b"x"))),
        ("staging", lambda r, t: r.add_file("new/w.txt").touch("w")),
        ("cache", lambda r, t: t["cold"].read_bytes()),
        ("cache", lambda r, t: r.fetch([t["cold"]])),
        ("tmp", lambda r, t: r.backup()),
    ],
    ids=["add a stream", "touch", "read", "fetch", "backup"],
)
def test_the_error_says_it_is_this_hosts_disk_and_what_to_check(
    stocked: tuple[repo.Repo, dict[str, Any]],
    place: str,
    operation: Callable[[repo.Repo, dict[str, Any]], object],
) -> None:
    r, things = stocked
    _break(r, place)
    with pytest.raises(repo.LocalDiskError) as caught:
        operation(r, things)
    assert str(Path(r.config.local_root) / place) in caught.value.message
    assert caught.value.hint is not None
    assert "local_root" in caught.value.hint


def test_the_boundary_names_the_file_and_lets_a_closed_pipe_through() -> None:
    import errno

    from repo.errors import at_boundary

    def raising(exc: BaseException) -> Callable[[], None]:
        @at_boundary("doing it")
        def run() -> None:
            raise exc

        return run

    full = OSError(errno.ENOSPC, "No space left on device", "/data/x")
    with pytest.raises(repo.LocalDiskError, match=r"^doing it failed: No space .*: /data/x$"):
        raising(full)()
    with pytest.raises(repo.StoreError, match="the network failed"):
        raising(ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"))()
    with pytest.raises(BrokenPipeError):
        raising(BrokenPipeError(errno.EPIPE, "Broken pipe"))()
    with pytest.raises(KeyError):  # not an OSError: not ours to translate
        raising(KeyError("k"))()
