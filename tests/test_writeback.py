"""`start_writeback`: the early disk write of a large download's pages (Linux's
sync_file_range), which may only ever move when the disk is written, never change what
the file holds or fail a download."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import pytest

from repo import writeback

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_the_call_is_found_on_linux_and_starts_a_write_of_a_range(tmp_path: Path) -> None:
    call = writeback._sync_file_range()
    assert call is not None
    data = os.urandom(1 << 20)
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, data, 0)
        assert call(fd, 0, len(data), writeback.SYNC_FILE_RANGE_WRITE) == 0
        writeback.start_writeback(fd, 0, len(data))
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == data


def test_a_descriptor_it_cannot_use_is_not_an_error(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "g", os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    writeback.start_writeback(fd, 0, 4096)  # closed: the kernel says EBADF, nothing raised
    writeback.start_writeback(-1, 0, 4096)
    writeback.start_writeback(0, 0, 0)  # nothing to write
