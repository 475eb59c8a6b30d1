"""Secrets never leak: not in logs (DEBUG included), errors, `--json`, `config --show`,
`status`, nor in the repr or str of a `Repo`, its `Config`, its stores or any exception
raised on the way (with its causes).

The S3 secret goes to moto, which accepts any credentials, and the PostgreSQL password
to the test server, which trusts every local connection, so every operation below runs
for real with the distinctive secrets configured.
"""

from __future__ import annotations

import functools
import json
import logging
import socket
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy.engine import make_url

import repo
from conftest import CliRun, write_config

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from harness.s3servers import MotoS3Server

S3_SECRET = "s3SECRETmarker-7f3a9c1d"
PG_PASSWORD = "pgPASSWORDmarker-5e2bd41c"
SECRETS = (S3_SECRET, PG_PASSWORD)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean(text: object, what: str) -> None:
    shown = str(text)
    for secret in SECRETS:
        assert secret not in shown, f"{what} leaks a secret: {shown[:400]}"
        # Also not URL-quoted, or cut down to a recognisable part.
        assert secret[:12] not in shown, f"{what} leaks part of a secret: {shown[:400]}"


def _clean_exception(exc: BaseException) -> None:
    seen: BaseException | None = exc
    depth = 0
    while seen is not None and depth < 10:
        _clean(repr(seen), f"repr of {type(seen).__name__}")
        _clean(str(seen), f"str of {type(seen).__name__}")
        _clean(getattr(seen, "hint", None), f"hint of {type(seen).__name__}")
        seen = seen.__cause__ or seen.__context__
        depth += 1


@pytest.fixture
def secret_config(
    tmp_path: Path, postgres_server: Any, moto_server: MotoS3Server, pg_url: str
) -> dict[str, Any]:
    url = make_url(pg_url)
    bucket = moto_server.create_bucket("secrets-" + tmp_path.name[-8:].lower().replace("_", "-"))
    return {
        "store": f"s3://{bucket}/p",
        "s3_endpoint_url": moto_server.endpoint_url,
        "s3_access_key": "AKIAEXAMPLEACCESS",
        "s3_secret_key": S3_SECRET,
        "s3_region": moto_server.region,
        "database": {
            "host": url.host,
            "port": url.port,
            "user": url.username,
            "password": PG_PASSWORD,
            "database": url.database,
        },
        "local_root": str(tmp_path / "local"),
        "host_name": "secret-host",
    }


@pytest.fixture
def debug_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)  # the root logger: sqlalchemy, botocore...
    caplog.set_level(logging.DEBUG, logger="repo")  # a CLI run before may have set WARNING
    yield caplog
    for record in caplog.records:
        _clean(record.getMessage(), f"log record of {record.name}")
        if record.exc_info and record.exc_info[1] is not None:
            _clean_exception(record.exc_info[1])


def _raises(attempt: Callable[[], object]) -> repo.RepoError:
    with pytest.raises(repo.RepoError) as err:
        attempt()
    _clean_exception(err.value)
    return err.value


def test_library_operations_and_failures_never_show_a_secret(
    secret_config: dict[str, Any], tmp_path: Path, debug_log: pytest.LogCaptureFixture
) -> None:
    created = repo.create_repository(secret_config)
    _clean(created, "CreateReport")
    src = tmp_path / "f.txt"
    src.write_text("content")
    with repo.Repo(secret_config) as r:
        for obj in (r, r.config, r.store, r.backups.store, r.catalog.db.engine):
            _clean(repr(obj), f"repr of {type(obj).__name__}")
            _clean(str(obj), f"str of {type(obj).__name__}")
        rf = r.add("docs/f.txt", str(src), tags=["t"], publish=True)
        r.commit()
        _clean(repr(rf), "repr of RepoFile")
        assert [f.path for f in r.find(all=["t"])] == ["docs/f.txt"]
        r.cache.evict(rf.key)
        assert r.current("docs/f.txt").read_bytes() == b"content"
        for report in (r.gc(dry_run=True), r.backup(), r.verify(), r.verify_cache()):
            _clean(repr(report), type(report).__name__)
        _raises(lambda: r.file(99999))
        _raises(lambda: r.add_file("../x"))
        _raises(lambda: r.store.for_bucket("no-such-bucket-anywhere").head("k"))
    _clean(repo.status_report(secret_config), "StatusReport")
    _clean(repo.describe_config(repo.load_config(secret_config)), "describe_config")

    port = _free_port()
    failing: list[dict[str, Any]] = [
        {**secret_config, "database": {**secret_config["database"], "port": port}},
        {**secret_config, "database": {**secret_config["database"], "database": "nope_db"}},
        {**secret_config, "database": {**secret_config["database"], "password": 5}},
        {**secret_config, "database": f"postgresql://u:{PG_PASSWORD}@h:notaport/d"},
    ]
    errors = []
    for cfg in failing:
        errors.append(_raises(functools.partial(_open_and_upload, cfg, src)))
    assert [type(e).__name__ for e in errors] == [
        "CatalogError", "CatalogError", "ConfigError", "ConfigError",
    ]  # fmt: skip
    assert logging.getLogger("repo").isEnabledFor(logging.DEBUG)
    assert debug_log.records


