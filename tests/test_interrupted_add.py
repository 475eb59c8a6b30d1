"""Work that is rolled back (an error, Ctrl-C) takes its uploads with it: the objects
it wrote that no uploaded version names are deleted on the way out, not left for
`gc --orphans`; objects of versions committed before are never touched."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import pytest

from repo import Repo

if TYPE_CHECKING:
    from pathlib import Path


def data_keys(config: dict[str, str]) -> list[str]:
    with Repo(config) as r:
        prefix = r.store.key_prefix + "data/"
        return sorted(o.key for o in r.store.list(prefix))


class CtrlCAfter:
    """A progress listener that acts like a Ctrl-C once `files` files are sent."""

    def __init__(self, files: int) -> None:
        self.files = files

    def begin(self, total_bytes: int, total_files: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def file_done(self) -> None:
        self.files -= 1
        if self.files == 0:
            raise KeyboardInterrupt


def test_a_tree_add_cut_off_by_ctrl_c_leaves_no_object(
    repo_config: dict[str, str], tmp_path: Path
) -> None:
    with Repo(repo_config) as r:
        kept = r.add("kept.txt", io.BytesIO(b"committed before"), publish=True)
    before = data_keys(repo_config)
    assert before == [kept.key]
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(40):
        (tree / f"{i:02}.txt").write_text(f"file {i}\n")

    with pytest.raises(KeyboardInterrupt), Repo(repo_config) as r:
        r.add_tree(tree, prefix="run/", workers=4, progress=CtrlCAfter(files=5))

    assert data_keys(repo_config) == before  # at least 5 were stored, and went
    with Repo(repo_config) as r:
        assert [f.path for f in r.list("*", state="all")] == ["kept.txt"]
        assert r.current("kept.txt").read_bytes() == b"committed before"


def test_rolled_back_adds_delete_their_objects_and_keep_committed_ones(
    repo_config: dict[str, str], tmp_path: Path
) -> None:
    source = tmp_path / "daily.csv"
    source.write_text("day,visits\n")
    with Repo(repo_config) as r:
        committed = r.add("a.csv", source, publish=True)
        r.commit()
        r.add("b.csv", source)  # from a file, sent where it is
        r.add("c.csv", io.BytesIO(b"from memory"), publish=True)  # through staging and upload()
        draft = r.add_file("d.csv")
        draft.touch("written here")
        draft.upload()
        assert len(data_keys(repo_config)) == 4
        r.rollback()
        assert data_keys(repo_config) == [committed.key]
        # The session goes on: what it does next is kept as usual.
        again = r.add("b.csv", source)
    assert data_keys(repo_config) == sorted([committed.key, again.key])


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_an_upload_of_an_earlier_version_rolled_back_can_be_redone(
    repo_config: dict[str, str],
) -> None:
    with Repo(repo_config) as r:
        draft = r.add_file("notes.txt")
        draft.touch("draft\n")
    with Repo(repo_config) as r:
        f = r.newest("notes.txt")
        f.upload()
        r.rollback()  # the row stays, not uploaded: its object goes
        assert data_keys(repo_config) == []
        f = r.newest("notes.txt")
        assert f.md5 is None
        f.upload()  # its staging copy was given back: the same key, uploaded again
        assert data_keys(repo_config) == [f.key]
    with Repo(repo_config) as r:
        assert r.newest("notes.txt").read_bytes() == b"draft\n"
