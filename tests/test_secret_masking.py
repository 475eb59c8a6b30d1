"""Secrets in URLs never show: whatever the password holds, in the query or in the S3 endpoint.

Every URL the configuration holds is shown through one function, `repo.urls.mask_url`:
by `config --show` (text and JSON), `status`, error messages and `repr(Config)`.
"""

from __future__ import annotations

import json
import logging
import socket
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy.engine import make_url

from conftest import CliRun, write_config
from repo.config import load_config
from repo.errors import ConfigError
from repo.urls import mask_url, url_has_secret

if TYPE_CHECKING:
    from pathlib import Path

#: A password holding two unencoded '@': each piece must stay hidden, not only the first.
PASSWORD = "Lead7k@Mid8q@Tail9x"
PASSWORD_PIECES = (PASSWORD, "Lead7k", "Mid8q", "Tail9x")
QUERY_PASSWORD = "QueryPw4r"
SSL_PASSWORD = "SslPw5t"
ENDPOINT_SECRET = "Endp0int@S3cr3tX"
ENDPOINT_PIECES = (ENDPOINT_SECRET, "Endp0int", "S3cr3tX")
S3_SECRET_KEY = "S3Key6w"
EVERY_SECRET = (*PASSWORD_PIECES, QUERY_PASSWORD, SSL_PASSWORD, *ENDPOINT_PIECES, S3_SECRET_KEY)


def _closed_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago: nothing answers there."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "store": (tmp_path / "store").as_uri(),
        "database": f"sqlite:///{tmp_path}/catalog.db",
        "local_root": str(tmp_path / "local"),
    }
    config.update(extra)
    return config


def _run(tmp_path: Path, **extra: Any) -> CliRun:
    return CliRun(write_config(tmp_path / "cfg.json", _config(tmp_path, **extra)), tmp_path)


def _assert_hidden(text: str, secrets: tuple[str, ...] = EVERY_SECRET) -> None:
    shown = [s for s in secrets if s in text]
    assert shown == [], f"secret text shown: {shown!r}"


def _shown_value(run: CliRun, name: str) -> Any:
    """The value `config --show --json` gives for `name`, after checking the table hides it too."""
    text = run("config", "--show")
    assert text.exit_code == 0, text.output
    _assert_hidden(text.output)
    shown = run("config", "--show", "--json")
    assert shown.exit_code == 0, shown.output
    _assert_hidden(shown.output)
    values = {n: e["value"] for n, e in json.loads(shown.stdout)["settings"].items()}
    row = next(line for line in text.stdout.splitlines() if line.startswith(f"{name} "))
    assert row.split()[1] == values[name]
    return values[name]


# --------------------------------------------------------------- mask_url


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://u:pw@db/repo", "postgresql://u:***@db/repo"),
        # The user info ends at the last '@' before the host.
        ("postgresql://u:p@ss@db.example/repo", "postgresql://u:***@db.example/repo"),
        ("postgresql://u:a@b@c:d@db:5432/repo", "postgresql://u:***@db:5432/repo"),
        ("postgresql://u:ab/cd?e@db/repo", "postgresql://u:***@db/repo"),
        ("postgresql://u:a@b/c@db/repo", "postgresql://u:***@db/repo"),
        ("postgresql://u:@db/repo", "postgresql://u:***@db/repo"),
        ("postgresql://u@db/repo", "postgresql://u@db/repo"),
        # Secret query parameters, by name; a passfile names a file, not a secret.
        (
            "postgresql://u@db/repo?password=x&sslpassword=y&passfile=/p&sslmode=require",
            "postgresql://u@db/repo?password=***&sslpassword=***&passfile=/p&sslmode=require",
        ),
        ("postgresql://u@db/repo?PassWord=x", "postgresql://u@db/repo?PassWord=***"),
        ("postgresql://u:pw@db/repo?application_name=a@b", "postgresql://u:***@db/repo?application_name=a@b"),
        ("https://key:se@cret@s3.example:9000", "https://key:***@s3.example:9000"),
        ("https://s3.example/?X-Amz-Signature=abc", "https://s3.example/?X-Amz-Signature=***"),
        # Nothing to hide, and an '@' in a path is no user info.
        ("sqlite:////home/a@b/catalog.db", "sqlite:////home/a@b/catalog.db"),
        ("s3://bucket/prefix", "s3://bucket/prefix"),
        # A URL that cannot be read safely shows nothing after its scheme.
        ("postgresql://u:a@b?c@db/repo", "postgresql://***"),
        ("u:pw@db", "***"),
    ],
)  # fmt: skip
def test_mask_url_hides_every_password(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("postgresql://u:p@ss@db/repo", True),
        ("postgresql://u@db/repo?password=x", True),
        ("postgresql://u@db/repo?sslpassword=x", True),
        ("https://key:secret@s3.example", True),
        ("postgresql://u@db/repo?passfile=/p", False),
        ("postgresql://u:@db/repo?password=", False),
        ("sqlite:////home/a:b@c/catalog.db", False),
        ("http://127.0.0.1:9000", False),
    ],
)
def test_url_has_secret_knows_passwords_wherever_they_are(url: str, secret: bool) -> None:
    assert url_has_secret(url) is secret


