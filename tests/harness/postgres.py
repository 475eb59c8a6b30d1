"""A throwaway PostgreSQL cluster for integration tests.

``PostgresServer().start()`` runs ``initdb`` into a fresh directory under /tmp,
starts ``postgres`` listening on 127.0.0.1 and a free port (unix socket inside
the temp dir, trust auth, durability switched off for speed) and waits until it
accepts connections.  ``stop()`` shuts it down with ``pg_ctl stop -m immediate``
and removes the directory.

For fault tests, ``shut_down()`` stops the server but keeps its data directory and
port, ``start_again()`` brings it back on the same port (clients keep their URLs), and
``restart()`` does both.

initdb and postgres refuse to run as root, so when the harness runs as root
the server processes run as the ``postgres`` system user instead (created by
the distro package, or by ``scripts/ensure-postgres``).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from . import free_port, log_tail, process_exited, wait_until

START_TIMEOUT = 30.0
_PG_ENV_DROP = re.compile(r"^PG[A-Z_]*$")


class PostgresNotFoundError(RuntimeError):
    """No PostgreSQL server binaries (initdb, pg_ctl, postgres) on this machine."""


class PostgresStartError(RuntimeError):
    """The throwaway PostgreSQL server failed to initialise or start."""


def _has_server_binaries(bindir: str | os.PathLike[str]) -> bool:
    return all(os.access(Path(bindir, exe), os.X_OK) for exe in ("initdb", "pg_ctl", "postgres"))


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.name  # /usr/lib/postgresql/<version>/bin
    return tuple(int(part) for part in re.findall(r"\d+", version)) or (0,)


def find_bindir() -> Path:
    """Directory holding initdb, pg_ctl and postgres.

    Search order: ``pg_config --bindir``; the newest /usr/lib/postgresql/*/bin;
    the directory of ``initdb`` found on PATH (symlinks resolved).
    """
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            # The client-only package ships pg_config without the server binaries.
            if out and _has_server_binaries(out):
                return Path(out)
    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True):
        if _has_server_binaries(bindir):
            return Path(bindir)
    initdb = shutil.which("initdb")
    if initdb:
        bindir_path = Path(initdb).resolve().parent
        if _has_server_binaries(bindir_path):
            return bindir_path
    raise PostgresNotFoundError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found "
        "(looked at `pg_config --bindir`, /usr/lib/postgresql/*/bin and PATH); "
        "run scripts/ensure-postgres to install them (e.g. apt-get install postgresql)."
    )


