"""Integration-test harness: real PostgreSQL and S3 servers started on demand.

Every server binds to 127.0.0.1 on a free port, keeps its state in a throwaway
temporary directory and is torn down by ``stop()``.  Nothing here is a mock.

Import the servers from the submodules::

    from harness.postgres import PostgresServer
    from harness.s3servers import MotoS3Server, RcloneS3Server
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import os
    import subprocess
    from collections.abc import Callable


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def log_tail(path: str | os.PathLike[str], lines: int = 40) -> str:
    """The last ``lines`` lines of a log file (or a note if it can't be read)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as exc:
        return f"<could not read log {path}: {exc}>"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else "<log is empty>"


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    *,
    interval: float = 0.05,
    abort: Callable[[], str | None] | None = None,
) -> str | None:
    """Poll ``condition`` until it is true or ``timeout`` seconds pass.

    Returns None on success, otherwise a short reason ("timed out after ..." or
    whatever ``abort`` returned when it signalled that waiting is pointless,
    e.g. because the server process exited).
    """
    deadline = time.monotonic() + timeout
    while True:
        if abort is not None:
            reason = abort()
            if reason is not None:
                return reason
        if condition():
            return None
        if time.monotonic() >= deadline:
            return f"timed out after {timeout:g}s"
        time.sleep(interval)
        interval = min(interval * 1.5, 0.5)


def process_exited(proc: subprocess.Popen[bytes]) -> Callable[[], str | None]:
    """An ``abort`` callback for ``wait_until``: fires once ``proc`` has exited."""

    def check() -> str | None:
        code = proc.poll()
        return None if code is None else f"exited with code {code}"

    return check
