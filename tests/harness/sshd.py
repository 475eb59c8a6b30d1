"""A throwaway OpenSSH server for the ``sftp://`` store's tests.

``SshServer().start()`` runs Debian's ``/usr/sbin/sshd`` in the foreground on 127.0.0.1
and a free port, with its own host key, config, pid file and authorized_keys in a temp
directory: key-only logins (no passwords, no keyboard-interactive, no PAM) for one user,
SFTP by ``internal-sftp``. The client side gets a key pair and a known_hosts file naming
the server's host key, so nothing of the developer's ~/.ssh is read or changed.

Run as root (CI), the tests log in as the unprivileged ``repo-sftp-test`` account that
scripts/ensure-sshd creates, because root ignores permission bits and a refused write
could not be tested; otherwise they log in as the current user. ``sftp_only=True`` makes
an account that may run no command (``ForceCommand internal-sftp``), as hosting services
give: there the store cannot run md5sum and reads uploads back instead.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

__all__ = ["SSHD", "SSH_KEYGEN", "TEST_USER", "SshServer", "keygen", "sshd_missing"]

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
TEST_USER = "repo-sftp-test"


def sshd_missing() -> str | None:
    """Why the sftp tests cannot run here; None if they can."""
    if not os.access(SSHD, os.X_OK) or not os.access(SSH_KEYGEN, os.X_OK):
        return f"{SSHD} or ssh-keygen is missing: run scripts/ensure-sshd"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(TEST_USER)
        except KeyError:
            return f"the test account {TEST_USER} is missing: run scripts/ensure-sshd"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def keygen(path: Path) -> None:
    """A new ed25519 key pair without a passphrase at `path` and `path`.pub."""
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", "repo-test", "-f", str(path)],
        check=True,
    )


class SshServer:
    """One sshd; `user`, `port`, `key_file` and `known_hosts` are what a client needs."""

    def __init__(self, *, sftp_only: bool = False) -> None:
        self.sftp_only = sftp_only
        self.dir = Path(tempfile.mkdtemp(prefix="repo-sshd-"))
        self.port = _free_port()
        self.host = "127.0.0.1"
        if os.geteuid() == 0:
            self.user = TEST_USER
            entry = pwd.getpwnam(TEST_USER)
            self.uid, self.gid = entry.pw_uid, entry.pw_gid
        else:
            self.user = pwd.getpwuid(os.geteuid()).pw_name
            self.uid, self.gid = os.geteuid(), os.getegid()
        self.key_file = self.dir / "client_key"
        self.known_hosts = self.dir / "known_hosts"
        #: Where tests put stores: the login user's own directory.
        self.data = self.dir / "data"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SshServer:
        self.dir.chmod(0o711)  # the login user reaches data/, and nothing else in here
        host_key = self.dir / "host_key"
        keygen(host_key)
        keygen(self.key_file)
        authorized = self.dir / "authorized_keys"
        authorized.write_text((self.dir / "client_key.pub").read_text())
        authorized.chmod(0o644)
        self.known_hosts_for(self.port, self.known_hosts)
        self.make_dir(self.data)
        config = self.dir / "sshd_config"
        lines = [
            f"Port {self.port}",
            f"ListenAddress {self.host}",
            f"HostKey {host_key}",
            f"PidFile {self.dir / 'sshd.pid'}",
            f"AuthorizedKeysFile {authorized}",
            f"AllowUsers {self.user}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PermitRootLogin no",
            "MaxSessions 64",
            "MaxStartups 64",
            "LogLevel ERROR",
            "Subsystem sftp internal-sftp",
        ]
        if self.sftp_only:
            lines.append("ForceCommand internal-sftp")
        config.write_text("\n".join(lines) + "\n")
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        with open(self.dir / "sshd.log", "wb") as log:
            self._proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.dir / 'sshd.log').read_text()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), 0.2),
            ):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("sshd did not start listening in 10 s")

    def make_dir(self, path: Path, mode: int = 0o755) -> Path:
        """A directory the login user owns (as root: chowned to it)."""
        path.mkdir(mode=mode, parents=True, exist_ok=True)
        path.chmod(mode)
        if os.geteuid() == 0:
            os.chown(path, self.uid, self.gid)
        return path

    def new_root(self) -> Path:
        """A fresh, empty directory for one store."""
        return self.make_dir(self.data / uuid.uuid4().hex[:12])

    def url(self, root: Path | str, port: int | None = None) -> str:
        return f"sftp://{self.user}@{self.host}:{port or self.port}{root}"

    def known_hosts_for(self, port: int, path: Path) -> Path:
        """A known_hosts file naming this server's key at `port` (a relay's, say)."""
        host_pub = (self.dir / "host_key.pub").read_text().split()
        path.write_text(f"[{self.host}]:{port} {host_pub[0]} {host_pub[1]}\n")
        return path

    def client_options(self) -> dict[str, str]:
        return {"ssh_key_file": str(self.key_file), "ssh_known_hosts": str(self.known_hosts)}

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> SshServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
