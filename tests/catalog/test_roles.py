"""Least privilege: `repo create --roles` makes a read-only and a read-write PostgreSQL role.

A login user in the read-only role can find, list and read files (its cache bookkeeping
is skipped, not fatal), and every write is refused with `PermissionDeniedError` while
nothing changes. A user in the read-write role can do all the daily work, but no DDL.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from psycopg import sql
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

import repo
from conftest import CliRun, write_config
from harness.roles import NewUser, superuser
from repo.catalog.schema import metadata

if TYPE_CHECKING:
    from collections.abc import Callable


def _one_line(err: repo.RepoError) -> None:
    assert "\n" not in err.message
    assert len(err.message) < 400
    assert err.hint is None or "\n" not in err.hint


def _counts(url: str) -> dict[str, int]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return {
                name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
                for name, table in metadata.tables.items()
            }
    finally:
        engine.dispose()


@pytest.fixture
def owner_config(tmp_path: Path, pg_url: str, db_roles: list[str]) -> dict[str, str]:
    store = tmp_path / "store"
    store.mkdir()
    return {
        "store": store.as_uri(),
        "database": pg_url,
        "local_root": str(tmp_path / "owner-local"),
        "host_name": "owner-host",
    }


def _create_roles(owner_config: dict[str, str], db_roles: list[str]) -> repo.RolesReport:
    report = repo.create_repository(owner_config, roles=True)
    assert report.roles is not None
    db_roles += [report.roles.read_write, report.roles.read_only]
    return report.roles


def _as(config: dict[str, str], url: str, tmp_path: Path, host: str) -> dict[str, Any]:
    return {**config, "database": url, "local_root": str(tmp_path / host), "host_name": host}


def _populate(config: dict[str, Any]) -> dict[str, int]:
    with repo.Repo(config) as r:
        r.add("reports/a.csv", _src(config, b"a1"), tags=["sales"], publish=True, keep_cached=True)
        current = r.add(
            "reports/a.csv", _src(config, b"a2"), tags=["sales"], publish=True, keep_cached=True
        )
        draft = r.add("drafts/b.csv", _src(config, b"b"), keep_cached=True)
        return {"current": current.file_id, "draft": draft.file_id}


def _src(config: dict[str, Any], data: bytes) -> str:
    path = Path(config["local_root"]).parent / f"src-{data.hex()}"
    path.write_bytes(data)
    return str(path)


def test_read_only_user_reads_and_every_write_is_refused(
    owner_config: dict[str, str],
    db_roles: list[str],
    new_user: NewUser,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    roles = _create_roles(owner_config, db_roles)
    db = make_url(owner_config["database"]).database
    assert (roles.read_only, roles.read_write) == (f"{db}_ro", f"{db}_rw")
    assert roles.created == (roles.read_only, roles.read_write)
    ids = _populate(owner_config)
    reader = _as(owner_config, new_user("reader_" + str(db), roles.read_only), tmp_path, "ro-host")
    # So that GC has something to purge: the superseded version of reports/a.csv.
    reader.update(expired_ttl_seconds=0, backups_before_purge=0)
    before = _counts(owner_config["database"])
    objects = sorted(p.name for p in (tmp_path / "store").rglob("*") if p.is_file())

    caplog.set_level(logging.INFO, logger="repo")
    with repo.Repo(reader) as r:
        assert [f.path for f in r.find(all=["sales"])] == ["reports/a.csv"]
        assert [f.path for f in r.list("reports/*")] == ["reports/a.csv"]
        assert [f.file_id for f in r.list("*", state="all")] == [ids["draft"], *_ids(r)]
        assert len(r.history("reports/a.csv")) == 2
        got = r.get_file("reports/a.csv")
        assert got is not None
        assert got.read_bytes() == b"a2"  # downloaded
        assert got.read_bytes() == b"a2"  # a cache hit
        assert r.status()["published"] == (1, 2)

        refusals: list[tuple[str, Callable[[], object]]] = [
            ("publish", lambda: r.file(ids["draft"]).publish()),
            ("expire", lambda: r.file(ids["current"]).expire()),
            ("tag", lambda: r.file(ids["current"]).tag("hacked")),
            ("tag an existing name", lambda: r.file(ids["current"]).tag("sales")),
            ("untag", lambda: r.file(ids["current"]).untag("sales")),
            ("add", lambda: r.add_file("new.txt")),
            ("gc", lambda: r.gc()),
        ]
        for what, attempt in refusals:
            with pytest.raises(repo.PermissionDeniedError) as err:
                attempt()
            _one_line(err.value)
            assert "permission denied" in err.value.message, what
            assert err.value.hint, what
            assert "docs/security.md" in err.value.hint, what
            assert isinstance(err.value, repo.CatalogError)
            r.rollback()
    # The context manager's commit and close went through; nothing changed anywhere.
    assert _counts(owner_config["database"]) == before
    assert sorted(p.name for p in (tmp_path / "store").rglob("*") if p.is_file()) == objects
    with repo.Repo(owner_config) as owner:
        assert [h.name for h in owner.hosts()] == ["owner-host"]  # no bookkeeping as ro-host
        assert owner.file(ids["draft"]).state == "unpublished"
        assert owner.file(ids["current"]).state == "published"
    assert "not recording this host's cached copies" in caplog.text


def _ids(r: repo.Repo) -> list[int]:
    return [f.file_id for f in r.history("reports/a.csv")][::-1]


def test_read_write_user_does_the_daily_work_but_no_ddl(
    owner_config: dict[str, str], db_roles: list[str], new_user: NewUser, tmp_path: Path
) -> None:
    roles = _create_roles(owner_config, db_roles)
    _populate(owner_config)
    writer = _as(owner_config, new_user("writer_x", roles.read_write), tmp_path, "rw-host")
    with repo.Repo({**writer, "expired_ttl_seconds": 0, "backups_before_purge": 0}) as r:
        rf = r.add(
            "reports/c.csv", _src(writer, b"c"), tags=["new"], publish=True, keep_cached=True
        )
        rf.tag_path("team=ops")
        r.commit()
        r.current("reports/a.csv").expire()
        r.commit()
        report = r.gc()
        assert report.expired.count == 2  # both versions of reports/a.csv
        assert r.backup().rows["files"] == 2
        assert [f.path for f in r.find(all=["team=ops"])] == ["reports/c.csv"]
        assert sorted(h.name for h in r.hosts()) == ["owner-host", "rw-host"]
    for ddl in (
        lambda: repo.destroy_catalog(writer),
        lambda: repo.create_roles(writer, name="writer_made"),
    ):
        with pytest.raises(repo.PermissionDeniedError) as err:
            ddl()
        _one_line(err.value)
    assert "CREATEROLE" in (err.value.hint or "")
    assert _counts(owner_config["database"])["files"] == 2


def test_roles_are_idempotent_and_any_name_is_quoted_not_interpreted(
    owner_config: dict[str, str], db_roles: list[str], pg_url: str
) -> None:
    repo.create_repository(owner_config)
    hostile = 'x"; DROP TABLE files; -- %s'
    db_roles += [hostile + "_rw", hostile + "_ro"]
    first = repo.create_roles(owner_config, name=hostile)
    again = repo.create_roles(owner_config, name=hostile)
    assert first.created == (hostile + "_ro", hostile + "_rw")
    assert again.created == ()
    assert first.tables == tuple(sorted(metadata.tables))
    assert "files_file_id_seq" in " ".join(first.sequences)
    query = "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE {} ORDER BY 1"
    found = superuser(pg_url, sql.SQL(query).format(sql.Literal("x%")))
    assert found == [(hostile + "_ro", False), (hostile + "_rw", False)]
    assert _counts(pg_url)["files"] == 0  # the table is still there
    for bad, why in (("", "non-empty"), ("a\x00b", "control"), ("n" * 61, "too long")):
        with pytest.raises(repo.UsageError, match=why):
            repo.create_roles(owner_config, name=bad)


def test_roles_on_sqlite_are_a_clear_error_before_anything_is_made(
    embedded_cli: CliRun, tmp_path: Path
) -> None:
    result = embedded_cli("create", "--roles")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "Error: database roles need a PostgreSQL catalog; SQLite has none\n"
        "Try: on SQLite, file permissions on the catalog file decide who may write\n"
    )
    assert not (tmp_path / "home" / "catalog.db").exists()
    assert embedded_cli("create", "--role-name", "x").exit_code == 2


def test_cli_create_roles_output_and_a_read_only_user_on_the_cli(
    owner_config: dict[str, str],
    db_roles: list[str],
    new_user: NewUser,
    tmp_path: Path,
) -> None:
    owner = CliRun(write_config(tmp_path / "owner.json", owner_config), tmp_path)
    db_roles += ["acme_rw", "acme_ro"]
    result = owner("create", "--roles", "--role-name", "acme")
    catalog = make_url(owner_config["database"]).render_as_string(hide_password=True)
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"catalog {catalog}: created (schema version {repo.catalog.SCHEMA_VERSION})\n"
        f"store {owner_config['store']}: reachable\n"
        "role acme_ro (read-only): created\n"
        "role acme_rw (read-write): created\n"
        "the roles cannot log in: grant one to each login user, e.g. GRANT acme_ro TO "
        "some_user (docs/security.md)\n"
    )
    assert owner("create", "--roles", "--role-name", "acme").stdout.splitlines()[2:4] == [
        "role acme_ro (read-only): exists, grants renewed",
        "role acme_rw (read-write): exists, grants renewed",
    ]
    src = tmp_path / "f.txt"
    src.write_text("hello")
    assert owner("add", "f.txt", str(src), "--publish").exit_code == 0
    reader_cfg = _as(owner_config, new_user("acme_reader", "acme_ro"), tmp_path, "cli-ro")
    reader = CliRun(write_config(tmp_path / "reader.json", reader_cfg), tmp_path)
    got = reader("cat", "f.txt")
    assert (got.exit_code, got.stdout, got.stderr) == (0, "hello", "")
    refused = reader("tag", "f.txt", "x")
    assert refused.exit_code == 1
    assert refused.stdout == ""
    assert refused.stderr == (
        "Error: recording names: permission denied (permission denied for table tags)\n"
        "Try: this database user may not do that: use one in the read-write role, or the "
        "catalog's owner for create, upgrade and restore (docs/security.md)\n"
    )


def test_the_roles_keep_their_rights_through_a_restore(
    owner_config: dict[str, str], db_roles: list[str], new_user: NewUser, tmp_path: Path
) -> None:
    # A restore drops the tables and makes them anew; the rights granted on them would
    # go with them, and every reader and writer would be locked out after a recovery.
    roles = _create_roles(owner_config, db_roles)
    ids = _populate(owner_config)
    with repo.Repo(owner_config) as r:
        r.backup()
    report = repo.restore_catalog(owner_config, force=True)
    assert report.rows["files"] == 3
    reader = _as(owner_config, new_user("reader_after", roles.read_only), tmp_path, "ro-host")
    with repo.Repo(reader) as r:
        assert r.current("reports/a.csv").file_id == ids["current"]
    writer = _as(owner_config, new_user("writer_after", roles.read_write), tmp_path, "rw-host")
    with repo.Repo(writer) as r:
        added = r.add("reports/d.csv", _src(writer, b"d"), publish=True)
        r.commit()
    assert added.file_id > ids["draft"]  # the id sequence is granted again too
    with pytest.raises(repo.PermissionDeniedError):
        repo.create_roles(writer, name="writer_made")
