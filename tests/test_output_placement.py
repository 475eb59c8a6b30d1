"""Where `get -o` and `fetch -o` write: never into another user's directory, and never
one version in another's place.

A directory created in a shared place under the name a job writes to (`-o NAME`) would
receive the file, readable and replaceable by whoever made it; two paths where one is a
directory of the other (``cfg`` and ``cfg/cfg``) once landed on top of each other.
"""

from __future__ import annotations

import os
import socket
import stat
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import repo
from conftest import CliRun, write_config
from repo.destinations import is_stream
from repo.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Iterator

STRANGER = 54321  # a uid that is neither ours nor root's


@pytest.fixture
def r(local_config: dict[str, str]) -> Iterator[repo.Repo]:
    with repo.Repo(local_config) as rp:
        rp.add_file("cfg").touch(b"top").publish()
        rp.add_file("cfg/cfg").touch(b"nested").publish()
        rp.commit()
        yield rp


@pytest.mark.skipif(os.geteuid() != 0, reason="making a directory another user's needs root")
def test_get_never_writes_into_another_users_directory(
    r: repo.Repo, tmp_path: Path, local_config: dict[str, str]
) -> None:
    planted = tmp_path / "shared" / "report.csv"
    planted.mkdir(parents=True)
    os.chown(planted, STRANGER, STRANGER)
    with pytest.raises(repo.UsageError, match="another user's") as err:
        r.current("cfg").save_as(planted)
    assert err.value.hint
    assert list(planted.iterdir()) == []
    run = CliRun(write_config(tmp_path / "cfg.json", local_config), tmp_path)
    result = run("get", "cfg", "-o", str(planted))
    assert result.exit_code != 0
    assert "another user's" in result.output
    assert list(planted.iterdir()) == []
    # A directory of one's own (or root's) still takes the file, as `cp` would.
    own = tmp_path / "mine"
    own.mkdir()
    assert r.current("cfg").save_as(own) == own / "cfg"


def test_fetch_refuses_paths_where_one_is_a_directory_of_the_other(
    r: repo.Repo, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    with pytest.raises(repo.UsageError, match="one is a directory of the other"):
        r.fetch([r.current("cfg/cfg"), r.current("cfg")], dest=out)
    assert not out.exists() or list(out.rglob("*")) == []
    # Apart, each lands exactly at DIR/<its path>.
    r.fetch([r.current("cfg/cfg")], dest=out)
    r.fetch([r.current("cfg")], dest=tmp_path / "out2")
    assert (out / "cfg" / "cfg").read_bytes() == b"nested"
    assert (tmp_path / "out2" / "cfg").read_bytes() == b"top"


def test_fetch_never_writes_a_file_into_a_directory_in_its_place(
    r: repo.Repo, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    (out / "cfg").mkdir(parents=True)  # where the file cfg belongs
    with pytest.raises(repo.UsageError, match="is a directory"):
        r.fetch([r.current("cfg")], dest=out, overwrite=True)
    assert list((out / "cfg").iterdir()) == []


# ------------------------------------------- destinations that are no regular file


def test_get_writes_into_a_fifo_as_cp_does_and_leaves_it_a_fifo(
    r: repo.Repo, tmp_path: Path
) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    assert r.current("cfg").save_as(fifo) == fifo  # no overwrite needed: nothing replaced
    reader.join(timeout=30)
    assert got == [b"top"]
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_dev_null_is_written_into_never_replaced() -> None:
    # What `repo get x -o /dev/null -f` used to do as root: rename a file over it.
    assert is_stream(Path("/dev/null")) is True
    with pytest.raises(UsageError, match="is not a regular file"):
        is_stream(Path("/dev/null"), exact=True)  # fetch -o fills places with files only
    assert is_stream(Path("/nonexistent-dir/x")) is False


def test_a_socket_in_the_way_is_refused_and_kept(r: repo.Repo, tmp_path: Path) -> None:
    path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        with pytest.raises(UsageError) as err:
            r.current("cfg").save_as(path, overwrite=True)
        assert err.value.message == f"{path} exists and is not a regular file; not replacing it"
        assert stat.S_ISSOCK(path.stat().st_mode)
