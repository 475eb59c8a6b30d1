"""What the ``sftp://`` store adds to the store contract (test_store_contract.py runs that
on it): OpenSSH's rename that never replaces, keys that stay inside the root, listings
that follow no symbolic link, host keys checked, logins and refusals that say what to do,
and the read-back check on an account that may run no command. All against a real
OpenSSH server (tests/harness/sshd.py).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import asyncssh
import pytest

from harness.sshd import SshServer, keygen, sshd_missing
from repo.config import load_config
from repo.errors import ConfigError, InvalidPathError, NotFoundError, StoreError, VerificationError
from repo.integrity import ETAG, READ_BACK
from repo.stores import open_store, sftp_put
from repo.stores.sftp import SftpStore

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from repo.stores.sftp_session import Session


def _store(server: SshServer, root: Path | str | None = None, **kwargs: object) -> SftpStore:
    options: dict[str, object] = {
        "key_file": server.key_file,
        "known_hosts": server.known_hosts,
        **kwargs,
    }
    return SftpStore(server.url(root or server.new_root()), **options)  # type: ignore[arg-type]


@pytest.fixture
def store(sshd_server: SshServer) -> Iterator[SftpStore]:
    s = _store(sshd_server)
    yield s
    s.close()


def test_openssh_rename_refuses_an_existing_target(store: SftpStore) -> None:
    # The create-only guarantee rests on this: plain SSH_FXP_RENAME (SFTP version 3)
    # fails when the new name exists, where posix-rename@openssh.com replaces it.
    store.put_bytes("a~1", b"first")
    store.put_bytes("b~1", b"second")
    a, b = f"{store.root}/a~1", f"{store.root}/b~1"

    async def rename(sftp: asyncssh.SFTPClient) -> None:
        await sftp.rename(a, b)

    with pytest.raises(asyncssh.SFTPError) as err:
        store._session.call(rename)
    assert err.value.code == asyncssh.FX_FAILURE
    assert b"".join(store.iter_bytes("b~1")) == b"second"
    assert b"".join(store.iter_bytes("a~1")) == b"first"


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "../escape",
        "a/../../escape",
        "a//b",
        "a/./b",
        "a\0b",
        "a\nb",
        ".repo-meta/x~1",
        "data/.tmp-1234",
    ],
)
def test_keys_that_would_leave_the_root_or_touch_its_own_files_are_refused(
    store: SftpStore, sshd_server: SshServer, key: str
) -> None:
    with pytest.raises(InvalidPathError, match="invalid object key"):
        store.put_bytes(key, b"x")
    with pytest.raises(InvalidPathError):
        store.head(key)
    with pytest.raises(InvalidPathError):
        store.delete_many([key])
    assert not (sshd_server.data / "escape").exists()


def test_listing_follows_no_symbolic_link_out_of_the_root_and_skips_what_no_key_names(
    store: SftpStore, sshd_server: SshServer, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret~1").write_bytes(b"not the store's")
    store.put_bytes("data/real~1", b"real")
    root = sshd_server.data / store.root.rsplit("/", 1)[1]
    (root / "data" / "linked-dir").symlink_to(outside)
    (root / "data" / "linked-file~1").symlink_to(outside / "secret~1")
    (root / "data" / "no\nkey~1").write_bytes(b"a name no key can have")

    assert [o.key for o in store.list("data/")] == ["data/real~1"]
    assert [o.key for o in store.list()] == ["data/real~1"]
    with pytest.raises(NotFoundError):
        store.get_into("data/linked-file~1", io.BytesIO())
    assert store.clean_temporaries("", _far_future()) == 0
    assert (outside / "secret~1").exists()


def test_listing_reads_directories_of_many_batches_and_deletes_them(
    store: SftpStore, sshd_server: SshServer
) -> None:
    # OpenSSH answers READDIR in batches of 100 names; 1,005 objects made on the server's
    # disk directly (puts one by one would take a minute), listed and deleted over SFTP.
    root = sshd_server.data / store.root.rsplit("/", 1)[1]
    many = sshd_server.make_dir(root / "data")
    many = sshd_server.make_dir(many / "many")
    keys = [f"data/many/{i:05d}~t" for i in range(1005)]
    for key in keys:
        (root / key).write_bytes(b"p")
    assert sorted(o.key for o in store.list("data/many/")) == keys
    assert sorted(o.key for o in store.list("data/many/0010")) == keys[100:110]
    assert store.delete_many(keys) == 1005
    assert list(store.list("data/")) == []


def test_threads_share_one_connection_through_pooled_channels(store: SftpStore) -> None:
    # The code above the store is threaded (parallel fetches, GC's deletes): each
    # thread's operations take a channel of their own over the one connection.
    from concurrent.futures import ThreadPoolExecutor

    blobs = {f"data/t/{i}~1": os.urandom(50_000 + i) for i in range(24)}

    def round_trip(key: str) -> bytes:
        store.put_bytes(key, blobs[key])
        return b"".join(store.iter_bytes(key))

    first = store._session.run(store._session.connection())
    with ThreadPoolExecutor(8) as pool:
        got = dict(zip(blobs, pool.map(round_trip, blobs), strict=True))
    assert got == blobs
    assert store._session.run(store._session.connection()) is first  # never a second one
    assert sorted(o.key for o in store.list("data/t/")) == sorted(blobs)


def test_an_account_that_may_run_no_command_has_uploads_read_back() -> None:
    if sshd_missing():
        pytest.skip(str(sshd_missing()))
    with SshServer(sftp_only=True) as server:
        s = _store(server)
        try:
            result = s.put_bytes("data/x~1", b"read me back")
            assert result.verified_with == READ_BACK
            assert s.head("data/x~1").etag == hashlib.md5(b"read me back").hexdigest()
            assert s._session.commands is False
        finally:
            s.close()


def test_uploads_are_checked_by_md5sum_on_the_server(store: SftpStore) -> None:
    result = store.put_bytes("data/x~1", b"checked there")
    assert result.verified_with == ETAG
    assert store._session.commands is True


def test_an_upload_the_server_holds_differently_fails_and_leaves_nothing(
    store: SftpStore, sshd_server: SshServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server's md5 of the temporary file disagrees with what was sent.
    async def wrong_md5(session: Session, path: str, timeout: float) -> str:
        return hashlib.md5(b"something else").hexdigest()

    monkeypatch.setattr(sftp_put, "server_md5", wrong_md5)
    with pytest.raises(VerificationError, match="failed verification"):
        store.put_bytes("data/x~1", b"sent")
    with pytest.raises(NotFoundError):
        store.head("data/x~1")
    root = sshd_server.data / store.root.rsplit("/", 1)[1]
    assert [p.name for p in (root / "data").iterdir()] == []


def test_an_unknown_host_key_is_refused_with_the_command_that_adds_it(
    sshd_server: SshServer, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    s = _store(sshd_server, known_hosts=empty)
    with pytest.raises(StoreError, match="not in known_hosts") as err:
        s.put_bytes("x~1", b"x")
    s.close()
    assert f"ssh-keyscan -p {sshd_server.port} 127.0.0.1 >> {empty}" in str(err.value.hint)
    assert "\n" not in str(err.value)
    # A different key for the same host and port: refused just the same.
    other = tmp_path / "other_host_key"
    keygen(other)
    kind, key = (tmp_path / "other_host_key.pub").read_text().split()[:2]
    empty.write_text(f"[127.0.0.1]:{sshd_server.port} {kind} {key}\n")
    s = _store(sshd_server, known_hosts=empty)
    with pytest.raises(StoreError, match="known_hosts"):
        s.head("x~1")
    s.close()


def test_a_missing_known_hosts_file_is_refused(sshd_server: SshServer, tmp_path: Path) -> None:
    s = _store(sshd_server, known_hosts=tmp_path / "absent")
    with pytest.raises(ConfigError, match="no known_hosts file") as err:
        s.head("x~1")
    s.close()
    assert "ssh-keyscan" in str(err.value.hint)


def test_a_key_the_server_does_not_know_fails_login(sshd_server: SshServer, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    keygen(stranger)
    s = _store(sshd_server, key_file=stranger)
    with pytest.raises(StoreError, match=r"SSH login to .* failed") as err:
        s.head("x~1")
    s.close()
    assert "authorized_keys" in str(err.value.hint)


def test_without_a_key_file_the_ssh_agent_logs_in(
    sshd_server: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent_bin, add_bin = shutil.which("ssh-agent"), shutil.which("ssh-add")
    if agent_bin is None or add_bin is None:
        pytest.fail("ssh-agent is missing: run scripts/ensure-sshd")
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen([agent_bin, "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.02)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run([add_bin, "-q", str(sshd_server.key_file)], env=env, check=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        s = _store(sshd_server, key_file=None)  # HOME is a fresh directory: no ~/.ssh keys
        try:
            s.put_bytes("by-agent~1", b"agent")
            assert b"".join(s.iter_bytes("by-agent~1")) == b"agent"
        finally:
            s.close()
        # Without the agent and without a key file there is nothing to log in with.
        monkeypatch.delenv("SSH_AUTH_SOCK")
        s = _store(sshd_server, key_file=None)
        with pytest.raises(StoreError, match="SSH login"):
            s.head("by-agent~1")
        s.close()
    finally:
        agent.terminate()
        agent.wait(10)


def test_a_key_file_that_is_missing_or_no_key_is_named(
    sshd_server: SshServer, tmp_path: Path
) -> None:
    not_a_key = tmp_path / "not_a_key"
    not_a_key.write_text("hello\n")
    for key_file in (tmp_path / "absent", not_a_key):
        s = _store(sshd_server, key_file=key_file)
        with pytest.raises(StoreError, match="cannot use the SSH key") as err:
            s.head("x~1")
        s.close()
        assert str(key_file) in str(err.value)
        assert "ssh_key_file" in str(err.value.hint)


def test_a_port_without_a_server_is_connection_refused(
    sshd_server: SshServer, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    s = SftpStore(
        sshd_server.url("/srv/x", port=port),
        key_file=sshd_server.key_file,
        known_hosts=sshd_server.known_hosts,
    )
    with pytest.raises(StoreError, match="connection refused") as err:
        s.head("x~1")
    s.close()
    assert f"port {port}" in str(err.value.hint)


def test_a_store_opens_from_the_configuration(sshd_server: SshServer, tmp_path: Path) -> None:
    url = sshd_server.url(sshd_server.new_root())
    config = load_config(
        {
            "store": url,
            "database": f"sqlite:///{tmp_path}/c.db",
            **sshd_server.client_options(),
        }
    )
    s = open_store(config.store_url, config)
    try:
        assert isinstance(s, SftpStore)
        data = os.urandom(3000)
        s.put_bytes("k~1", data)
        out = io.BytesIO()
        assert s.get_into("k~1", out).md5 == hashlib.md5(data).hexdigest()
        assert s.for_bucket(s.bucket) is s
    finally:
        s.close()


@pytest.mark.parametrize(
    "url",
    [
        "sftp://user:secret@host/srv/repo",
        "sftp://user@host/",
        "sftp://user@host",
        "sftp://user@host:99999/srv/repo",
    ],
)
def test_bad_sftp_urls_are_configuration_errors(url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config({"store": url, "database": f"sqlite:///{tmp_path}/c.db"})
    assert "secret" not in str(err.value)


def _far_future() -> object:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) + timedelta(days=1)


def test_without_asyncssh_an_sftp_store_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "asyncssh", None)  # as if not installed
    with pytest.raises(ConfigError, match="needs the SSH library asyncssh") as err:
        open_store("sftp://user@host/srv/repo")
    assert err.value.hint == "pip install 's3-file-repo[sftp]'"
