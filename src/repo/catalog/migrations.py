"""Schema creation and upgrades.

The schema version lives in ``repo_meta``. Each migration moves a catalog from version
N-1 to N inside the caller's transaction; `upgrade` runs the missing ones in order. An
empty database gets the current schema in one step. A catalog newer than this code is
refused rather than guessed at.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Connection, inspect, select, text

from ..errors import CatalogError
from . import tag_index
from .schema import SCHEMA_VERSION, backups, current_tags, metadata, replicas, repo_meta

__all__ = ["current_version", "upgrade"]

Migration = Callable[[Connection], None]


def _v2_garbage_collection(conn: Connection) -> None:
    """Version 2: files can be claimed for purging; completed backups are recorded."""
    conn.execute(text("ALTER TABLE files ADD COLUMN purge_started_at TIMESTAMP"))
    backups.create(conn)  # with its index


def _v3_current_tags(conn: Connection) -> None:
    """Version 3: ``current_tags``, the tags of published versions, for `find`."""
    _create_current_tags(conn)


def _create_current_tags(conn: Connection) -> None:
    """Create ``current_tags`` as this code defines it, fill it, and grant on it what
    is granted on ``file_tags``."""
    current_tags.create(conn)  # with its index
    tag_index.rebuild(conn)
    # Whoever may read or write the tags (the roles of `repo create --roles`, or
    # grants of an administrator's own) may do the same with their derived table.
    _grant_as(conn, "current_tags", like="file_tags")
    if conn.dialect.name == "postgresql":
        conn.execute(text("ANALYZE current_tags"))


def _grant_as(conn: Connection, table: str, *, like: str) -> None:
    """Grant on the new `table` what is granted on `like` (PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        grants = conn.execute(
            text(
                "SELECT grantee, privilege_type FROM information_schema.role_table_grants "
                "WHERE table_schema = current_schema() AND table_name = :like "
                "AND privilege_type IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE') "
                "AND grantee <> current_user ORDER BY 1, 2"
            ),
            {"like": like},
        ).all()
        for grantee, privilege in grants:
            # Names from PostgreSQL's own catalog, quoted as identifiers; `table` is
            # one of ours, and `privilege` one of the four above.
            name = str(grantee)
            role = name if name == "PUBLIC" else '"' + name.replace('"', '""') + '"'
            conn.execute(text(f"GRANT {privilege} ON TABLE {table} TO {role}"))


def _v4_verified_with(conn: Connection) -> None:
    """Version 4: each version records what vouched for its object (``verified_with``)."""
    conn.execute(text("ALTER TABLE files ADD COLUMN verified_with VARCHAR(16)"))


def _v5_current_tags_by_path(conn: Connection) -> None:
    """Version 5: ``current_tags`` rows carry their version's path and tag set, and its
    key lists a tag's versions in path order (`find` reads one tag's rows, stops at its
    first page, reads no path row)."""
    if "tag_set" in {c["name"] for c in inspect(conn).get_columns("current_tags")}:
        return  # made by version 3's step just now, in this shape already
    # Derived data: made again rather than altered (SQLite cannot change a key).
    conn.execute(text("DROP TABLE current_tags"))
    _create_current_tags(conn)


def _v6_mode_and_archival(conn: Connection) -> None:
    """Version 6: each version records its permission bits (``mode``) and, once archived,
    its storage class and when it was moved (``storage_class``, ``archived_at``)."""
    for column in (
        "mode INTEGER CONSTRAINT files_mode_ck CHECK (mode IS NULL OR (mode >= 0 AND mode <= 511))",
        "storage_class VARCHAR(16) CONSTRAINT files_storage_class_ck CHECK (storage_class IS NULL "
        "OR storage_class IN ('GLACIER_IR', 'GLACIER', 'DEEP_ARCHIVE'))",
        "archived_at TIMESTAMP",
    ):
        conn.execute(text(f"ALTER TABLE files ADD COLUMN {column}"))


def _v7_replicas(conn: Connection) -> None:
    """Version 7: ``replicas``, a version's copies in the repository's other stores."""
    replicas.create(conn)  # with its index
    _grant_as(conn, "replicas", like="files")


#: version -> step from version-1. Version 1 is the initial schema (create_all).
MIGRATIONS: dict[int, Migration] = {
    2: _v2_garbage_collection,
    3: _v3_current_tags,
    4: _v4_verified_with,
    5: _v5_current_tags_by_path,
    6: _v6_mode_and_archival,
    7: _v7_replicas,
}


def current_version(conn: Connection) -> int | None:
    """The catalog's schema version, or None when the database holds no catalog."""
    if not inspect(conn).has_table("repo_meta"):
        return None
    value = conn.execute(
        select(repo_meta.c.value).where(repo_meta.c.name == "schema_version")
    ).scalar_one_or_none()
    return int(value) if value is not None else None


def upgrade(conn: Connection) -> int:
    """Create or upgrade the schema in the current transaction; returns the version."""
    version = current_version(conn)
    if version is None:
        existing = inspect(conn).get_table_names()
        clash = sorted(set(existing) & set(metadata.tables))
        if clash:
            raise CatalogError(
                f"the database has tables named like the catalog's ({', '.join(clash)}) "
                "but no catalog version",
                hint="point 'database' at an empty database",
            )
        metadata.create_all(conn)
        now = datetime.now(UTC).isoformat()
        conn.execute(
            repo_meta.insert(),
            [
                {"name": "schema_version", "value": str(SCHEMA_VERSION)},
                {"name": "repository_id", "value": str(uuid.uuid4())},
                {"name": "created_at", "value": now},
            ],
        )
        return SCHEMA_VERSION
    if version > SCHEMA_VERSION:
        raise CatalogError(
            f"the catalog has schema version {version}, newer than this repo's {SCHEMA_VERSION}",
            hint="upgrade the repo package on this host",
        )
    for target in range(version + 1, SCHEMA_VERSION + 1):
        MIGRATIONS[target](conn)
        conn.execute(
            repo_meta.update().where(repo_meta.c.name == "schema_version").values(value=str(target))
        )
    return SCHEMA_VERSION
