"""The catalog's tables, as SQLAlchemy Core metadata shared by PostgreSQL and SQLite.

Design notes (docs/how-it-works.md has the longer story):

* ``files`` holds one row per version; ``paths`` one row per path. Publishing locks the
  path's row, so concurrent publishers of one path queue up instead of racing, and a
  partial unique index (one ``published`` row per path) makes a second current version
  impossible even for code that forgets the lock.
* Tags are interned in ``tags`` and referenced by integer id from ``file_tags`` and
  ``path_tags``; both link tables have an index led by ``tag_id`` so a tag query walks
  only the files that carry the tag.
* ``current_tags`` is derived: a row per tag of every *published* version, its own tags
  and its path's, kept in step by every write that changes a version's state or a tag
  (and rebuilt from the three tables above by migrations and restores). `find` reads
  only it: ``file_tags`` also holds the tags of every expired version, most of the rows
  in a catalog with history, which a query for current files would otherwise walk and
  check one by one. Its rows carry the version's path, so that a tag's versions are
  listed in `find`'s order, and all the version's tags, so that a row tells whether
  its version carries the query's other tags. It has no foreign keys: only published
  versions have rows, and garbage collection never deletes one, so its deletes need not
  look here.
* ``hosts`` and ``file_hosts`` record which host holds which verified copy and when it
  was last read, for cache management and recovery from host caches.
* ``replicas`` records a version's copies in the repository's other stores, by store
  name (docs/replicas.md): the home copy stays ``files.bucket`` and ``files.key``, so a
  repository with one store has no rows here.
* ``backups`` records completed catalog backups; garbage collection keeps expired files
  until enough backups have been taken since they expired.
* Times are stored as naive UTC and handed out as aware UTC datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.types import TypeDecorator

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.engine import Dialect

__all__ = ["SCHEMA_VERSION", "metadata", "tag_set_item"]

#: Bump with every migration added to `catalog.migrations`.
SCHEMA_VERSION = 7

STATES = ("unpublished", "published", "expired")
#: The states of a copy in a store other than its version's own (docs/replicas.md).
REPLICA_STATES = ("writing", "verified", "lost")

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL wants 64-bit ids.
Id = BigInteger().with_variant(Integer(), "sqlite")
# Byte-order comparison of paths and tags on PostgreSQL, as SQLite does by default.
Name = Text().with_variant(Text(collation="C"), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Naive UTC in the database, aware UTC in Python."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError("expected a datetime")
        aware: datetime = value
        if aware.tzinfo is not None:
            return aware.astimezone(UTC).replace(tzinfo=None)
        return aware

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return _aware(value)

    def result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any]:
        # Straight to `_aware`, without TypeDecorator's wrapper: a `find` may read tens
        # of thousands of times.
        inner = self.impl_instance.result_processor(dialect, coltype)
        if inner is None:
            return _aware
        return lambda value: _aware(inner(value))


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    if value.__class__ is datetime and value.tzinfo is None:  # the usual case, first
        return value.replace(tzinfo=UTC)
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"unexpected datetime value {value!r}")
    result: datetime = value
    return result.replace(tzinfo=UTC) if result.tzinfo is None else result.astimezone(UTC)


repo_meta = Table(
    "repo_meta",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

hosts = Table(
    "hosts",
    metadata,
    Column("host_id", Id, primary_key=True, autoincrement=True),
    Column("name", Name, nullable=False, unique=True),
    Column("first_seen", UTCDateTime, nullable=False),
    Column("last_seen", UTCDateTime, nullable=False),
    Column("cache_max_bytes", BigInteger, nullable=True),
)

paths = Table(
    "paths",
    metadata,
    Column("path_id", Id, primary_key=True, autoincrement=True),
    Column("path", Name, nullable=False, unique=True),
)

files = Table(
    "files",
    metadata,
    Column("file_id", Id, primary_key=True, autoincrement=True),
    Column("path_id", Id, ForeignKey("paths.path_id"), nullable=False),
    Column("bucket", Text, nullable=False),
    Column("key", Name, nullable=False, unique=True),
    Column("state", String(16), nullable=False, server_default="unpublished"),
    Column("md5", String(32), nullable=True),
    Column("size", BigInteger, nullable=True),
    Column("origin", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("uploaded_at", UTCDateTime, nullable=True),
    Column("published_at", UTCDateTime, nullable=True),
    Column("expired_at", UTCDateTime, nullable=True),
    # Set (once) when garbage collection claims the version; from then on it can never be
    # published or change state, and its object may be deleted at any moment. (Version 2.)
    Column("purge_started_at", UTCDateTime, nullable=True),
    # What vouched for the uploaded object: its ETag, reading it back, or the server's
    # own check (`repo.integrity.VERIFIED_WITH`). NULL before version 4. (Version 4.)
    Column("verified_with", String(16), nullable=True),
    # The POSIX permission bits the file had when added (or that `--mode` gave it), applied
    # to copies written out; NULL when unknown (versions older than version 6). (Version 6.)
    Column(
        "mode",
        Integer,
        # permissions.MODE_BITS. On the column, not the table: SQLite drops a column
        # only when no table-wide check names it.
        CheckConstraint("mode IS NULL OR (mode >= 0 AND mode <= 511)", name="files_mode_ck"),
        nullable=True,
    ),
    # The archival class the object was moved to, and when; NULL while it is in the class
    # it was uploaded in. (Version 6.)
    Column(
        "storage_class",
        String(16),
        CheckConstraint(  # storage_classes.ARCHIVE_CLASSES
            "storage_class IS NULL OR storage_class IN ('GLACIER_IR', 'GLACIER', 'DEEP_ARCHIVE')",
            name="files_storage_class_ck",
        ),
        nullable=True,
    ),
    Column("archived_at", UTCDateTime, nullable=True),
    CheckConstraint("state IN ('unpublished', 'published', 'expired')", name="files_state_ck"),
    CheckConstraint(
        "state <> 'published' OR (md5 IS NOT NULL AND size IS NOT NULL)",
        name="files_published_uploaded_ck",
    ),
    # Ids of purged versions must never be handed out again (`repo publish 12` must
    # not reach a stranger's version): SQLite reuses the highest rowid without this.
    sqlite_autoincrement=True,
)
Index("files_path_state_ix", files.c.path_id, files.c.state)
Index("files_state_ix", files.c.state, files.c.file_id)
Index(
    "files_one_current_per_path_ux",
    files.c.path_id,
    unique=True,
    postgresql_where=text("state = 'published'"),
    sqlite_where=text("state = 'published'"),
)

tags = Table(
    "tags",
    metadata,
    Column("tag_id", Id, primary_key=True, autoincrement=True),
    Column("name", Name, nullable=False, unique=True),
)

file_tags = Table(
    "file_tags",
    metadata,
    Column("file_id", Id, ForeignKey("files.file_id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", Id, ForeignKey("tags.tag_id"), primary_key=True),
)
Index("file_tags_tag_ix", file_tags.c.tag_id, file_tags.c.file_id)

path_tags = Table(
    "path_tags",
    metadata,
    Column("path_id", Id, ForeignKey("paths.path_id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", Id, ForeignKey("tags.tag_id"), primary_key=True),
)
Index("path_tags_tag_ix", path_tags.c.tag_id, path_tags.c.path_id)

# (Version 3; `path` and `tag_set` since version 5.) The primary key, a tag's versions in
# path order with each one's tag set, is the index `find` walks (on PostgreSQL the set
# is in the index: it tests a version's other tags without reading the table).
current_tags = Table(
    "current_tags",
    metadata,
    Column("tag_id", Id, nullable=False),
    Column("path", Name, nullable=False),
    Column("file_id", Id, nullable=False),
    # Every tag id of the version, own and its path's, each between commas, in id order
    # (",1,4,9,"): `tag_set_item` is what a test for a tag looks for.
    Column("tag_set", Text, nullable=False),
    PrimaryKeyConstraint("tag_id", "path", "file_id", postgresql_include=["tag_set"]),
)
Index("current_tags_file_ix", current_tags.c.file_id)


def tag_set_item(tag_id: int) -> str:
    """What ``current_tags.tag_set`` holds when the version carries `tag_id`."""
    return f",{int(tag_id)},"


file_hosts = Table(
    "file_hosts",
    metadata,
    Column("file_id", Id, ForeignKey("files.file_id", ondelete="CASCADE"), primary_key=True),
    Column("host_id", Id, ForeignKey("hosts.host_id", ondelete="CASCADE"), primary_key=True),
    Column("downloaded_at", UTCDateTime, nullable=False),
    Column("last_access", UTCDateTime, nullable=False),
)
Index("file_hosts_host_ix", file_hosts.c.host_id, file_hosts.c.last_access)

backups = Table(
    "backups",
    metadata,
    Column("backup_id", Id, primary_key=True, autoincrement=True),
    Column("name", Name, nullable=False, unique=True),
    # The snapshot's time: what the backup contains is the catalog as of this moment.
    Column("taken_at", UTCDateTime, nullable=False),
    Column("completed_at", UTCDateTime, nullable=True),
    Column("location", Text, nullable=False, server_default=""),
)
Index("backups_taken_ix", backups.c.taken_at)

# (Version 7.) A version's copies in other stores than its own; a row for its own store
# overrides ``files.bucket``/``files.key`` (docs/replicas.md). ``store`` is the store's
# name in the configuration, never a bucket: the bucket behind a name may be replaced.
replicas = Table(
    "replicas",
    metadata,
    Column("file_id", Id, ForeignKey("files.file_id", ondelete="CASCADE"), nullable=False),
    Column("store", String(32), nullable=False),
    Column("key", Name, nullable=False),
    Column("state", String(16), nullable=False),
    Column("size", BigInteger, nullable=True),
    Column("md5", String(32), nullable=True),
    Column("verified_with", String(16), nullable=True),
    Column("written_at", UTCDateTime, nullable=False),
    Column("verified_at", UTCDateTime, nullable=True),
    Column("lost_at", UTCDateTime, nullable=True),
    PrimaryKeyConstraint("file_id", "store"),
    CheckConstraint("state IN ('writing', 'verified', 'lost')", name="replicas_state_ck"),
    CheckConstraint(
        "state <> 'verified' OR (md5 IS NOT NULL AND size IS NOT NULL AND verified_at IS NOT NULL)",
        name="replicas_verified_ck",
    ),
)
Index("replicas_store_ix", replicas.c.store, replicas.c.state, replicas.c.file_id)