def _open_and_upload(cfg: dict[str, Any], src: Path) -> None:
    with repo.Repo(cfg) as r:
        r.add("x.txt", str(src))


@pytest.mark.parametrize("store", [f"s3://AKIAX:{S3_SECRET}@bucket/p", f"ftp://u:{S3_SECRET}@h/x"])
def test_a_store_url_with_credentials_in_it_is_refused_without_echo(store: str) -> None:
    with pytest.raises(repo.ConfigError) as err:
        repo.load_config({"store": store, "database": "sqlite:///c.db"})
    _clean_exception(err.value)


def test_cli_output_and_debug_logs_never_show_a_secret(
    secret_config: dict[str, Any], tmp_path: Path
) -> None:
    run = CliRun(write_config(tmp_path / "cfg.json", secret_config), tmp_path)
    src = tmp_path / "f.txt"
    src.write_text("content")
    outputs = []
    for argv in (
        ["-vv", "create"],
        ["-vv", "add", "a.txt", str(src), "-t", "x", "--publish", "--json"],
        ["-vv", "list", "--json"],
        ["-vv", "find", "--all", "x", "--json"],
        ["-vv", "show", "a.txt", "--json"],
        ["-vv", "cat", "a.txt"],
        ["-vv", "status"],
        ["-vv", "status", "--json"],
        ["-vv", "config", "--show"],
        ["-vv", "config", "--show", "--json"],
        ["-vv", "gc", "--dry-run", "--json"],
        ["-vv", "verify", "--cache", "--json"],
        ["-vv", "get", "no/such/file"],
        ["--debug", "get", "no/such/file"],
        ["-vv", "--debug", "publish", "999"],
    ):
        result = run(*argv)
        outputs.append((argv, result))
        _clean(result.stdout, f"stdout of repo {' '.join(argv)}")
        _clean(result.stderr, f"stderr of repo {' '.join(argv)}")
    codes = [result.exit_code for _, result in outputs]
    assert codes == [0] * 12 + [1, 1, 1], [(a, r.output) for a, r in outputs if r.exit_code]
    settings = {n: s["value"] for n, s in json.loads(outputs[9][1].stdout)["settings"].items()}
    assert settings["s3_secret_key"] == "****"
    assert settings["database_url"].startswith("postgresql+psycopg://postgres:***@")
    assert "DEBUG repo.cli: command failed" in outputs[12][1].stderr  # -vv did log
    assert "Traceback" in outputs[13][1].stderr  # --debug did print the chain

    # A failing catalog and store: the secrets are in the config, never in the output.
    down = {
        **secret_config,
        "database": {**secret_config["database"], "port": _free_port()},
        "s3_endpoint_url": f"http://127.0.0.1:{_free_port()}",
    }
    run = CliRun(write_config(tmp_path / "down.json", down), tmp_path)
    for argv in (["-vv", "status", "--json"], ["--debug", "list"]):
        result = run(*argv)
        assert result.exit_code == 1
        _clean(result.stdout, f"stdout of failing repo {' '.join(argv)}")
        _clean(result.stderr, f"stderr of failing repo {' '.join(argv)}")