class PostgresServer:
    """A private PostgreSQL cluster on 127.0.0.1:<free port>, superuser ``postgres``."""

    superuser = "postgres"

    def __init__(self, *, start_timeout: float = START_TIMEOUT) -> None:
        self.start_timeout = start_timeout
        self.bindir: Path | None = None
        self.port: int = 0
        self.tmpdir: Path | None = None
        self.datadir: Path | None = None
        self.socket_dir: Path | None = None
        self.log_path: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._run_as: dict[str, Any] = {}

    # ------------------------------------------------------------------ urls

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def url(self, dbname: str) -> str:
        """SQLAlchemy URL (psycopg 3 driver) for database ``dbname``."""
        return f"postgresql+psycopg://{self.superuser}@127.0.0.1:{self.port}/{dbname}"

    @property
    def admin_url(self) -> str:
        """SQLAlchemy URL of the maintenance database ``postgres``."""
        return self.url("postgres")

    def conninfo(self, dbname: str = "postgres") -> str:
        """libpq connection string (for psycopg.connect)."""
        return f"host=127.0.0.1 port={self.port} user={self.superuser} dbname={dbname}"

    # ------------------------------------------------------------- lifecycle

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not _PG_ENV_DROP.match(k)}
        env["LC_ALL"] = "C"
        env.pop("LANG", None)
        env.pop("LANGUAGE", None)
        return env

    def _run(self, *args: str | os.PathLike[str], timeout: float = 60) -> str:
        assert self.bindir is not None
        assert self.tmpdir is not None
        cmd = [str(self.bindir / str(args[0])), *map(str, args[1:])]
        try:
            proc = subprocess.run(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                timeout=timeout,
                cwd=self.tmpdir,
                env=self._env(),
                check=False,
                **self._run_as,
            )
        except subprocess.TimeoutExpired as exc:
            raise PostgresStartError(f"{' '.join(cmd)} timed out after {timeout}s") from exc
        output: str = proc.stdout
        if proc.returncode != 0:
            raise PostgresStartError(
                f"{' '.join(cmd)} failed with exit code {proc.returncode}:\n{output[-4000:]}"
            )
        return output

    def _setup_user(self) -> None:
        if os.geteuid() != 0:
            self._run_as = {}
            return
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresStartError(
                "running as root, but there is no `postgres` system user to run the server "
                "as (initdb refuses to run as root); run scripts/ensure-postgres to create it"
            ) from None
        # subprocess drops privileges in the child (setgid/setgroups/setuid).
        self._run_as = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    def start(self) -> PostgresServer:
        if self._proc is not None:
            return self
        self.bindir = find_bindir()
        self._setup_user()
        self.tmpdir = Path(tempfile.mkdtemp(prefix="repo-test-pg-", dir="/tmp"))
        try:
            self._init_cluster()
            self._start_server()
        except BaseException:
            self._cleanup()
            raise
        atexit.register(self.stop)
        return self

    def _init_cluster(self) -> None:
        assert self.tmpdir is not None
        self.datadir = self.tmpdir / "data"
        self.socket_dir = self.tmpdir / "sock"
        self.socket_dir.mkdir()
        self.log_path = self.tmpdir / "postgres.log"
        if self._run_as:
            for path in (self.tmpdir, self.socket_dir):
                os.chown(path, self._run_as["user"], self._run_as["group"])
        self._run(
            "initdb",
            "-D", self.datadir,
            "-U", self.superuser,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )  # fmt: skip
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "'64MB'",
            "logging_collector": "off",
            "log_min_messages": "warning",
        }
        with open(self.datadir / "postgresql.conf", "a") as conf:
            conf.write("\n# --- repo test harness ---\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        (self.datadir / "pg_hba.conf").write_text(
            "# repo test harness: trust everything local\n"
            "local all all trust\n"
            "host  all all 127.0.0.1/32 trust\n"
        )

    def _start_server(self, *, port: int | None = None) -> None:
        """Start ``postgres``: on `port` if given (a restart), else on a free port."""
        assert self.bindir is not None
        assert self.datadir is not None
        assert self.log_path is not None
        last_error = ""
        for _attempt in range(1 if port is not None else 3):
            self.port = port if port is not None else free_port()
            with open(self.log_path, "ab") as log:
                self._proc = proc = subprocess.Popen(
                    [str(self.bindir / "postgres"), "-D", str(self.datadir), "-p", str(self.port)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.tmpdir,
                    env=self._env(),
                    start_new_session=True,
                    **self._run_as,
                )
            reason = wait_until(
                self._accepts_connections,
                self.start_timeout,
                abort=process_exited(proc),
            )
            if reason is None:
                return
            self._kill()
            last_error = f"PostgreSQL on port {self.port} did not start ({reason})"
            if "already in use" not in log_tail(self.log_path, 20):
                break  # only a lost port race is worth retrying
        raise PostgresStartError(
            f"{last_error}; the server log ended with:\n{log_tail(self.log_path)}"
        )

    def _accepts_connections(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.conninfo(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def _kill(self) -> None:
        """Stop the server process (immediate shutdown), escalating to SIGKILL."""
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        if proc.poll() is None and self.datadir is not None and self.datadir.exists():
            with contextlib.suppress(PostgresStartError):
                self._run("pg_ctl", "stop", "-D", self.datadir, "-m", "immediate", "-w", "-t", "10")
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        # Backends are in the same session/process group; make sure none linger.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def shut_down(self, mode: str = "fast") -> None:
        """Stop the server, keeping its data and port for `start_again`.

        `mode` is pg_ctl's: ``fast`` (clients are told and disconnected) or ``immediate``
        (as after a crash: backends just die).
        """
        if mode not in ("fast", "immediate"):
            raise ValueError(f"unknown shutdown mode {mode!r}")
        proc = self._proc
        if proc is None:
            return
        assert self.datadir is not None
        try:
            self._run("pg_ctl", "stop", "-D", self.datadir, "-m", mode, "-w", "-t", "20")
            proc.wait(timeout=20)
        finally:
            self._kill()  # a no-op once pg_ctl succeeded; escalates otherwise

    def start_again(self) -> None:
        """Start a server stopped by `shut_down` on the same port and data directory."""
        if self._proc is not None:
            return
        if self.datadir is None or not self.datadir.exists():
            raise PostgresStartError("the server was never started, or was removed by stop()")
        # Someone may have taken the port meanwhile: that fails here, loudly.
        self._start_server(port=self.port)

    def restart(self, mode: str = "fast") -> None:
        """`shut_down` then `start_again`: the same cluster back on the same port."""
        self.shut_down(mode)
        self.start_again()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _cleanup(self) -> None:
        self._kill()
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None

    def stop(self) -> None:
        atexit.unregister(self.stop)
        self._cleanup()

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -------------------------------------------------------------- databases

    def _admin(self) -> Any:
        import psycopg

        return psycopg.connect(self.conninfo(), autocommit=True, connect_timeout=10)

    def create_database(self, name: str) -> str:
        """Create database ``name``; return its SQLAlchemy URL."""
        from psycopg import sql

        with self._admin() as conn:
            stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if conn.info.server_version >= 150000:
                # With fsync=off a file copy is ~5x faster than the default WAL_LOG.
                stmt = stmt + sql.SQL(" STRATEGY FILE_COPY")
            conn.execute(stmt)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` (if it exists), disconnecting any sessions."""
        from psycopg import sql

        with self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
