"""``current_tags``: the tags of the published versions only, which `find` reads.

``file_tags`` holds the tags of every version a catalog still keeps, and in a catalog
with history most of them are expired: a query for current files that walked it would
read the rows of every old version of a tag and check each version's state. This table
holds a row per (tag, published version), the version's own tags and its path's
together, so `find` walks only what it can return, and a tag on a file and on its path
is one row. Since version 5 each row also carries the version's path and its whole tag
set (``tag_set``), and the table's key is (tag, path, version): a tag's rows come in
`find`'s order, so a query for the first files stops after them, the answer's paths
are read from here, not from ``paths``, and a query reads one tag's rows only, testing
each against its set for the other tags. A change of a version's tags therefore
rewrites all its rows (a dozen, typically).

It is derived data. Every write that changes what it derives from keeps it in step in
the same transaction:

* a version's state: `VersionQueries.publish` and `expire`, `BulkQueries.add_uploaded`,
  and the journal's replay, `ReplayQueries.apply_entry` (which re-derives the rows of
  the paths it touched);
* a published version's own tags (`TagQueries.add_tags`, `remove_tags`), or its path's
  (`add_path_tags`, `remove_path_tags`).

Garbage collection needs nothing here: it deletes only unpublished and expired
versions, which have no rows. A migration and a restore build it from scratch
(`rebuild`); backups leave it out.

Concurrency (PostgreSQL, READ COMMITTED): everything a version's rows derive from (the
states of a path's versions, their own tags, the path's tags) changes only under the
path's row lock (``FOR NO KEY UPDATE``), which publishing and expiring take already and
tagging takes too (`lock_path`). Writers of one path's tags and states therefore take
turns, and each writes the rows after the lock, in statements that see what the writer
before it committed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Text,
    cast,
    delete,
    func,
    insert,
    literal,
    select,
    true,
    union,
)
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from .arrays import IN_BATCH, among
from .schema import current_tags, file_tags, files, path_tags, paths

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "add_rows",
    "derive",
    "drop_rows",
    "forget_versions",
    "lock_path",
    "rebuild",
    "rederive_paths",
]


#: A row: the tag, the version's path (so that a tag's rows are in `find`'s order), the
#: version, and the version's every tag (`schema.tag_set_item`).
_COLUMNS = ["tag_id", "path", "file_id", "tag_set"]
_its_path = files.c.path_id == paths.c.path_id


def _step(pg: bool, n: int) -> int:
    # PostgreSQL takes the ids as one array parameter; SQLite as an IN list.
    return max(n, 1) if pg else IN_BATCH


def lock_path(conn: Connection, *, file_id: int | None = None, path_id: int | None = None) -> None:
    """Lock a path's row (of `path_id`, or of version `file_id`'s path) as publishing
    does: ``FOR NO KEY UPDATE`` (SQLite has one writer: nothing to lock)."""
    if file_id is not None:
        of_version = select(files.c.path_id).where(files.c.file_id == file_id)
        which = paths.c.path_id == of_version.scalar_subquery()
    else:
        which = paths.c.path_id == path_id
    conn.execute(select(paths.c.path_id).where(which).with_for_update(key_share=True)).all()


def add_rows(
    conn: Connection, which: ColumnElement[bool], tag_ids: Sequence[int], pg: bool
) -> None:
    """The published versions among those `which` selects (in ``files``) now carry
    `tag_ids` (already written to their truth)."""
    if tag_ids:
        _rederive(conn, which, pg)


def drop_rows(
    conn: Connection, which: ColumnElement[bool], tag_ids: Sequence[int], pg: bool
) -> None:
    """The versions `which` selects lost `tag_ids` (on themselves or on their path;
    already written to their truth)."""
    if tag_ids:
        _rederive(conn, which, pg)


def _rederive(conn: Connection, which: ColumnElement[bool], pg: bool) -> None:
    """Replace the rows of the versions `which` selects with what the truth says: every
    row of a version holds its whole tag set, so a change of one tag rewrites them."""
    versions = select(files.c.file_id).where(which)
    conn.execute(delete(current_tags).where(current_tags.c.file_id.in_(versions)))
    conn.execute(_insert(pg).from_select(_COLUMNS, _truth(which, pg)).on_conflict_do_nothing())


def forget_versions(conn: Connection, file_ids: Sequence[int], pg: bool) -> None:
    """Drop every row of these versions (expired, superseded, purged)."""
    ids = sorted(set(file_ids))
    step = _step(pg, len(ids))
    for i in range(0, len(ids), step):
        conn.execute(
            delete(current_tags).where(
                among(current_tags.c.file_id, ids[i : i + step], postgres=pg)
            )
        )


def derive(conn: Connection, file_ids: Sequence[int], pg: bool) -> None:
    """Add the rows of these versions, which have none yet, from the truth: for those
    that are published, their own tags and their path's."""
    ids = sorted(set(file_ids))
    step = _step(pg, len(ids))
    for i in range(0, len(ids), step):
        chunk = ids[i : i + step]
        conn.execute(
            _insert(pg)
            .from_select(_COLUMNS, _truth(among(files.c.file_id, chunk, postgres=pg), pg))
            .on_conflict_do_nothing()
        )


