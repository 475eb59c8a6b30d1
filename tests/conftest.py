"""Shared fixtures: real PostgreSQL / S3 servers and per-test targets.

Servers are session-scoped and start lazily (only when a test needs one);
databases, buckets and prefixes are fresh per test.  See tests/harness/.

The ``harness`` package is importable because pytest (default "prepend"
import mode, no tests/__init__.py) puts this directory on sys.path; for the
same reason every test module's basename must be unique across the folders.

The layout mirrors ``src/repo/``: ``catalog/``, ``stores/`` and ``cli/`` test
those packages, a top-level ``test_<module>.py`` tests that module, and
``system/`` holds properties of the whole stack (the seed's usage, crashes,
load, hostile input, secrets, errors at the boundary).
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import event

from harness.postgres import PostgresServer
from harness.s3servers import MotoS3Server, RcloneS3Server, S3Server
from harness.sshd import SshServer, sshd_missing
from repo.settings import SETTINGS

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

S3_SERVER_NAMES = ["rclone", "moto"]
STORE_KINDS = ["file", "rclone", "moto"]
#: Not in STORE_KINDS (every Repo test would run on it): the store contract suite and
#: tests/stores/test_sftp_*.py ask for it by name. SFTP_ONLY: an account that may run no
#: command (objects move by SFTP requests and uploads are read back, not by cat/md5sum).
SFTP = "sftp"
SFTP_ONLY = "sftp-only"
CATALOG_KINDS = ["sqlite", "postgresql"]


pytest_plugins = ("harness.roles",)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: the test uses the PostgreSQL test server")
    config.addinivalue_line("markers", "s3: the test uses an S3 test server (rclone or moto)")


_PG_FIXTURES = {"postgres_server", "pg_url"}
_S3_FIXTURES = {"rclone_server", "moto_server", "s3_server", "s3_bucket"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Auto-mark tests by the servers they need, so ``-m "not postgres"`` works."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        params: dict[str, Any] = callspec.params if callspec is not None else {}
        if names & _PG_FIXTURES or params.get("catalog_url") == "postgresql":
            item.add_marker(pytest.mark.postgres)
        if names & _S3_FIXTURES or params.get("store_url") in ("rclone", "moto"):
            item.add_marker(pytest.mark.s3)


# --------------------------------------------------------------- isolation


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never read or write the developer's real configuration."""
    home = tmp_path / "userhome"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("REPO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("REPO_CFG", raising=False)
    # Per-host overrides of the settings table (repo.settings) must not leak in either.
    for var in (s.env for s in SETTINGS if s.env is not None):
        monkeypatch.delenv(var, raising=False)
    for xdg in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        monkeypatch.delenv(xdg, raising=False)
    # A developer's AWS profile/endpoint must not leak into boto3/obstore.
    for var in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "aws-config-absent"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "aws-credentials-absent"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


# ----------------------------------------------------------------- servers


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def rclone_server() -> Iterator[RcloneS3Server]:
    server = RcloneS3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoS3Server]:
    server = MotoS3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sshd_server() -> Iterator[SshServer]:
    """A throwaway OpenSSH server (tests/harness/sshd.py), for ``sftp://`` stores."""
    why = sshd_missing()
    if why is not None:
        if os.environ.get("REPO_TEST_ALLOW_MISSING_TOOLS"):
            pytest.skip(why)
        pytest.fail(why)
    server = SshServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sshd_sftp_only_server(sshd_server: SshServer) -> Iterator[SshServer]:
    """Another sshd whose account may run no command (``ForceCommand internal-sftp``)."""
    server = SshServer(sftp_only=True).start()
    try:
        yield server
    finally:
        server.stop()


def _s3_server(request: pytest.FixtureRequest, name: str) -> S3Server:
    server: S3Server = request.getfixturevalue(f"{name}_server")
    return server


# --------------------------------------------------------------- catalogs


