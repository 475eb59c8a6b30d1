"""Symbolic links under a directory added with `Repo.add_tree` / `repo add --recursive`.

A link planted in a shared directory must not make whoever adds it upload a file from
elsewhere: links (to files or directories) are skipped and reported unless asked for
(`follow_symlinks`, `--follow-symlinks`), and what is read is the very file planned, so
a link swapped in after planning is refused, not followed.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import pytest

import repo
from repo.stores.base import SMALL_OBJECT_MAX

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from conftest import CliRun

SECRET = b"root only: never to be uploaded\n"


@pytest.fixture
def r(embedded_config: dict[str, str]) -> Iterator[repo.Repo]:
    """A `Repo` on SQLite and a directory store: links are a matter of the local disk."""
    with repo.Repo(config=embedded_config) as opened:
        yield opened


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """``tree/own.txt``, plus ``tree/leak.txt`` linking to a file outside the tree and
    ``tree/linked-dir`` linking to a directory outside it."""
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret.txt").write_bytes(SECRET)
    (outside / "dir" / "inner.txt").write_bytes(SECRET)
    root = tmp_path / "tree"
    root.mkdir()
    (root / "own.txt").write_bytes(b"own")
    (root / "leak.txt").symlink_to(outside / "secret.txt")
    (root / "linked-dir").symlink_to(outside / "dir")
    return root


def _stored_contents(r: repo.Repo) -> list[bytes]:
    """The content of every object in the store (whatever the catalog says)."""
    contents = []
    for info in r.store.list(r.store.key_prefix):
        chunks = r.store.iter_bytes(info.key)
        contents.append(b"".join(chunks))
    return contents


def _all_paths(r: repo.Repo) -> list[str]:
    return sorted(f.path for f in r.list("*", state="all"))


# ------------------------------------------------------------------- the library


def test_add_tree_skips_links_to_a_file_and_a_directory_outside_and_reports_them(
    r: repo.Repo, tree: Path
) -> None:
    report = r.add_tree(tree)
    r.commit()

    assert [f.path for f in report.files] == ["own.txt"]
    assert report.skipped == [str(tree / "leak.txt"), str(tree / "linked-dir")]
    assert _all_paths(r) == ["own.txt"]
    assert SECRET not in _stored_contents(r)


def test_add_tree_with_follow_symlinks_adds_what_the_links_point_to(
    r: repo.Repo, tree: Path
) -> None:
    report = r.add_tree(tree, follow_symlinks=True)
    r.commit()

    assert [f.path for f in report.files] == ["leak.txt", "linked-dir/inner.txt", "own.txt"]
    assert [f.read_bytes() for f in report.files] == [SECRET, SECRET, b"own"]
    assert report.skipped == []


def test_following_symlinks_skips_a_link_back_up_the_tree(r: repo.Repo, tmp_path: Path) -> None:
    root = tmp_path / "tree"
    (root / "real").mkdir(parents=True)
    (root / "real" / "x.txt").write_bytes(b"x")
    (root / "real" / "loop").symlink_to(root)  # would loop forever if followed
    (root / "alias").symlink_to(root / "real")  # followed: real/x.txt once more

    report = r.add_tree(root, follow_symlinks=True)

    assert [f.path for f in report.files] == ["alias/x.txt", "real/x.txt"]
    assert report.skipped == [str(root / "alias" / "loop"), str(root / "real" / "loop")]


def test_a_dangling_link_is_skipped_unless_links_are_followed(r: repo.Repo, tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    (root / "ok.txt").write_bytes(b"ok")
    (root / "dangling").symlink_to(tmp_path / "nowhere")

    with pytest.raises(repo.NotFoundError, match=r"no such file: .*/dangling$"):
        r.add_tree(root, follow_symlinks=True)
    assert _all_paths(r) == []

    report = r.add_tree(root)
    assert [f.path for f in report.files] == ["ok.txt"]
    assert report.skipped == [str(root / "dangling")]


def test_a_tree_of_links_only_says_how_to_follow_them(r: repo.Repo, tree: Path) -> None:
    (tree / "own.txt").unlink()
    with pytest.raises(repo.UsageError, match="no files under") as err:
        r.add_tree(tree)
    assert err.value.hint == "symbolic links are not followed unless asked (--follow-symlinks)"


def test_the_directory_given_is_followed_even_if_it_is_a_link(
    r: repo.Repo, tree: Path, tmp_path: Path
) -> None:
    (tmp_path / "link-to-tree").symlink_to(tree)
    report = r.add_tree(tmp_path / "link-to-tree")
    assert [f.path for f in report.files] == ["own.txt"]
    assert report.skipped == [
        str(tmp_path / "link-to-tree" / "leak.txt"),
        str(tmp_path / "link-to-tree" / "linked-dir"),
    ]


class _OnBegin:
    """A progress listener that changes the tree once planning is over (`begin` gets the
    plan's totals) and before any file is read."""

    def __init__(self, change: Callable[[], None]) -> None:
        self.change = change

    def begin(self, total_bytes: int, total_files: int) -> None:
        self.change()

    def advance(self, nbytes: int) -> None:
        pass

    def file_done(self) -> None:
        pass


# A small file is read into memory, a large one copied into staging: both are opened
# the same careful way.
SIZES = [pytest.param(3, id="small"), pytest.param(SMALL_OBJECT_MAX + 1, id="large")]


@pytest.mark.parametrize("size", SIZES)
def test_a_link_swapped_in_after_planning_is_not_followed(
    r: repo.Repo, tmp_path: Path, size: int
) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    (root / "own.txt").write_bytes(b"o" * size)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET)

    def swap() -> None:
        (root / "own.txt").unlink()
        (root / "own.txt").symlink_to(secret)

    with pytest.raises(repo.UsageError, match=r"own\.txt was replaced by a symbolic link"):
        r.add_tree(root, progress=_OnBegin(swap))
    r.rollback()
    assert _all_paths(r) == []
    assert SECRET not in _stored_contents(r)


