"""Adding files from outside (`Repo.add`, `Repo.add_tree`) and getting them back out
(`RepoFile.save_as`, `RepoFile.write_to`), plus the lookups that say why nothing is there.

Bad input records nothing: no catalog row, no object, no staging copy. Content is copied
into staging before it is sent, so the user's file may change afterwards.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import pytest

import repo
from harness.proxy import FaultProxy
from repo import VerificationError, ingest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from harness.s3servers import MotoS3Server

MiB = 1024 * 1024


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _store_keys(r: repo.Repo) -> set[str]:
    return {info.key for info in r.store.list(r.store.key_prefix)}


def _staging_leftovers(r: repo.Repo) -> list[str]:
    root = r.session.staging.directory
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def _stored_bytes(r: repo.Repo, rf: repo.RepoFile) -> bytes:
    out = io.BytesIO()
    r.store.get_into(rf.key, out)
    return out.getvalue()


def _write_tree(root: Path, files: dict[str, bytes]) -> dict[str, bytes]:
    for rel, data in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return files


@pytest.fixture
def local_repo(local_config: dict[str, str]) -> Iterator[repo.Repo]:
    """A `Repo` on a directory store and each catalog, for tests where the store does
    not matter."""
    r = repo.Repo(config=local_config)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def sqlite_repo(tmp_path: Path, sqlite_url: str) -> Iterator[repo.Repo]:
    """A `Repo` on SQLite and a directory store, for checks made before the catalog or
    the store is touched (argument validation, local files), where neither matters."""
    (tmp_path / "store").mkdir()
    config = {
        "local_root": str(tmp_path / "local"),
        "store": (tmp_path / "store").as_uri(),
        "database": sqlite_url,
        "host_name": "test-host",
    }
    r = repo.Repo(config=config)
    try:
        yield r
    finally:
        r.close()


# ------------------------------------------------------------------- Repo.add


def test_add_from_a_file_path_creates_a_verified_version(repo: repo.Repo, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    source = tmp_path / "report.csv"
    source.write_bytes(data)

    rf = repo.add("reports/2026/report.csv", source)

    assert rf.path == "reports/2026/report.csv"
    assert rf.state == "unpublished"
    assert rf.uploaded
    assert rf.uploaded_at is not None
    assert (rf.md5, rf.size) == (_md5(data), len(data))
    assert repo.store.head(rf.key).size == len(data)
    assert _stored_bytes(repo, rf) == data
    assert rf.read_bytes() == data
    assert _staging_leftovers(repo) == []
    repo.commit()
    assert repo.newest("reports/2026/report.csv").md5 == _md5(data)


def test_add_from_a_binary_stream_creates_a_verified_version(repo: repo.Repo) -> None:
    data = os.urandom(2 * MiB + 12_345)  # more than one read chunk

    rf = repo.add("streams/blob.bin", io.BytesIO(data))

    assert rf.uploaded
    assert (rf.md5, rf.size) == (_md5(data), len(data))
    assert _stored_bytes(repo, rf) == data
    assert repo.cache.cache_path(rf.key).read_bytes() == data
    assert _staging_leftovers(repo) == []


def test_add_from_an_empty_stream_creates_an_empty_version(sqlite_repo: repo.Repo) -> None:
    rf = sqlite_repo.add("empty.txt", io.BytesIO(b""))
    assert (rf.md5, rf.size) == (_md5(b""), 0)
    assert rf.read_bytes() == b""


def test_add_applies_tags_and_hour_date_tags(local_repo: repo.Repo, tmp_path: Path) -> None:
    source = tmp_path / "t.txt"
    source.write_text("tagged")
    when = datetime(2026, 11, 25, 18, 30, tzinfo=UTC)

    rf = local_repo.add("t.txt", source, tags=["team=ops", "raw", "raw"], when=when, period="hour")

    assert rf.tags == sorted(
        [
            "team=ops",
            "raw",
            "hour=2026-11-25T18",
            "day=2026-11-25",
            "week=2026-W48",
            "month=2026-11",
        ]
    )
    assert local_repo.tags_of([rf]) == {rf.file_id: rf.tags}


def test_add_with_when_alone_adds_day_tags(local_repo: repo.Repo) -> None:
    rf = local_repo.add("d.txt", io.BytesIO(b"d"), when=date(2026, 1, 1))
    assert rf.tags == ["day=2026-01-01", "month=2026-01", "week=2026-W01"]


def test_add_with_period_alone_date_tags_now(local_repo: repo.Repo) -> None:
    before = datetime.now(UTC)
    rf = local_repo.add("m.txt", io.BytesIO(b"m"), period="month")
    after = datetime.now(UTC)
    assert rf.tags in (
        [f"month={before:%Y-%m}"],
        [f"month={after:%Y-%m}"],
    )


def test_add_without_tags_adds_none(local_repo: repo.Repo) -> None:
    assert local_repo.add("plain.txt", io.BytesIO(b"p")).tags == []


def test_add_with_publish_publishes_and_supersedes_previous_version(
    local_repo: repo.Repo, tmp_path: Path
) -> None:
    source = tmp_path / "p.txt"
    source.write_text("v1")
    old = local_repo.add("p.txt", source, publish=True)
    source.write_text("v2")
    new = local_repo.add("p.txt", source, publish=True)
    local_repo.commit()

    assert old.refresh().state == "expired"
    assert old.expired_at is not None
    assert new.state == "published"
    assert new.published_at is not None
    assert local_repo.current("p.txt") == new
    assert local_repo.current("p.txt").read_text() == "v2"
    assert old.read_text() == "v1"


def test_add_without_publish_leaves_the_current_version_alone(local_repo: repo.Repo) -> None:
    current = local_repo.add("keep.txt", io.BytesIO(b"v1"), publish=True)
    pending = local_repo.add("keep.txt", io.BytesIO(b"v2"))
    assert pending.state == "unpublished"
    assert local_repo.current("keep.txt") == current
    assert local_repo.newest("keep.txt") == pending


# ------------------------------------------------------------- bad input records nothing


@dataclass
class _Snapshot:
    counts: dict[str, tuple[int, int]]
    versions: list[int]
    keys: set[str]
    staging: list[str]


def _snapshot(r: repo.Repo) -> _Snapshot:
    return _Snapshot(
        counts=r.status(),
        versions=[f.file_id for f in r.list("*", state="all")],
        keys=_store_keys(r),
        staging=_staging_leftovers(r),
    )


@pytest.fixture
def seeded_repo(sqlite_repo: repo.Repo) -> repo.Repo:
    """A repository already holding one committed, published file, so "unchanged" counts.

    Input is validated before the catalog is touched, so one catalog kind is enough.
    """
    sqlite_repo.add("existing.txt", io.BytesIO(b"existing"), publish=True)
    sqlite_repo.commit()
    return sqlite_repo


def _file(tmp_path: Path) -> Path:
    source = tmp_path / "good.txt"
    source.write_text("good")
    return source


def _fifo(tmp_path: Path) -> Path:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    return fifo


_BAD_ADDS: dict[str, tuple[type[repo.RepoError], Callable[[repo.Repo, Path], object]]] = {
    "nonexistent-source": (
        repo.NotFoundError,
        lambda r, tmp: r.add("x.txt", tmp / "missing.txt"),
    ),
    "directory-source": (
        repo.UsageError,
        lambda r, tmp: r.add("x.txt", tmp),
    ),
    "fifo-source": (
        repo.UsageError,
        lambda r, tmp: r.add("x.txt", _fifo(tmp)),
    ),
    "bad-tag": (
        repo.InvalidTagError,
        lambda r, tmp: r.add("x.txt", _file(tmp), tags=["ok", " padded "]),
    ),
    "tags-as-one-string": (
        repo.InvalidTagError,
        lambda r, tmp: r.add("x.txt", _file(tmp), tags="ok"),
    ),
    "bad-path": (
        repo.InvalidPathError,
        lambda r, tmp: r.add("a/../x.txt", _file(tmp)),
    ),
    "absolute-path": (
        repo.InvalidPathError,
        lambda r, tmp: r.add("/x.txt", io.BytesIO(b"x")),
    ),
    "bad-period": (
        repo.InvalidTagError,
        lambda r, tmp: r.add("x.txt", _file(tmp), period="year"),
    ),
    "bad-when": (
        repo.InvalidTagError,
        lambda r, tmp: r.add("x.txt", _file(tmp), when="2026-01-01"),
    ),
}


@pytest.mark.parametrize("case", list(_BAD_ADDS))
def test_add_with_bad_input_records_nothing(
    seeded_repo: repo.Repo, tmp_path: Path, case: str
) -> None:
    error, attempt = _BAD_ADDS[case]
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    before = _snapshot(seeded_repo)

    with pytest.raises(error) as err:
        attempt(seeded_repo, src_dir)

    assert "\n" not in str(err.value)
    # Checked without a rollback: nothing was written, not even in the open transaction.
    assert _snapshot(seeded_repo) == before


def test_adding_a_directory_hints_at_add_tree(seeded_repo: repo.Repo, tmp_path: Path) -> None:
    with pytest.raises(repo.UsageError) as err:
        seeded_repo.add("x", tmp_path)
    assert "directory" in str(err.value)
    assert err.value.hint


def _nfc_nfd_tree(tmp: Path) -> None:
    name = "café.txt"
    (tmp / unicodedata.normalize("NFC", name)).write_text("composed")
    (tmp / unicodedata.normalize("NFD", name)).write_text("decomposed")


def _broken_symlink_tree(tmp: Path) -> None:
    (tmp / "ok.txt").write_text("ok")
    (tmp / "dangling").symlink_to(tmp / "nowhere")


def _fifo_tree(tmp: Path) -> None:
    (tmp / "ok.txt").write_text("ok")
    os.mkfifo(tmp / "pipe")


def _plain_tree(tmp: Path) -> None:
    _write_tree(tmp, {"a.txt": b"a", "sub/b.txt": b"b"})


def _empty_tree(tmp: Path) -> None:
    (tmp / "only" / "empty" / "dirs").mkdir(parents=True)


def _symlinked_dirs_only_tree(tmp: Path) -> None:
    (tmp / "loop").symlink_to(tmp)
    (tmp / "elsewhere").symlink_to(tmp.parent)


_BAD_TREES: dict[str, tuple[type[repo.RepoError], Callable[[Path], None], dict[str, Any]]] = {
    "missing-directory": (repo.NotFoundError, lambda tmp: shutil.rmtree(tmp), {}),
    "empty-directory": (repo.UsageError, lambda tmp: None, {}),
    "only-empty-subdirectories": (repo.UsageError, _empty_tree, {}),
    "only-symlinked-directories": (repo.UsageError, _symlinked_dirs_only_tree, {}),
    "nfc-nfd-collision": (repo.UsageError, _nfc_nfd_tree, {}),
    "broken-symlink": (repo.NotFoundError, _broken_symlink_tree, {"follow_symlinks": True}),
    "fifo-inside": (repo.UsageError, _fifo_tree, {}),
    "bad-prefix": (repo.InvalidPathError, _plain_tree, {"prefix": "a/../b"}),
    "bad-tag": (repo.InvalidTagError, _plain_tree, {"tags": ["ok", ""]}),
    "bad-period": (repo.InvalidTagError, _plain_tree, {"period": "fortnight"}),
    "zero-workers": (repo.UsageError, _plain_tree, {"workers": 0}),
}


@pytest.mark.parametrize("case", list(_BAD_TREES))
def test_add_tree_with_bad_input_records_nothing(
    seeded_repo: repo.Repo, tmp_path: Path, case: str
) -> None:
    error, build, kwargs = _BAD_TREES[case]
    tree = tmp_path / "tree"
    tree.mkdir()
    build(tree)
    before = _snapshot(seeded_repo)

    with pytest.raises(error):
        seeded_repo.add_tree(tree, **kwargs)

    assert _snapshot(seeded_repo) == before


def test_add_tree_of_a_file_is_a_usage_error(seeded_repo: repo.Repo, tmp_path: Path) -> None:
    with pytest.raises(repo.UsageError, match="not a directory"):
        seeded_repo.add_tree(_file(tmp_path))


def test_add_tree_names_both_sources_of_an_nfc_nfd_collision(
    seeded_repo: repo.Repo, tmp_path: Path
) -> None:
    _nfc_nfd_tree(tmp_path)
    with pytest.raises(repo.UsageError) as err:
        seeded_repo.add_tree(tmp_path)
    assert "café.txt" in unicodedata.normalize("NFC", str(err.value))
    assert "would both be added as" in str(err.value)


# ----------------------------------------------------------------- staging copy


@pytest.mark.parametrize("keep_cached", [False, True], ids=["sent-in-place", "cached"])
def test_changing_the_source_after_add_changes_neither_the_version_nor_the_cache(
    local_repo: repo.Repo, tmp_path: Path, keep_cached: bool
) -> None:
    original = b"original content\n" * 1000
    source = tmp_path / "live.log"
    source.write_bytes(original)
    rf = local_repo.add("live.log", source, keep_cached=keep_cached)
    local_repo.commit()

    # Rewritten in place (same inode, same size), then grown.
    with open(source, "r+b") as fp:
        fp.write(b"X" * 16)
    with open(source, "ab") as fp:
        fp.write(b"appended later\n")

    cached = local_repo.cache.cache_path(rf.key)
    if keep_cached:
        assert not os.path.samefile(cached, source)
        assert cached.read_bytes() == original
    else:
        # Sent from where it was: this host's cache holds no second copy.
        assert not cached.exists()
        assert not any(p.is_file() for p in local_repo.session.staging.directory.rglob("*"))
    assert (rf.refresh().md5, rf.size) == (_md5(original), len(original))
    assert rf.read_bytes() == original
    assert _stored_bytes(local_repo, rf) == original


# --------------------------------------------------------------------- add_tree


_TREE = {
    "a.txt": b"alpha",
    ".hidden": b"hidden file",
    "empty.dat": b"",
    "sub/b.txt": b"beta" * 100,
    "sub/deeper/c.bin": bytes(range(256)) * 40,
    "sub/.dotdir/d.txt": b"in a hidden directory",
}


def test_add_tree_adds_every_file_under_a_prefix_tagged_and_published(
    repo: repo.Repo, tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    _write_tree(tree, _TREE)

    report = repo.add_tree(tree, prefix="imports/2026/", tags=["batch=1"], publish=True)
    repo.commit()

    expected = sorted(f"imports/2026/{rel}" for rel in _TREE)
    assert [f.path for f in report.files] == expected  # sorted by path
    assert report.bytes == sum(len(d) for d in _TREE.values())
    by_path = {f.path: f for f in report.files}
    for rel, data in _TREE.items():
        rf = by_path[f"imports/2026/{rel}"]
        assert rf.state == "published"
        assert (rf.md5, rf.size) == (_md5(data), len(data))
        assert rf.read_bytes() == data
    assert repo.tags_of(report.files) == {f.file_id: ["batch=1"] for f in report.files}
    assert [f.path for f in repo.list("imports/*")] == expected
    assert _staging_leftovers(repo) == []


def test_add_tree_in_several_batches_supersedes_current_versions(
    local_repo: repo.Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catalog records a tree in batches; each batch expires what its paths had
    current, tags every version, and keeps one current version per path."""
    monkeypatch.setattr(ingest, "RECORD_BATCH", 7)
    tree = tmp_path / "tree"
    first = {f"f{i:02d}.txt": f"one {i}".encode() for i in range(30)}
    _write_tree(tree, first)
    old = {f.path: f for f in local_repo.add_tree(tree, tags=["v1"], publish=True).files}
    local_repo.commit()
    second = {name: f"two {i}".encode() for i, name in enumerate(first)}
    second["new.txt"] = b"only in the second"
    _write_tree(tree, second)
    report = local_repo.add_tree(tree, tags=["v2", "both"], publish=True, workers=3)
    local_repo.commit()

    assert [f.path for f in report.files] == sorted(second)
    for rf in report.files:
        assert rf.state == "published"
        assert local_repo.current(rf.path) == rf
        assert rf.read_bytes() == second[rf.path]
        assert rf.published_at is not None
        if rf.path in old:
            before = old[rf.path].refresh()
            assert before.state == "expired"
            assert before.published_at is not None
            assert before.expired_at == rf.published_at
            assert before.published_at < rf.published_at
    assert local_repo.tags_of(report.files) == {f.file_id: ["both", "v2"] for f in report.files}
    assert len(local_repo.list("*")) == len(second)
    assert {f.path for f in local_repo.find(all=["v1"])} == set()  # expired: not found
    assert len(local_repo.find(all=["v2", "both"])) == len(second)