# ---------------------------------------------------------- config --show


def test_config_show_masks_a_password_holding_at_signs(tmp_path: Path) -> None:
    run = _run(tmp_path, database=f"postgresql://user:{PASSWORD}@db.example/repo")
    shown = _shown_value(run, "database_url")
    assert shown == "postgresql+psycopg://user:***@db.example/repo"


def test_a_password_holding_at_signs_is_read_as_a_password_not_a_host(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, database=f"postgresql://user:{PASSWORD}@db.example/r"))
    url = make_url(config.database_url)
    assert (url.username, url.password, url.host, url.database) == (
        "user",
        PASSWORD,
        "db.example",
        "r",
    )


def test_a_user_name_holding_an_at_sign_keeps_it(tmp_path: Path) -> None:
    # Azure Database for PostgreSQL (single server) names users "user@server".
    database = f"postgresql://admin@srv:{PASSWORD}@srv.example:5432/repo"
    config = load_config(_config(tmp_path, database=database))
    url = make_url(config.database_url)
    assert (url.username, url.password, url.host) == ("admin@srv", PASSWORD, "srv.example")
    assert config.masked_database_url() == (
        "postgresql+psycopg://admin%40srv:***@srv.example:5432/repo"
    )


def test_config_show_masks_password_query_parameters(tmp_path: Path) -> None:
    database = (
        f"postgresql://user@db.example/repo?password={QUERY_PASSWORD}"
        f"&sslpassword={SSL_PASSWORD}&passfile=/home/u/.pgpass"
    )
    run = _run(tmp_path, database=database)
    shown = _shown_value(run, "database_url")
    # The query's password moves into the user info (psycopg lets it win there anyway).
    assert shown == (
        "postgresql+psycopg://user:***@db.example/repo"
        "?passfile=%2Fhome%2Fu%2F.pgpass&sslpassword=***"
    )
    url = make_url(load_config(_config(tmp_path, database=database)).database_url)
    assert url.password == QUERY_PASSWORD
    assert dict(url.query) == {"sslpassword": SSL_PASSWORD, "passfile": "/home/u/.pgpass"}


def test_config_show_masks_credentials_in_the_s3_endpoint_url(tmp_path: Path) -> None:
    endpoint = f"https://EndpointKey1:{ENDPOINT_SECRET}@s3.example:9000"
    run = _run(tmp_path, s3_endpoint_url=endpoint)
    assert _shown_value(run, "s3_endpoint_url") == "https://EndpointKey1:***@s3.example:9000"
    # The store gets the URL as written.
    assert load_config(_config(tmp_path, s3_endpoint_url=endpoint)).s3_endpoint_url == endpoint


def test_repr_of_config_masks_every_url_secret(tmp_path: Path) -> None:
    config = load_config(
        _config(
            tmp_path,
            database=f"postgresql://user:{PASSWORD}@db/r?sslpassword={SSL_PASSWORD}",
            s3_endpoint_url=f"https://k:{ENDPOINT_SECRET}@s3.example",
        )
    )
    _assert_hidden(repr(config))
    _assert_hidden(config.masked_database_url())


def test_a_database_url_that_cannot_be_read_safely_is_refused_without_echo(
    tmp_path: Path,
) -> None:
    # '@' then '?' in a password: the host cannot be told from the query.
    with pytest.raises(ConfigError) as info:
        load_config(_config(tmp_path, database="postgresql://u:Lead7k@Mid8q?Tail9x@db/r"))
    _assert_hidden(f"{info.value}\n{info.value.hint}")
    assert str(info.value) == (
        "<config dict>: key 'database' has an '@' after its user info, where the host or "
        "the query should be"
    )
    assert info.value.hint == "percent-encode '@' as %40 and '?' as %3F in the password"