@pytest.mark.parametrize("size", SIZES)
def test_a_directory_swapped_for_a_link_after_planning_is_not_read(
    r: repo.Repo, tmp_path: Path, size: int
) -> None:
    """O_NOFOLLOW guards the last step of a path only: a directory above the file
    swapped for a link is caught because the file found is not the one planned."""
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "own.txt").write_bytes(b"o" * size)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "own.txt").write_bytes(SECRET)

    def swap() -> None:
        os.rename(root / "sub", tmp_path / "moved-away")
        (root / "sub").symlink_to(elsewhere)

    with pytest.raises(repo.UsageError, match=r"own\.txt was replaced by another file"):
        r.add_tree(root, progress=_OnBegin(swap))
    r.rollback()
    assert _all_paths(r) == []
    assert SECRET not in _stored_contents(r)


def test_a_followed_link_pointed_elsewhere_after_planning_is_not_read(
    r: repo.Repo, tmp_path: Path
) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    (tmp_path / "planned.txt").write_bytes(b"planned")
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (root / "link.txt").symlink_to(tmp_path / "planned.txt")

    def retarget() -> None:
        (root / "link.txt").unlink()
        (root / "link.txt").symlink_to(tmp_path / "secret.txt")

    with pytest.raises(repo.UsageError, match=r"link\.txt was replaced by another file"):
        r.add_tree(root, follow_symlinks=True, progress=_OnBegin(retarget))
    r.rollback()
    assert SECRET not in _stored_contents(r)


# ------------------------------------------------------------------- the command


def test_cli_add_recursive_skips_links_with_one_warning_each(
    embedded_cli: CliRun, tree: Path
) -> None:
    result = embedded_cli("add", str(tree), "--recursive")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == "added 1 files (3 B, unpublished); skipped 2 symbolic links\n"
    assert result.stderr.splitlines() == [
        f"Warning: skipped symbolic link {tree}/leak.txt",
        f"Warning: skipped symbolic link {tree}/linked-dir",
        "Try: --follow-symlinks to add what they point to",
    ]
    listed = json.loads(embedded_cli("list", "--state", "all", "--json").stdout)
    assert [f["path"] for f in listed["files"]] == ["own.txt"]


def test_cli_add_recursive_with_follow_symlinks_adds_what_they_point_to(
    embedded_cli: CliRun, tree: Path
) -> None:
    result = embedded_cli("add", str(tree), "--recursive", "--follow-symlinks")

    assert result.exit_code == 0, result.stderr
    total = 2 * len(SECRET) + 3
    assert result.stdout == f"added 3 files ({total} B, unpublished)\n"
    assert result.stderr == ""


def test_cli_add_recursive_json_lists_the_skipped_links(embedded_cli: CliRun, tree: Path) -> None:
    result = embedded_cli("add", str(tree), "--recursive", "--json")

    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert list(doc) == ["files", "skipped"]
    assert [f["path"] for f in doc["files"]] == ["own.txt"]
    assert doc["skipped"] == [f"{tree}/leak.txt", f"{tree}/linked-dir"]


def test_cli_follow_symlinks_needs_recursive(embedded_cli: CliRun, tree: Path) -> None:
    result = embedded_cli("add", "x.txt", str(tree / "own.txt"), "--follow-symlinks")
    assert result.exit_code == 2
    assert "--follow-symlinks needs --recursive" in result.stderr
