"""PostgreSQL roles for least privilege: one that may only read the catalog, one that may
read and write it but change no schema.

Both are group roles (NOLOGIN); an administrator grants them to login users::

    CREATE ROLE reports_reader LOGIN PASSWORD '...' IN ROLE repo_ro;

Role, schema, database, table and sequence names are identifiers, not values, so they
cannot be bound parameters: they are quoted with psycopg's identifier quoting
(`psycopg.sql.Identifier`) and never formatted into SQL as raw text. Values (a role name
looked up in ``pg_roles``) are bound parameters as everywhere else.

What each role may do (see docs/security.md):

* read-only (``<name>_ro``): CONNECT, USAGE on the schema, SELECT on every catalog table.
  ``find``, ``list``, ``show``, ``get``, ``status``, ``verify`` work; recording which
  copies this host caches is skipped (it is advisory).
* read-write (``<name>_rw``): member of the read-only role, plus INSERT, UPDATE, DELETE on
  every catalog table and USAGE, SELECT on their id sequences: everything ``repo`` does
  except creating, upgrading, destroying and restoring the catalog, which stay with the
  owner of the tables (the user that ran ``repo create``).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text

from ..errors import CatalogError, PermissionDeniedError, UsageError
from . import migrations
from .schema import metadata
from .translate import translate_errors

if TYPE_CHECKING:
    from psycopg import sql

    from .base import CatalogBase

__all__ = ["CatalogRoles", "create_roles", "granted_bases", "regrant"]

#: PostgreSQL silently truncates identifiers longer than this (bytes).
MAX_IDENTIFIER_BYTES = 63
READ_ONLY_SUFFIX = "_ro"
READ_WRITE_SUFFIX = "_rw"


@dataclass(frozen=True, slots=True)
class CatalogRoles:
    """The two roles, which of them this run created, and what they were granted on."""

    read_only: str
    read_write: str
    created: tuple[str, ...]
    schema: str
    tables: tuple[str, ...]
    sequences: tuple[str, ...]


def _check_base(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise UsageError("the role name must be a non-empty string")
    norm = unicodedata.normalize("NFC", name)
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in norm):
        raise UsageError(f"role name {norm[:60]!r} contains a control character")
    longest = len(norm.encode()) + len(READ_ONLY_SUFFIX)
    if longest > MAX_IDENTIFIER_BYTES:
        raise UsageError(
            f"role name {norm[:60]!r} is too long: with its suffix it would be {longest} "
            f"bytes, and PostgreSQL cuts names at {MAX_IDENTIFIER_BYTES}",
            hint="choose a shorter name with --role-name",
        )
    return norm


def create_roles(catalog: CatalogBase, base: str | None = None) -> CatalogRoles:
    """Create (if missing) ``<base>_ro`` and ``<base>_rw`` and grant them their rights on
    the catalog's tables and sequences. `base` defaults to the database's name.

    Safe to run again: existing roles are kept and the grants re-applied (needed after a
    schema upgrade that added a table). Needs the tables' owner with CREATEROLE.
    """
    if catalog.db.is_sqlite:
        raise UsageError(
            "database roles need a PostgreSQL catalog; SQLite has none",
            hint="on SQLite, file permissions on the catalog file decide who may write",
        )
    if base is not None:
        base = _check_base(base)
    try:
        with translate_errors("creating the catalog's roles"):
            conn = catalog.db.begin_write()
            catalog.db.lock_schema(conn)
            if migrations.current_version(conn) is None:
                raise CatalogError(
                    "there is no catalog to grant rights on", hint="run `repo create` first"
                )
            if base is None:
                base = _check_base(str(conn.execute(text("SELECT current_database()")).scalar()))
            roles = _grant(conn, base)
            catalog.db.commit()
            return roles
    except PermissionDeniedError as exc:
        catalog.db.rollback()
        raise PermissionDeniedError(
            exc.message,
            hint="run `repo create --roles` as the owner of the catalog's tables, with the "
            "CREATEROLE right (or as a superuser)",
        ) from exc
    except BaseException:
        catalog.db.rollback()
        raise


def granted_bases(conn: Connection) -> list[str]:
    """The bases of the role pairs granted their rights on this catalog (``<base>_ro``
    may read ``files``, ``<base>_rw`` may write it), read from PostgreSQL's own record
    of the grants, before a restore drops the tables that hold them."""
    rows = conn.execute(
        text(
            "SELECT a.privilege_type, r.rolname FROM pg_class c "
            "CROSS JOIN LATERAL aclexplode(c.relacl) a "
            "JOIN pg_roles r ON r.oid = a.grantee "
            "WHERE c.oid = to_regclass('files') AND a.privilege_type IN ('SELECT', 'INSERT')"
        )
    ).all()
    readers = {str(name) for kind, name in rows if kind == "SELECT"}
    writers = {str(name) for kind, name in rows if kind == "INSERT"}
    return sorted(
        name[: -len(READ_ONLY_SUFFIX)]
        for name in readers
        if name.endswith(READ_ONLY_SUFFIX)
        and name[: -len(READ_ONLY_SUFFIX)] + READ_WRITE_SUFFIX in writers
    )


def regrant(conn: Connection, base: str) -> None:
    """Grant ``<base>_ro`` and ``<base>_rw`` their rights again, on tables a restore
    has just made (in its transaction)."""
    _grant(conn, base)


def _grant(conn: Connection, base: str) -> CatalogRoles:
    from psycopg import sql  # only here: most commands never load psycopg's SQL composer

    ro, rw = base + READ_ONLY_SUFFIX, base + READ_WRITE_SUFFIX
    database = str(conn.execute(text("SELECT current_database()")).scalar_one())
    schema = str(conn.execute(text("SELECT current_schema()")).scalar_one())
    created = []
    for role in (ro, rw):
        found = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :name"), {"name": role})
        if found.first() is None:
            _run(conn, sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
            created.append(role)
    table_names = sorted(metadata.tables)
    tables = sql.SQL(", ").join(sql.Identifier(schema, t) for t in table_names)
    sequences = _sequences(conn)
    ro_id, rw_id = sql.Identifier(ro), sql.Identifier(rw)
    statements = [
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), ro_id),
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), ro_id),
        sql.SQL("GRANT SELECT ON TABLE {} TO {}").format(tables, ro_id),
        sql.SQL("GRANT {} TO {}").format(ro_id, rw_id),
        sql.SQL("GRANT INSERT, UPDATE, DELETE ON TABLE {} TO {}").format(tables, rw_id),
    ]
    if sequences:
        names = sql.SQL(", ").join(sql.Identifier(s, n) for s, n in sequences)
        statements.append(sql.SQL("GRANT USAGE, SELECT ON SEQUENCE {} TO {}").format(names, rw_id))
    for statement in statements:
        _run(conn, statement)
    return CatalogRoles(
        read_only=ro,
        read_write=rw,
        created=tuple(created),
        schema=schema,
        tables=tuple(table_names),
        sequences=tuple(f"{s}.{n}" for s, n in sequences),
    )


def _sequences(conn: Connection) -> list[tuple[str, str]]:
    """(schema, name) of the sequences behind the catalog's generated ids."""
    out = []
    for table in metadata.sorted_tables:
        column = table.autoincrement_column
        if column is None:
            continue
        row = conn.execute(
            text(
                "SELECT n.nspname, c.relname FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.oid = pg_get_serial_sequence(:table, :column)::regclass"
            ),
            {"table": table.name, "column": column.name},
        ).first()
        if row is not None:
            out.append((str(row[0]), str(row[1])))
    return out


def _run(conn: Connection, statement: sql.Composable) -> None:
    raw = conn.connection.dbapi_connection
    assert raw is not None  # noqa: S101 - an open connection has one (for mypy)
    # Identifiers are quoted by psycopg; `no_parameters` stops the driver from reading a
    # '%' inside a quoted name as a placeholder.
    rendered = statement.as_string(raw)  # type: ignore[arg-type]
    conn.execution_options(no_parameters=True).exec_driver_sql(rendered)