# ------------------------------------------------------ unreachable catalog


@pytest.mark.parametrize(
    "database",
    [
        f"postgresql://user:{PASSWORD}@127.0.0.1:{{port}}/repo",
        f"postgresql://user@127.0.0.1:{{port}}/repo?password={QUERY_PASSWORD}",
    ],
    ids=["at-signs-in-password", "password-in-query"],
)
def test_unreachable_catalog_errors_never_show_the_password(tmp_path: Path, database: str) -> None:
    port = _closed_port()
    run = _run(tmp_path, database=database.format(port=port))
    where = f"postgresql+psycopg://user:***@127.0.0.1:{port}/repo"
    added = run("add", "a.csv", str(tmp_path / "cfg.json"))
    assert added.exit_code == 1
    lines = added.stderr.splitlines()
    assert lines[0].startswith(
        f"Error: connecting to the catalog: catalog database unavailable at {where} ("
    )
    assert lines[1] == "Try: check the 'database' settings and that the server is running"
    status = run("status")
    assert status.exit_code == 1
    assert status.stdout.startswith(f"catalog  {where}  connecting to the catalog: ")
    as_json = run("status", "--json")
    assert as_json.exit_code == 1
    catalog = json.loads(as_json.stdout)["catalog"]
    assert catalog["url"] == where
    assert catalog["reachable"] is False
    for result in (added, status, as_json):
        _assert_hidden(result.stdout + result.stderr)


def test_unreachable_catalog_error_never_shows_an_sslpassword(tmp_path: Path) -> None:
    port = _closed_port()
    database = f"postgresql://user@127.0.0.1:{port}/repo?sslpassword={SSL_PASSWORD}"
    run = _run(tmp_path, database=database)
    for args in (("add", "a.csv", str(tmp_path / "cfg.json")), ("status",), ("status", "--json")):
        result = run(*args)
        assert result.exit_code == 1
        _assert_hidden(result.stdout + result.stderr)


def test_unreachable_store_error_never_shows_endpoint_credentials(tmp_path: Path) -> None:
    port = _closed_port()
    run = _run(
        tmp_path,
        store="s3://nobucket/p",
        s3_endpoint_url=f"http://EndpointKey1:{ENDPOINT_SECRET}@127.0.0.1:{port}",
        s3_access_key="repotestaccesskey",
        s3_secret_key=S3_SECRET_KEY,
        s3_region="us-east-1",
    )
    status = run("status", "--json")
    assert status.exit_code == 1
    assert json.loads(status.stdout)["store"]["reachable"] is False
    _assert_hidden(status.stdout + status.stderr)


# ------------------------------------------------- world-readable warning


@pytest.mark.parametrize(
    "extra",
    [
        {"database": f"postgresql://user:{PASSWORD}@db.example/repo"},
        {"database": f"postgresql://user@db.example/repo?password={QUERY_PASSWORD}"},
        {"database": f"postgresql://user@db.example/repo?sslpassword={SSL_PASSWORD}"},
        {"s3_endpoint_url": f"https://EndpointKey1:{ENDPOINT_SECRET}@s3.example"},
    ],
    ids=["at-signs-in-password", "password-in-query", "sslpassword", "endpoint-credentials"],
)
def test_a_readable_config_with_a_secret_in_a_url_draws_the_warning(
    tmp_path: Path, extra: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    cfg = write_config(tmp_path / "cfg.json", _config(tmp_path, **extra))
    cfg.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="repo.config"):
        load_config(cfg)
    assert [r.getMessage() for r in caplog.records] == [
        f"{cfg} holds secrets but can be read by other users (mode 644); run: chmod 600 {cfg}"
    ]


def test_a_readable_config_whose_urls_hold_no_secret_draws_no_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    extra = {
        "database": "postgresql://user@db.example/repo?passfile=/home/u/.pgpass&sslmode=require",
        "s3_endpoint_url": "https://s3.example:9000",
    }
    cfg = write_config(tmp_path / "cfg.json", _config(tmp_path, **extra))
    cfg.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="repo.config"):
        load_config(cfg)
    assert caplog.records == []