def rederive_paths(conn: Connection, path_ids: Sequence[int], pg: bool) -> None:
    """Replace the rows of every version of these paths with what the truth says."""
    ids = sorted(set(path_ids))
    step = _step(pg, len(ids))
    for i in range(0, len(ids), step):
        chunk = ids[i : i + step]
        versions = select(files.c.file_id).where(among(files.c.path_id, chunk, postgres=pg))
        conn.execute(delete(current_tags).where(current_tags.c.file_id.in_(versions)))
        conn.execute(
            _insert(pg)
            .from_select(_COLUMNS, _truth(among(files.c.path_id, chunk, postgres=pg), pg))
            .on_conflict_do_nothing()
        )


def rebuild(conn: Connection) -> int:
    """Empty the table and derive it from scratch; returns its row count."""
    conn.execute(delete(current_tags))
    pg = conn.dialect.name == "postgresql"
    conn.execute(insert(current_tags).from_select(_COLUMNS, _truth(literal(True), pg)))
    return int(conn.execute(select(func.count()).select_from(current_tags)).scalar_one())


def _truth(which: Any, pg: bool) -> Any:
    """(tag_id, path, file_id, tag_set) of the published versions `which` selects: own
    tags and path tags, each pair once, each with the version's whole set."""
    published = files.c.state == "published"
    own = (
        select(file_tags.c.tag_id, paths.c.path, file_tags.c.file_id)
        .join(files, files.c.file_id == file_tags.c.file_id)
        .join(paths, _its_path)
        .where(published, which)
    )
    via_path = (
        select(path_tags.c.tag_id, paths.c.path, files.c.file_id)
        .join(files, files.c.path_id == path_tags.c.path_id)
        .join(paths, _its_path)
        .where(published, which)
    )
    pairs = union(own, via_path).subquery("pairs")
    tag = cast(pairs.c.tag_id, Text)
    joined = func.string_agg(tag, ",") if pg else func.group_concat(tag, ",")
    # In tag id order (the window's, over the whole partition): the same tags, the same
    # text, however the rows were derived.
    whole = joined.over(partition_by=pairs.c.file_id, order_by=pairs.c.tag_id, rows=(None, None))
    tag_set = literal(",", Text) + whole + literal(",", Text)
    # The WHERE: SQLite would read an upsert's ON CONFLICT as a join's ON without it.
    return select(pairs.c.tag_id, pairs.c.path, pairs.c.file_id, tag_set).where(true())


def _insert(pg: bool) -> Any:
    return pg_dialect.insert(current_tags) if pg else sqlite_dialect.insert(current_tags)