def _unique(prefix: str, n: int = 16) -> str:
    return prefix + uuid.uuid4().hex[:n]


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> Iterator[str]:
    """SQLAlchemy URL of a fresh PostgreSQL database, dropped after the test."""
    name = _unique("t_")
    url = postgres_server.create_database(name)
    try:
        yield url
    finally:
        postgres_server.drop_database(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """SQLAlchemy URL of a (not yet existing) SQLite file in tmp_path."""
    return f"sqlite:///{tmp_path}/catalog.db"


@pytest.fixture(params=CATALOG_KINDS, ids=CATALOG_KINDS)
def catalog_url(request: pytest.FixtureRequest) -> str:
    """``sqlite_url`` or ``pg_url``; PostgreSQL only starts if a test needs it."""
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    return url


# ------------------------------------------------------------------ stores


@pytest.fixture(params=S3_SERVER_NAMES, ids=S3_SERVER_NAMES)
def s3_server(request: pytest.FixtureRequest) -> S3Server:
    """A running S3 server: rclone or moto."""
    return _s3_server(request, request.param)


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """Name of a fresh, empty bucket on ``s3_server``."""
    return s3_server.create_bucket(_unique("t-"))


@dataclass(frozen=True)
class StoreTarget:
    """Where a test's store lives; the S3 fields are None for ``file://``."""

    url: str
    endpoint_url: str | None
    access_key: str | None
    secret_key: str | None
    region: str | None
    server_name: str
    server: S3Server | None = None
    #: For ``sftp://``: the client key and known_hosts file.
    ssh_options: dict[str, str] | None = None

    @property
    def is_s3(self) -> bool:
        return self.url.startswith("s3://")

    @property
    def bucket(self) -> str | None:
        return self.url[len("s3://") :].split("/", 1)[0] if self.is_s3 else None

    @property
    def prefix(self) -> str | None:
        return self.url[len("s3://") :].split("/", 1)[1] if self.is_s3 else None


@pytest.fixture(params=STORE_KINDS, ids=STORE_KINDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> StoreTarget:
    """A fresh store: ``file://<tmp>/store`` or ``s3://<new bucket>/prefix-<hex8>``."""
    return make_store_target(request, request.param, tmp_path)


def make_store_target(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> StoreTarget:
    """A fresh store of `kind` (one of `STORE_KINDS`, or `SFTP`)."""
    if kind in (SFTP, SFTP_ONLY):
        fixture = "sshd_server" if kind == SFTP else "sshd_sftp_only_server"
        sshd: SshServer = request.getfixturevalue(fixture)
        return StoreTarget(
            url=sshd.url(sshd.new_root()),
            endpoint_url=None,
            access_key=None,
            secret_key=None,
            region=None,
            server_name=kind,
            ssh_options=sshd.client_options(),
        )
    if kind == "file":
        path = tmp_path / "store"
        path.mkdir()
        return StoreTarget(
            url=f"file://{path}",
            endpoint_url=None,
            access_key=None,
            secret_key=None,
            region=None,
            server_name="file",
        )
    server = _s3_server(request, kind)
    bucket = server.create_bucket(_unique("t-"))
    return StoreTarget(
        url=f"s3://{bucket}/{_unique('prefix-', 8)}",
        endpoint_url=server.endpoint_url,
        access_key=server.access_key,
        secret_key=server.secret_key,
        region=server.region,
        server_name=server.name,
        server=server,
    )


@pytest.fixture
def repo_config(tmp_path: Path, catalog_url: str, store_url: StoreTarget) -> dict[str, str]:
    """A library config dict for one (catalog, store) combination."""
    config = {
        "local_root": str(tmp_path / "local"),
        "store": store_url.url,
        "database": catalog_url,
        "host_name": "test-host",
    }
    if store_url.ssh_options:
        config.update(store_url.ssh_options)
    if store_url.is_s3:
        assert store_url.endpoint_url
        assert store_url.access_key
        assert store_url.secret_key
        assert store_url.region
        config.update(
            s3_endpoint_url=store_url.endpoint_url,
            s3_access_key=store_url.access_key,
            s3_secret_key=store_url.secret_key,
            s3_region=store_url.region,
        )
    return config


# ------------------------------------------------------------------ repos


@pytest.fixture
def repo(repo_config: dict[str, str]) -> Iterator[Any]:
    """A `repo.Repo` on every (catalog, store) combination; closed after the test."""
    import repo as repo_pkg

    r = repo_pkg.Repo(config=repo_config)
    try:
        yield r
    finally:
        r.close()


def dir_store_config(tmp_path: Path, database: str) -> dict[str, str]:
    """A config on a local-directory store in `tmp_path`, with the catalog at `database`."""
    store = tmp_path / "store"
    store.mkdir(exist_ok=True)
    return {
        "local_root": str(tmp_path / "local"),
        "store": store.as_uri(),
        "database": database,
        "host_name": "test-host",
    }


@pytest.fixture
def local_config(tmp_path: Path, catalog_url: str) -> dict[str, str]:
    """A config on a local-directory store, for tests about the catalog rather than S3."""
    return dir_store_config(tmp_path, catalog_url)


@pytest.fixture
def embedded_config(tmp_path: Path, sqlite_url: str) -> dict[str, str]:
    """SQLite and a local-directory store: for what is a matter of the local disk."""
    return dir_store_config(tmp_path, sqlite_url)


# -------------------------------------------------------------------- CLI


@dataclass
class CliRun:
    """The `repo` command run in-process (click's CliRunner) with one config file."""

    config_path: Path | None
    cwd: Path

    def __call__(self, *args: str, input: bytes | str | None = None) -> Any:
        from click.testing import CliRunner

        from repo.cli import cli

        argv = ["--config", str(self.config_path), *args] if self.config_path else list(args)
        return CliRunner().invoke(cli, argv, input=input, prog_name="repo", catch_exceptions=False)


@contextlib.contextmanager
def recorded_statements(r: Any) -> Iterator[list[str]]:
    """Every SQL statement the Repo `r` sends while the block runs."""
    seen: list[str] = []

    def log(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    engine = r.catalog.db.engine
    event.listen(engine, "before_cursor_execute", log)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", log)


def last_read(r: Any, f: Any, seconds_ago: float) -> None:
    """Set the "last read" time (modification time) of `f`'s cached copy in `r`."""
    when = time.time() - seconds_ago
    os.utime(r.cache.cache_path(f.key), (when, when))


def write_config(path: Path, config: dict[str, Any]) -> Path:
    import json

    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


@pytest.fixture
def cli(tmp_path: Path, repo_config: dict[str, str]) -> CliRun:
    """`repo` on every (catalog, store) combination, via a config file."""
    return CliRun(write_config(tmp_path / "repo_cfg.json", repo_config), tmp_path)


@pytest.fixture
def embedded_cli(tmp_path: Path) -> CliRun:
    """`repo` on the embedded default (no config file: SQLite + directory under REPO_HOME)."""
    return CliRun(None, tmp_path)
