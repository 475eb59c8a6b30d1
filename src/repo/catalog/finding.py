"""`find`'s queries: which versions carry a set of tags, how many, and in pages.

The answer is ordered by path, then version id, so a page ends at a (path, id) key and
the next starts after it (``after``): pages never overlap or skip a version that did
not change meanwhile, and each is a short read of its own.

Two plans for current files. By tags: the ids come from the rarest `all` tag (or the
`any` tags together) through ``current_tags``, the others probed per candidate, and
only the answer's rows are read: its cost follows the rarest tag. By path: walk the
published versions in path order, probing each for the tags, until a page is full:
its cost follows the page size over the share of files that match. A limited query
whose rarest tag is common (more than `DRIVE_CAP` files) walks paths first, in short
windows, and falls back to the tags plan if a budget of paths does not fill the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    ScalarSelect,
    Select,
    and_,
    case,
    exists,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    tuple_,
    union_all,
)

from .arrays import IN_BATCH, among
from .records import FileRecord, records, select_files
from .schema import current_tags, file_tags, files, path_tags, paths, tags

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["DRIVE_CAP", "USES_CAP", "count", "find"]

#: Files counted per tag when choosing the rarest of the `all` tags: enough to tell rare
#: from common, and cheap for a tag that half the catalog carries.
USES_CAP = 1000
#: A limited query whose rarest tag has more files than this walks paths first.
DRIVE_CAP = 5000
#: Paths the path walk covers before it gives up, per file asked for (at least
#: `WINDOW_MIN`), in windows of `STEP_PER_FILE` paths per file asked for (at least
#: `STEP_MIN`): each window is one short query, and the walk stops at the window that
#: fills the page.
WINDOW_PER_FILE = 20
WINDOW_MIN = 2000
STEP_PER_FILE = 5
STEP_MIN = 250


@dataclass(frozen=True, slots=True)
class _Query:
    """A tag query with its tags resolved to ids (`empty`: no file can match)."""

    all_ids: list[int]
    any_ids: list[int]
    excl_ids: list[int]
    #: Files carrying the driving tags (the rarest `all` tag, or the `any` tags
    #: together), counted up to the cap; -1 when not counted.
    driving: int
    known: dict[str, _TagStats]
    published: bool
    pg: bool
    empty: bool = False


def _resolve(
    conn: Connection,
    any_tags: Sequence[str],
    all_tags: Sequence[str],
    exclude: Sequence[str],
    published: bool,
    pg: bool,
    limited: bool,
) -> _Query:
    if published:
        # The rarest `all` tag's count picks the plan, and how its candidates are probed.
        counted: Sequence[str] = all_tags or (any_tags if limited else ())
        cap = max(USES_CAP, DRIVE_CAP)
    else:
        # Only a choice between `all` tags needs counts.
        counted = all_tags if len(set(all_tags)) > 1 else ()
        cap = USES_CAP
    known = _tag_stats(conn, [*any_tags, *all_tags, *exclude], counted, pg, published, cap)
    any_ids = sorted({known[t].tag_id for t in any_tags if t in known})
    all_stats = sorted({known[t] for t in all_tags if t in known}, key=lambda s: (s.uses, s.tag_id))
    excl_ids = sorted({known[t].tag_id for t in exclude if t in known})
    empty = any(t not in known for t in all_tags) or bool(any_tags and not any_ids)
    if not counted:
        driving = -1
    elif all_stats:
        driving = all_stats[0].uses
    elif any_ids:
        driving = sum(known[t].uses for t in set(any_tags) if t in known)
    else:
        driving = -1
    return _Query([s.tag_id for s in all_stats], any_ids, excl_ids, driving, known,
                  published, pg, empty)  # fmt: skip


def find(
    conn: Connection,
    *,
    any_tags: Sequence[str],
    all_tags: Sequence[str],
    exclude: Sequence[str],
    published: bool,
    pg: bool,
    limit: int | None = None,
    after: tuple[str, int] | None = None,
) -> list[FileRecord]:
    """The versions with the tags, by path then id: up to `limit`, after the key `after`."""
    q = _resolve(conn, any_tags, all_tags, exclude, published, pg, limit is not None)
    if q.empty or limit == 0:
        return []
    if limit is not None and published and (q.driving < 0 or q.driving >= DRIVE_CAP):
        walked = _walk_pages(conn, q, limit, after)
        if walked is not None:
            return walked
    query = _current_files(q) if published else _any_files(q)
    return _page(conn, query, limit, after)


def count(
    conn: Connection,
    *,
    any_tags: Sequence[str],
    all_tags: Sequence[str],
    exclude: Sequence[str],
    published: bool,
    pg: bool,
) -> int:
    """How many versions `find` would return, without reading them."""
    q = _resolve(conn, any_tags, all_tags, exclude, published, pg, False)
    if q.empty:
        return 0
    if published:
        ids = _current_ids(q)
        if ids is None:
            which = select(files.c.file_id).where(files.c.state == "published")
            if q.excl_ids:
                which = which.where(not_(_carried(files.c.file_id, q.excl_ids, pg)))
        else:
            which = ids.distinct() if len(q.any_ids) > 1 and not q.all_ids else ids
    else:
        which = select(files.c.file_id).where(and_(true(), *_any_conditions(q)))
    total = select(func.count()).select_from(which.subquery())
    return int(conn.execute(total).scalar_one())


def _page(
    conn: Connection, query: Select[Any], limit: int | None, after: tuple[str, int] | None
) -> list[FileRecord]:
    if after is not None:
        # The first condition lets an index on paths start at the key.
        query = query.where(
            paths.c.path >= after[0], tuple_(paths.c.path, files.c.file_id) > tuple_(*after)
        )
    query = query.order_by(paths.c.path, files.c.file_id)
    if limit is not None:
        query = query.limit(limit)
    return records(conn.execute(query).all())


def _walk_pages(
    conn: Connection, q: _Query, limit: int, after: tuple[str, int] | None
) -> list[FileRecord] | None:
    """Up to `limit` published versions after `after`, walking paths in order a window
    at a time; None if the walk gave up (too few of the paths it covered match)."""
    budget = max(WINDOW_MIN, WINDOW_PER_FILE * limit)
    step = max(STEP_MIN, STEP_PER_FILE * limit)
    # A path has one published version: the walk goes on after `after`'s path.
    since = after[0] if after is not None else None
    found: list[FileRecord] = []
    for _ in range(0, budget, step):
        until = _window_end(conn, since, step)
        query = _walk(q, since, until).order_by(paths.c.path, files.c.file_id)
        found += records(conn.execute(query.limit(limit - len(found))).all())
        if len(found) == limit or until is None:
            return found
        since = until
    return None


def _window_end(conn: Connection, since: str | None, window: int) -> str | None:
    """The path `window` paths after the path `since` (None if there are fewer)."""
    query = select(paths.c.path)
    if since is not None:
        query = query.where(paths.c.path > since)
    query = query.order_by(paths.c.path).offset(window - 1).limit(1)
    end: str | None = conn.execute(query).scalar_one_or_none()
    return end


def _walk(q: _Query, since: str | None, until: str | None) -> Select[Any]:
    """Published versions with the tags and a path after `since` up to `until`, each
    probed for the tags (never a join with a tag's whole range: a window is short)."""
    query = select_files(pg=q.pg).where(files.c.state == "published")
    for tag_id in q.all_ids:
        query = query.where(_carried(files.c.file_id, [tag_id], q.pg, each=True))
    if q.any_ids:
        query = query.where(_carried(files.c.file_id, q.any_ids, q.pg, each=True))
    if q.excl_ids:
        query = query.where(not_(_carried(files.c.file_id, q.excl_ids, q.pg, each=True)))
    if since is not None:
        query = query.where(paths.c.path > since)
    if until is not None:
        query = query.where(paths.c.path <= until)
    return query


def _current_ids(q: _Query) -> Select[Any] | None:
    """Ids of the published files with every tag of `all_ids` (rarest first), one of
    `any_ids` and none of `excl_ids`, from ``current_tags`` alone (None without tags to
    start from).

    Every probe is keyed by the starting row's file id, so PostgreSQL may join the
    tags' index ranges (each sorted by file id) before it reads a single version row.
    When the starting tag is known to be rare, it is made to probe each candidate
    instead: its cost model, made for disks, prefers reading a common tag's whole range
    to a few thousand probes of cached pages, which cost half as much.
    """
    all_ids, any_ids, excl_ids, pg = q.all_ids, q.any_ids, q.excl_ids, q.pg
    if not all_ids and not any_ids:
        return None
    each = pg and 0 <= q.driving < DRIVE_CAP
    start = current_tags.alias("start")
    if all_ids:
        ids = select(start.c.file_id).where(start.c.tag_id == all_ids[0])
        for tag_id in all_ids[1:]:
            ids = ids.where(_carried(start.c.file_id, [tag_id], pg, each))
        if any_ids:
            ids = ids.where(_carried(start.c.file_id, any_ids, pg, each))
    else:
        ids = select(start.c.file_id).where(_among(start.c.tag_id, any_ids, pg))
    if excl_ids:
        ids = ids.where(not_(_carried(start.c.file_id, excl_ids, pg, each)))
    return ids


def _current_files(q: _Query) -> Select[Any]:
    """Published files with the tags: only the answer's rows are read from ``files``
    and ``paths``."""
    ids = _current_ids(q)
    if ids is None:
        query = select_files(pg=q.pg).where(files.c.state == "published")
        if q.excl_ids:
            query = query.where(not_(_carried(files.c.file_id, q.excl_ids, q.pg)))
        return query
    return select_files(pg=q.pg).where(files.c.file_id.in_(ids))


def _carried(file_id: Any, tag_ids: list[int], pg: bool, each: bool = False) -> ColumnElement[bool]:
    """The published version `file_id` carries one of `tag_ids`; `each`: PostgreSQL
    probes for every row (``OFFSET 0`` keeps it from turning the test into a join)."""
    probe = current_tags.alias()
    each = each and pg
    found = select(literal(1)).where(
        probe.c.file_id == file_id, _among(probe.c.tag_id, tag_ids, pg)
    )
    return found.offset(0).exists() if each else found.exists()


def _among(column: Any, ids: list[int], pg: bool) -> ColumnElement[bool]:
    return column == ids[0] if len(ids) == 1 else among(column, ids, postgres=pg)


def _any_files(q: _Query) -> Select[Any]:
    """Versions in every state with the tags, from ``file_tags`` and ``path_tags``."""
    return select_files(pg=q.pg).where(and_(true(), *_any_conditions(q)))


def _any_conditions(q: _Query) -> list[ColumnElement[bool]]:
    """The conditions on ``files`` of `_any_files` (rarest `all` tag first)."""
    on_paths = {s.tag_id for s in q.known.values() if s.on_paths}

    def split(ids: Sequence[int]) -> _TagSet:
        return _TagSet(list(ids), [t for t in ids if t in on_paths], q.pg)

    conds: list[ColumnElement[bool]] = []
    if q.all_ids:
        # Start from the rarest tag; the others are probes per candidate.
        conds.append(files.c.file_id.in_(split(q.all_ids[:1]).carriers()))
        conds.extend(split([t]).carried() for t in q.all_ids[1:])
        if q.any_ids:
            conds.append(split(q.any_ids).carried())
    elif q.any_ids:
        conds.append(files.c.file_id.in_(split(q.any_ids).carriers()))
    if q.excl_ids:
        conds.append(not_(split(q.excl_ids).carried()))
    return conds


@dataclass(frozen=True, slots=True)
class _TagStats:
    tag_id: int
    #: Only for the tags asked to count: files carrying it, up to the cap (versions in
    #: every state: on themselves, then via their path, each up to the cap); else 0.
    uses: int
    on_paths: bool


def _tag_stats(
    conn: Connection,
    names: Sequence[str],
    count: Sequence[str],
    pg: bool,
    current: bool,
    cap: int,
) -> dict[str, _TagStats]:
    """Known tags among `names`: their ids, and what `find` needs to plan its query
    (of current files only, or of versions in every state)."""
    on_paths: ColumnElement[Any] = literal(False)
    uses: ColumnElement[Any] = literal(0)
    if current and count:
        live = select(current_tags.c.file_id).where(current_tags.c.tag_id == tags.c.tag_id)
        uses = _capped_count(live, cap)
    elif count:
        own = select(file_tags.c.file_id).where(file_tags.c.tag_id == tags.c.tag_id)
        via = (
            select(files.c.file_id)
            .join(path_tags, path_tags.c.path_id == files.c.path_id)
            .where(path_tags.c.tag_id == tags.c.tag_id)
        )
        uses = _capped_count(own, cap) + _capped_count(via, cap)
    if count:
        # A CASE, so that only these tags are counted (the others' subqueries never run).
        uses = case((among(tags.c.name, sorted(set(count)), postgres=pg), uses), else_=0)
    if not current:
        on_paths = exists().where(path_tags.c.tag_id == tags.c.tag_id)
    out: dict[str, _TagStats] = {}
    unique = sorted(set(names))
    for i in range(0, len(unique), IN_BATCH):
        chunk = unique[i : i + IN_BATCH]
        rows = conn.execute(
            select(tags.c.name, tags.c.tag_id, uses, on_paths).where(
                among(tags.c.name, chunk, postgres=pg)
            )
        )
        for name, tag_id, n, via in rows:
            out[name] = _TagStats(tag_id, int(n), bool(via))
    return out


def _capped_count(rows: Select[Any], cap: int) -> ScalarSelect[Any]:
    capped = rows.limit(cap).correlate(tags).subquery()
    return select(func.count()).select_from(capped).scalar_subquery()


@dataclass(frozen=True, slots=True)
class _TagSet:
    """Tag ids, and those of them some path carries (versions in every state)."""

    ids: list[int]
    on_paths: list[int]
    pg: bool

    def carriers(self) -> Select[Any]:
        """The ids of the files carrying one of the tags, themselves or by their path."""
        own = select(file_tags.c.file_id).where(_among(file_tags.c.tag_id, self.ids, self.pg))
        if not self.on_paths:
            return own
        other = files.alias("tagged_path_files")
        via = (
            select(other.c.file_id)
            .join(path_tags, path_tags.c.path_id == other.c.path_id)
            .where(_among(path_tags.c.tag_id, self.on_paths, self.pg))
        )
        return union_all(own, via)  # type: ignore[return-value]

    def carried(self) -> ColumnElement[bool]:
        """The file (of the outer query) carries one of the tags."""
        own = exists().where(
            file_tags.c.file_id == files.c.file_id,
            _among(file_tags.c.tag_id, self.ids, self.pg),
        )
        if not self.on_paths:
            return own
        via = exists().where(
            path_tags.c.path_id == files.c.path_id,
            _among(path_tags.c.tag_id, self.on_paths, self.pg),
        )
        return or_(own, via)