def test_add_tree_without_keeping_copies_leaves_the_cache_empty(
    local_repo: repo.Repo, tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    _write_tree(tree, {"a.txt": b"small", "b/c.bin": bytes(range(256)) * 64})
    report = local_repo.add_tree(tree, publish=True, keep_cached=False)
    local_repo.commit()
    assert local_repo.cache_status().files == 0
    assert _staging_leftovers(local_repo) == []
    assert {f.path: f.read_bytes() for f in report.files} == {
        "a.txt": b"small",
        "b/c.bin": bytes(range(256)) * 64,
    }
    assert local_repo.cache_status().files == 2  # read back: downloaded, verified


def test_add_tree_without_publish_leaves_current_versions_alone(
    local_repo: repo.Repo, tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    _write_tree(tree, {"a.txt": b"first"})
    (current,) = local_repo.add_tree(tree, publish=True).files
    _write_tree(tree, {"a.txt": b"second"})
    (new,) = local_repo.add_tree(tree, tags=["draft"]).files
    local_repo.commit()
    assert new.state == "unpublished"
    assert new.uploaded
    assert local_repo.current("a.txt") == current.refresh()
    assert current.state == "published"
    assert local_repo.newest("a.txt") == new
    assert new.tags == ["draft"]


@pytest.mark.parametrize("prefix", ["in", "in/", "/in/", "in//"])
def test_add_tree_prefix_with_or_without_slashes_gives_the_same_paths(
    sqlite_repo: repo.Repo, tmp_path: Path, prefix: str
) -> None:
    _write_tree(tmp_path / "t", {"x.txt": b"x", "d/y.txt": b"y"})
    report = sqlite_repo.add_tree(tmp_path / "t", prefix=prefix)
    assert [f.path for f in report.files] == ["in/d/y.txt", "in/x.txt"]


def test_add_tree_without_prefix_uses_paths_relative_to_the_directory(
    local_repo: repo.Repo, tmp_path: Path
) -> None:
    _write_tree(tmp_path / "t", {"x.txt": b"x", "d/y.txt": b"y"})
    report = local_repo.add_tree(str(tmp_path / "t"))
    assert [f.path for f in report.files] == ["d/y.txt", "x.txt"]
    assert all(f.state == "unpublished" and f.tags == [] for f in report.files)


@pytest.mark.parametrize("spelling", ["t", "t/", "./t/", "t/.", "t/d/..", "ABS"])
def test_add_tree_paths_do_not_depend_on_how_the_directory_is_spelled(
    local_repo: repo.Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spelling: str
) -> None:
    _write_tree(tmp_path / "t", {"x.txt": b"x", "d/y.txt": b"y", "d/e/z.txt": b"z"})
    monkeypatch.chdir(tmp_path)
    directory = str(tmp_path / "t") + "/" if spelling == "ABS" else spelling
    report = local_repo.add_tree(directory, prefix="in")
    assert [f.path for f in report.files] == ["in/d/e/z.txt", "in/d/y.txt", "in/x.txt"]
    assert [f.read_bytes() for f in report.files] == [b"z", b"y", b"x"]


def test_add_tree_date_tags_every_file(local_repo: repo.Repo, tmp_path: Path) -> None:
    _write_tree(tmp_path / "t", {"x.txt": b"x", "d/y.txt": b"y"})
    report = local_repo.add_tree(tmp_path / "t", when=date(2026, 11, 25), period="week")
    assert local_repo.tags_of(report.files) == {f.file_id: ["week=2026-W48"] for f in report.files}


def test_add_tree_does_not_follow_symlinks(sqlite_repo: repo.Repo, tmp_path: Path) -> None:
    """What `_walk` documents: links to directories and to files are skipped and reported
    (tests/test_add_symlinks.py has the rest: following them, loops, swaps)."""
    tree = tmp_path / "tree"
    _write_tree(tree, {"real/x.txt": b"x"})
    (tree / "real" / "loop").symlink_to(tree)  # would loop forever if followed
    (tree / "alias").symlink_to(tree / "real")  # would add real/x.txt twice
    (tree / "x-link.txt").symlink_to(tree / "real" / "x.txt")

    report = sqlite_repo.add_tree(tree)

    assert [f.path for f in report.files] == ["real/x.txt"]
    assert [f.read_bytes() for f in report.files] == [b"x"]
    assert report.skipped == [
        str(tree / "alias"),
        str(tree / "x-link.txt"),
        str(tree / "real/loop"),
    ]


def test_add_tree_follows_a_symlink_given_as_the_directory(
    sqlite_repo: repo.Repo, tmp_path: Path
) -> None:
    _write_tree(tmp_path / "real", {"x.txt": b"x"})
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert [f.path for f in sqlite_repo.add_tree(tmp_path / "link").files] == ["x.txt"]


def _varied_tree(root: Path, n: int = 40) -> dict[str, bytes]:
    files = {f"d{i % 4}/f{i:02d}.bin": os.urandom((i * 7919) % 50_000) for i in range(n)}
    files["big.bin"] = os.urandom(MiB + 321)  # several local-store progress chunks
    return _write_tree(root, files)


def test_add_tree_with_1_or_8_workers_gives_the_same_result(
    repo: repo.Repo, tmp_path: Path
) -> None:
    files = _varied_tree(tmp_path / "tree")
    expected = sorted((rel, _md5(data), len(data)) for rel, data in files.items())

    results = {}
    for workers in (1, 8):
        report = repo.add_tree(tmp_path / "tree", prefix=f"w{workers}", workers=workers)
        results[workers] = [(f.path.split("/", 1)[1], f.md5, f.size) for f in report.files]
        assert report.bytes == sum(len(d) for d in files.values())
        assert len({f.key for f in report.files}) == len(files)
    repo.commit()

    assert results[1] == results[8] == expected
    for rel, data in list(files.items())[::10]:
        assert repo.newest(f"w8/{rel}").read_bytes() == data


class _Recorder:
    """A `ProgressListener` that remembers what it was told."""

    def __init__(self) -> None:
        self.begins: list[tuple[int, int]] = []
        self.advances: list[int] = []
        self.done = 0
        self.events: list[str] = []

    def begin(self, total_bytes: int, total_files: int) -> None:
        self.begins.append((total_bytes, total_files))
        self.events.append("begin")

    def advance(self, nbytes: int) -> None:
        self.advances.append(nbytes)
        self.events.append("advance")

    def file_done(self) -> None:
        self.done += 1
        self.events.append("file_done")


def test_add_tree_reports_progress_to_a_listener(repo: repo.Repo, tmp_path: Path) -> None:
    files = _varied_tree(tmp_path / "tree", n=20)
    total = sum(len(d) for d in files.values())
    listener = _Recorder()

    report = repo.add_tree(tmp_path / "tree", workers=8, progress=listener)

    assert listener.begins == [(total, len(files))]
    assert listener.events[0] == "begin"
    assert all(n > 0 for n in listener.advances)
    assert sum(listener.advances) == total == report.bytes
    assert listener.done == len(files) == len(report.files)


class _ResizeOnBegin(_Recorder):
    """Changes sources once planning is over (their sizes are planned) and before any
    is read."""

    def __init__(self, changes: dict[Path, bytes]) -> None:
        super().__init__()
        self.changes = changes

    def begin(self, total_bytes: int, total_files: int) -> None:
        super().begin(total_bytes, total_files)
        for source, data in self.changes.items():
            source.write_bytes(data)


def test_add_tree_records_what_it_read_of_files_that_changed_size_after_planning(
    local_repo: repo.Repo, tmp_path: Path
) -> None:
    from repo.stores.base import SMALL_OBJECT_MAX

    tree = tmp_path / "tree"
    _write_tree(tree, {"grown.txt": b"g" * 100, "huge.bin": b"h" * 100, "shrunk.txt": b"s" * 100})
    now = {
        "grown.txt": b"g" * 5000,
        "huge.bin": os.urandom(SMALL_OBJECT_MAX + 10),  # now sent from a staging copy
        "shrunk.txt": b"s" * 3,
    }
    changes = _ResizeOnBegin({tree / name: data for name, data in now.items()})
    report = local_repo.add_tree(tree, progress=changes)
    local_repo.commit()
    for f in report.files:
        assert (f.md5, f.size) == (_md5(now[f.path]), len(now[f.path]))
        assert _stored_bytes(local_repo, f) == now[f.path]
    assert not any(p.is_file() for p in local_repo.session.staging.directory.rglob("*"))


# ------------------------------------------------------- add_tree: all or nothing


@dataclass
class _FailedAdd:
    repo: repo.Repo
    config: dict[str, str]
    error: repo.RepoError
    counts: dict[str, tuple[int, int]]
    versions: list[int]


class _RemoveOnBegin(_Recorder):
    """Deletes one source once planning is over: `begin` gets the plan's totals, so it
    runs after every source was checked and before the first one is copied."""

    def __init__(self, victim: Path) -> None:
        super().__init__()
        self.victim = victim

    def begin(self, total_bytes: int, total_files: int) -> None:
        super().begin(total_bytes, total_files)
        self.victim.unlink()


@pytest.fixture(
    params=[
        pytest.param("source-vanishes"),
        pytest.param("store-refuses", marks=pytest.mark.s3),
    ]
)
def failed_add_tree(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_url: str
) -> Iterator[_FailedAdd]:
    """An `add_tree` of twelve files that fails on the sixth, then `Repo.rollback()`.

    ``source-vanishes``: the sixth source is deleted between planning and copying.
    ``store-refuses``: an S3 server (behind the fault proxy) answers 403 to its PUT.
    """
    tree = tmp_path / "tree"
    _write_tree(tree, {f"f{i:02d}.txt": b"%d" % i * 1000 for i in range(12)})
    config = {"local_root": str(tmp_path / "local"), "database": sqlite_url, "host_name": "h"}
    proxy: FaultProxy | None = None
    progress: _Recorder | None = None
    if request.param == "source-vanishes":
        (tmp_path / "store").mkdir()
        config["store"] = (tmp_path / "store").as_uri()
        progress = _RemoveOnBegin(tree / "f05.txt")
        expected: type[repo.RepoError] = repo.UsageError
    else:
        server: MotoS3Server = request.getfixturevalue("moto_server")
        bucket = server.create_bucket(f"t-{os.urandom(6).hex()}")
        proxy = FaultProxy(server.endpoint_url).start()
        proxy.fail_requests(403, code="AccessDenied", method="PUT", path="/f05.txt", count=None)
        assert server.access_key
        assert server.secret_key
        assert server.region
        config.update(
            store=f"s3://{bucket}/pfx",
            s3_endpoint_url=proxy.endpoint_url,
            s3_access_key=server.access_key,
            s3_secret_key=server.secret_key,
            s3_region=server.region,
        )
        expected = repo.StoreError
    r = repo.Repo(config=config)
    try:
        r.add("existing.txt", io.BytesIO(b"committed before"), publish=True)
        r.commit()
        counts, versions = r.status(), [f.file_id for f in r.list("*", state="all")]
        with pytest.raises(expected) as err:
            r.add_tree(tree, prefix="batch", workers=4, tags=["t"], publish=True, progress=progress)
        assert "f05.txt" in str(err.value)
        r.rollback()
        yield _FailedAdd(r, config, err.value, counts, versions)
    finally:
        r.close()
        if proxy is not None:
            proxy.stop()


def test_add_tree_failure_then_rollback_leaves_no_catalog_rows(
    failed_add_tree: _FailedAdd,
) -> None:
    r = failed_add_tree.repo
    assert r.status() == failed_add_tree.counts
    assert [f.file_id for f in r.list("*", state="all")] == failed_add_tree.versions
    with pytest.raises(repo.NotFoundError, match="no file at path"):
        r.newest("batch/f00.txt")
    with repo.Repo(config=failed_add_tree.config) as other:  # nothing was committed either
        assert other.status() == failed_add_tree.counts


def test_add_tree_failure_leaves_no_staging_leftovers(failed_add_tree: _FailedAdd) -> None:
    assert _staging_leftovers(failed_add_tree.repo) == []


# ------------------------------------------------------- add from a failing stream


class _FailingStream(io.RawIOBase):
    """A binary stream that breaks after a few reads, like a dropped network pipe."""

    def __init__(self) -> None:
        self.reads = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        if self.reads > 2:
            raise OSError(5, "Input/output error")
        return b"x" * 10


def test_add_from_a_stream_that_fails_mid_read_records_nothing(seeded_repo: repo.Repo) -> None:
    before = _snapshot(seeded_repo)
    with pytest.raises(repo.UsageError, match="Input/output error"):
        seeded_repo.add("s.txt", _FailingStream())
    assert _snapshot(seeded_repo) == before


def test_add_from_a_text_stream_is_a_usage_error_that_records_nothing(
    seeded_repo: repo.Repo,
) -> None:
    before = _snapshot(seeded_repo)
    with pytest.raises(repo.UsageError):
        seeded_repo.add("s.txt", io.StringIO("text"))  # type: ignore[arg-type]
    assert _snapshot(seeded_repo) == before


# ------------------------------------------------------------------- save_as


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _flip_middle_byte(path: Path) -> None:
    os.chmod(path, 0o644)  # verified cached copies are read-only
    with open(path, "r+b") as fp:
        middle = os.fstat(fp.fileno()).st_size // 2
        fp.seek(middle)
        byte = fp.read(1)
        fp.seek(middle)
        fp.write(bytes([byte[0] ^ 0xFF]))
    os.chmod(path, 0o444)


def test_save_as_writes_the_content_to_a_file_path(sqlite_repo: repo.Repo, tmp_path: Path) -> None:
    data = os.urandom(50_000)
    rf = sqlite_repo.add("docs/report.pdf", io.BytesIO(data))
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    saved = rf.save_as(out_dir / "copy.pdf")

    assert saved == out_dir / "copy.pdf"
    assert saved.read_bytes() == data
    mode = stat.S_IMODE(saved.stat().st_mode)
    assert mode == 0o666 & ~_umask()  # not the cache's 0400
    assert mode & stat.S_IWUSR
    assert os.listdir(out_dir) == ["copy.pdf"]  # no temporary file left beside it


def test_save_as_into_a_directory_uses_the_paths_basename(
    sqlite_repo: repo.Repo, tmp_path: Path
) -> None:
    rf = sqlite_repo.add("docs/2026/report.pdf", io.BytesIO(b"pdf"))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    saved = rf.save_as(out_dir)
    assert saved == out_dir / "report.pdf"
    assert saved.read_bytes() == b"pdf"


def test_save_as_refuses_to_overwrite_an_existing_file(
    sqlite_repo: repo.Repo, tmp_path: Path
) -> None:
    rf = sqlite_repo.add("docs/report.pdf", io.BytesIO(b"from the repo"))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dest = out_dir / "report.pdf"
    dest.write_bytes(b"mine")

    for target in (dest, out_dir):  # named, or found by basename in the directory
        with pytest.raises(repo.ConflictError) as err:
            rf.save_as(target)
        assert str(dest) in str(err.value)
        assert err.value.hint

    assert dest.read_bytes() == b"mine"
    assert os.listdir(out_dir) == ["report.pdf"]


def test_save_as_with_overwrite_replaces_the_file(sqlite_repo: repo.Repo, tmp_path: Path) -> None:
    rf = sqlite_repo.add("docs/report.pdf", io.BytesIO(b"from the repo"))
    dest = tmp_path / "report.pdf"
    dest.write_bytes(b"mine, and longer than the new content")
    dest.chmod(0o444)

    assert rf.save_as(dest, overwrite=True) == dest

    assert dest.read_bytes() == b"from the repo"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o666 & ~_umask()


def test_save_as_replaces_a_damaged_cached_copy_and_saves_correct_content(
    repo: repo.Repo, tmp_path: Path
) -> None:
    data = os.urandom(200_000)
    rf = repo.add("d/data.bin", io.BytesIO(data))
    repo.commit()
    cached = repo.cache.cache_path(rf.key)
    assert stat.S_IMODE(cached.stat().st_mode) == 0o400
    _flip_middle_byte(cached)
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    saved = rf.save_as(out_dir)

    assert saved.read_bytes() == data  # downloaded afresh, straight into the file
    assert not cached.exists()  # evicted; save_as keeps no second copy unless asked
    assert os.listdir(out_dir) == ["data.bin"]

    _flip_middle_byte(saved)
    again = rf.save_as(out_dir, overwrite=True, keep_cached=True)
    assert again.read_bytes() == data
    assert cached.read_bytes() == data
    assert stat.S_IMODE(cached.stat().st_mode) == 0o400


def test_write_to_from_a_damaged_cached_copy_raises_and_evicts_it(repo: repo.Repo) -> None:
    data = os.urandom(200_000)
    rf = repo.add("d/data.bin", io.BytesIO(data))
    repo.commit()
    cached = repo.cache.cache_path(rf.key)
    _flip_middle_byte(cached)

    with pytest.raises(VerificationError) as err:  # `repo` is the fixture here
        rf.write_to(io.BytesIO())
    assert "damaged" in str(err.value)
    assert err.value.hint
    assert not cached.exists()

    out = io.BytesIO()
    seen: list[int] = []
    assert rf.write_to(out, progress=seen.append) == len(data)
    assert out.getvalue() == data
    assert sum(seen) == len(data)  # the retry downloaded it again
    assert cached.read_bytes() == data


# ------------------------------------------------------- list, newest, current


def test_list_selects_versions_by_state(local_repo: repo.Repo) -> None:
    r = local_repo
    a = r.add("a.txt", io.BytesIO(b"a"))
    b = r.add("b.txt", io.BytesIO(b"b"), publish=True)
    c1 = r.add("c.txt", io.BytesIO(b"c1"), publish=True)
    c2 = r.add("c.txt", io.BytesIO(b"c2"), publish=True)
    r.commit()

    def ids(pattern: str = "*", **kwargs: str) -> list[int]:
        return [f.file_id for f in r.list(pattern, **kwargs)]

    assert ids() == ids(state="published") == [b.file_id, c2.file_id]
    assert ids(state="unpublished") == [a.file_id]
    assert ids(state="expired") == [c1.file_id]
    assert ids(state="all") == [a.file_id, b.file_id, c1.file_id, c2.file_id]
    assert ids("c*", state="all") == [c1.file_id, c2.file_id]
    assert ids("?.txt", state="unpublished") == [a.file_id]


@pytest.mark.parametrize("state", ["bogus", "Published", "current", ""])
def test_list_with_an_unknown_state_is_a_usage_error(sqlite_repo: repo.Repo, state: str) -> None:
    with pytest.raises(repo.UsageError, match="unknown state") as err:
        sqlite_repo.list("*", state=state)
    assert err.value.hint
    assert "all" in err.value.hint


def test_list_with_an_empty_pattern_is_a_usage_error(sqlite_repo: repo.Repo) -> None:
    with pytest.raises(repo.UsageError):
        sqlite_repo.list("")


def test_newest_and_current_of_an_unknown_path_say_there_is_no_such_path(
    local_repo: repo.Repo,
) -> None:
    local_repo.add("other.txt", io.BytesIO(b"o"), publish=True)
    for lookup in (local_repo.newest, local_repo.current):
        with pytest.raises(repo.NotFoundError, match=r"no file at path 'nope\.txt'") as err:
            lookup("nope.txt")
        assert err.value.hint
    with pytest.raises(repo.InvalidPathError):
        local_repo.current("a/../nope.txt")


def test_current_of_an_unpublished_path_says_it_has_no_published_version(
    local_repo: repo.Repo,
) -> None:
    draft = local_repo.add("draft.txt", io.BytesIO(b"d"))

    with pytest.raises(repo.NotFoundError) as err:
        local_repo.current("draft.txt")

    assert "has no published version" in str(err.value)
    assert f"file {draft.file_id}, unpublished" in str(err.value)
    assert err.value.hint == f"publish it with `repo publish {draft.file_id}`"
    assert local_repo.newest("draft.txt") == draft


def test_current_of_an_expired_path_says_it_has_no_published_version(
    local_repo: repo.Repo,
) -> None:
    gone = local_repo.add("gone.txt", io.BytesIO(b"g"), publish=True).expire()

    with pytest.raises(repo.NotFoundError) as err:
        local_repo.current("gone.txt")

    assert f"has no published version (newest is file {gone.file_id}, expired)" in str(err.value)
    assert err.value.hint == "see `repo show gone.txt`"
    assert local_repo.newest("gone.txt") == gone


# ------------------------------------------------------------------ keys taken by leftovers


def test_add_tree_progress_counts_each_byte_once_when_a_key_is_taken_by_a_leftover(
    sqlite_repo: repo.Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import repo.ingest

    # The first token `add_tree` draws names a key a leftover already holds, so the put
    # conflicts and the version must move to a fresh key (drawn elsewhere).
    taken = "01zzzzzzzzzzzzzzzzzzzzzzzz"
    tokens = iter([taken])
    real = repo.ingest.new_version_token
    monkeypatch.setattr(repo.ingest, "new_version_token", lambda: next(tokens, None) or real())
    leftover = tmp_path / "leftover"
    leftover.write_bytes(b"not ours")
    store = sqlite_repo.store
    store.put_file(f"{store.key_prefix}data/a.txt~{taken}", leftover)
    _write_tree(tmp_path / "tree", {"a.txt": b"A" * 1000})
    listener = _Recorder()

    report = sqlite_repo.add_tree(tmp_path / "tree", workers=1, progress=listener)

    assert next(tokens, None) is None  # the taken token was drawn: the conflict happened
    assert not report.files[0].key.endswith(taken)  # moved to a fresh key
    assert b"".join(store.iter_bytes(f"{store.key_prefix}data/a.txt~{taken}")) == b"not ours"
    assert report.files[0].read_bytes() == b"A" * 1000
    assert sum(listener.advances) == 1000


def test_save_as_over_a_directory_is_a_repo_error(sqlite_repo: repo.Repo, tmp_path: Path) -> None:
    rf = sqlite_repo.add("d/x.txt", io.BytesIO(b"x"))
    (tmp_path / "out" / "x.txt").mkdir(parents=True)
    with pytest.raises(repo.RepoError):
        rf.save_as(tmp_path / "out", overwrite=True)
    assert os.listdir(tmp_path / "out") == ["x.txt"]  # and no temporary file left


@pytest.mark.parametrize("keep_cached", [None, False, True])
def test_a_stream_is_cached_unless_asked_not_to_be(
    local_repo: repo.Repo, keep_cached: bool | None
) -> None:
    data = b"streamed\n" * 100
    rf = local_repo.add("s.log", io.BytesIO(data), publish=True, keep_cached=keep_cached)
    local_repo.commit()
    assert local_repo.cache.cache_path(rf.key).exists() == (keep_cached is not False)
    assert rf.read_bytes() == data
    assert _stored_bytes(local_repo, rf) == data
