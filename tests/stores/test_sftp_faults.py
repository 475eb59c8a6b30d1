"""The ``sftp://`` store when things go wrong on a real OpenSSH server: the connection
dropped mid-transfer (a relay that resets it after so many bytes), the server's disk
full (a tiny tmpfs, mounted when the tests run as root), and a directory the login user
may not write. Each failure is one line saying what to do, and nothing half-written
appears under an object's name.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from harness.tcp_cut import CuttingRelay
from repo.errors import NotFoundError, StoreError
from repo.stores.sftp import SftpStore

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from harness.sshd import SshServer

MiB = 1024 * 1024
MOUNT = shutil.which("mount") or "/bin/mount"
UMOUNT = shutil.which("umount") or "/bin/umount"


@pytest.fixture
def relay(sshd_server: SshServer) -> Iterator[CuttingRelay]:
    with CuttingRelay(sshd_server.port) as r:
        yield r


def _through(relay: CuttingRelay, server: SshServer, root: Path, tmp_path: Path) -> SftpStore:
    """A store reaching `server` through `relay` (its own known_hosts line for the port)."""
    known = server.known_hosts_for(relay.port, tmp_path / "relay_known_hosts")
    return SftpStore(server.url(root, port=relay.port), key_file=server.key_file, known_hosts=known)


def _source(tmp_path: Path, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / "src.bin"
    path.write_bytes(data)
    return path, data


def test_an_upload_cut_off_midway_is_sent_again_and_reported_once(
    sshd_server: SshServer, relay: CuttingRelay, tmp_path: Path
) -> None:
    root = sshd_server.new_root()
    store = _through(relay, sshd_server, root, tmp_path)
    src, data = _source(tmp_path, 24 * MiB)
    relay.cut_after(12 * MiB)  # the first connection only: mid-upload
    seen: list[int] = []
    try:
        result = store.put_file("data/big~1", src, progress=seen.append)
        assert relay.cuts == 1
        assert (result.md5, result.size) == (hashlib.md5(data).hexdigest(), len(data))
        assert sum(seen) == len(data)  # bytes sent twice are reported once
        out = io.BytesIO()
        store.get_into("data/big~1", out)
        assert out.getvalue() == data
        # The cut-off attempt's temporary file could not be removed over a dead link:
        # garbage collection's sweep finds it.
        assert store.clean_temporaries("", datetime.now(UTC) + timedelta(hours=1)) == 1
        assert [p.name for p in (root / "data").iterdir()] == ["big~1"]
    finally:
        store.close()


def test_a_download_cut_off_midway_resumes_where_it_broke_off(
    sshd_server: SshServer, relay: CuttingRelay, tmp_path: Path
) -> None:
    root = sshd_server.new_root()
    store = _through(relay, sshd_server, root, tmp_path)
    src, data = _source(tmp_path, 24 * MiB)
    try:
        store.put_file("data/big~1", src)
        store.close()
        store = _through(relay, sshd_server, root, tmp_path)
        relay.cut_after(8 * MiB)
        out = io.BytesIO()
        got = store.get_into("data/big~1", out)
        assert relay.cuts == 1
        assert out.getvalue() == data
        assert got.md5 == hashlib.md5(data).hexdigest()
    finally:
        store.close()


def test_a_connection_that_keeps_dropping_fails_in_one_line_and_leaves_no_object(
    sshd_server: SshServer, relay: CuttingRelay, tmp_path: Path
) -> None:
    root = sshd_server.new_root()
    store = _through(relay, sshd_server, root, tmp_path)
    src, _ = _source(tmp_path, 8 * MiB)
    relay.cut_after(2 * MiB, connections=None)
    try:
        with pytest.raises(StoreError, match=r"connection to .* was lost") as err:
            store.put_file("data/big~1", src)
        assert relay.cuts == 3  # tried a bounded number of times
        assert "\n" not in str(err.value)
        assert err.value.hint
        relay.cut_after(0, connections=0)
        with pytest.raises(NotFoundError):
            store.head("data/big~1")
    finally:
        store.close()


@pytest.fixture(params=["shell", "sftp-only"])
def any_server(request: pytest.FixtureRequest) -> SshServer:
    """Each kind of account: bytes move by cat, or by SFTP requests."""
    name = "sshd_server" if request.param == "shell" else "sshd_sftp_only_server"
    server: SshServer = request.getfixturevalue(name)
    return server


def test_a_directory_the_user_may_not_write_is_permission_denied(
    any_server: SshServer,
) -> None:
    sshd_server = any_server
    root = sshd_server.new_root()
    store = SftpStore(
        sshd_server.url(root), key_file=sshd_server.key_file, known_hosts=sshd_server.known_hosts
    )
    try:
        store.put_bytes("data/readable~1", b"there before")
        (root / "data").chmod(0o555)
        with pytest.raises(StoreError, match="permission denied") as err:
            store.put_bytes("data/new~1", b"refused")
        assert "may read and write" in str(err.value.hint)
        assert b"".join(store.iter_bytes("data/readable~1")) == b"there before"
        with pytest.raises(NotFoundError):
            store.head("data/new~1")
    finally:
        (root / "data").chmod(0o755)
        store.close()


@contextlib.contextmanager
def _tiny_disk(server: SshServer, mount_point: Path, size: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root (CI runs as root)")
    mount_point.mkdir()
    done = subprocess.run(
        [MOUNT, "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        os.chown(mount_point, server.uid, server.gid)
        yield mount_point
    finally:
        subprocess.run([UMOUNT, "-l", str(mount_point)], check=False)
        mount_point.rmdir()


def test_a_full_disk_on_the_server_says_so_and_leaves_nothing(
    any_server: SshServer, tmp_path: Path
) -> None:
    sshd_server = any_server
    with _tiny_disk(sshd_server, sshd_server.data / f"disk-{os.urandom(4).hex()}", "4m") as disk:
        store = SftpStore(
            sshd_server.url(disk),
            key_file=sshd_server.key_file,
            known_hosts=sshd_server.known_hosts,
        )
        src, _ = _source(tmp_path, 10 * MiB)  # by cat where the account may run it
        try:
            with pytest.raises(StoreError, match="no space left") as err:
                store.put_file("data/big~1", src)
            assert "free space" in str(err.value.hint)
            assert store._session.commands is (not any_server.sftp_only)  # cat, or SFTP
            with pytest.raises(NotFoundError):
                store.head("data/big~1")
            assert list((disk / "data").iterdir()) == []  # the temporary file is gone
            store.put_bytes("data/small~1", b"room for this")  # and its space is back
        finally:
            store.close()
