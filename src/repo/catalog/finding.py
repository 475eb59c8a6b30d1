"""`find`'s queries: which versions carry a set of tags, how many, and in pages.

The answer is ordered by path, then version id, so a page ends at a (path, id) key and
the next starts after it (``after``): pages never overlap or skip a version that did
not change meanwhile, and each is a short read of its own.

Current files come from ``current_tags``, whose key is (tag, path, version): a tag's
versions are listed in the answer's order. The ids come from the rarest `all` tag's
range (or each `any` tag's, minus the versions an earlier one already gave), each row
tested for the other tags against its version's tag set, which it carries: one index
range read in path order, no sort, the paths from the index rather than from
``paths``, and a limited query stops once it has its files. Only the answer's rows are
read from ``files``.
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
    text,
    true,
    tuple_,
    union_all,
)

from .arrays import IN_BATCH, among
from .records import FileRecord, records, select_files
from .schema import current_tags, file_tags, files, path_tags, paths, tag_set_item, tags

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["ANY_BRANCHES", "USES_CAP", "count", "find"]

#: Files counted per tag when choosing the rarest of the `all` tags, whose range is
#: read: enough to tell rare from common (reading a range costs a few times counting
#: it), and cheap for a tag that half the catalog carries.
USES_CAP = 10_000
#: Up to this many `any` tags are read as one range each, merged in path order (a
#: limited query stops early); more are read together and sorted.
ANY_BRANCHES = 8


@dataclass(frozen=True, slots=True)
class _Query:
    """A tag query with its tags resolved to ids (`empty`: no file can match)."""

    all_ids: list[int]
    any_ids: list[int]
    excl_ids: list[int]
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
) -> _Query:
    # Only a choice between `all` tags needs counts.
    counted = all_tags if len(set(all_tags)) > 1 else ()
    known = _tag_stats(conn, [*any_tags, *all_tags, *exclude], counted, pg, published, USES_CAP)
    any_ids = sorted({known[t].tag_id for t in any_tags if t in known})
    all_stats = sorted({known[t] for t in all_tags if t in known}, key=lambda s: (s.uses, s.tag_id))
    capped = [s.tag_id for s in all_stats if s.uses >= USES_CAP]
    if pg and published and len(capped) > 1 and len(capped) == len(all_stats):
        # Every `all` tag is common: PostgreSQL's statistics tell which is least so.
        shares = _common_shares(conn)
        all_stats.sort(key=lambda s: (shares.get(s.tag_id, 0.0), s.tag_id))
    excl_ids = sorted({known[t].tag_id for t in exclude if t in known})
    empty = any(t not in known for t in all_tags) or bool(any_tags and not any_ids)
    return _Query([s.tag_id for s in all_stats], any_ids, excl_ids, known, published, pg, empty)


def _common_shares(conn: Connection) -> dict[int, float]:
    """The share of ``current_tags`` rows of each of its commonest tags, as PostgreSQL's
    statistics estimate it (ANALYZE; none before it ran)."""
    row = conn.execute(
        text(
            "SELECT most_common_vals::text, most_common_freqs FROM pg_stats"
            " WHERE schemaname = current_schema() AND tablename = 'current_tags'"
            " AND attname = 'tag_id'"
        )
    ).first()
    if row is None or row[0] is None:
        return {}
    ids = [int(v) for v in str(row[0]).strip("{}").split(",") if v]
    return dict(zip(ids, map(float, row[1]), strict=False))


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
    q = _resolve(conn, any_tags, all_tags, exclude, published, pg)
    if q.empty or limit == 0:
        return []
    if published and (q.all_ids or q.any_ids):
        return records(conn.execute(_current_files(q, limit, after)).all())
    query = _every_current_file(q) if published else _any_files(q)
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
    q = _resolve(conn, any_tags, all_tags, exclude, published, pg)
    if q.empty:
        return 0
    if published:
        if q.all_ids or q.any_ids:
            which = _current_ids(q, ordered=False)
            if len(q.any_ids) > 1 and not q.all_ids:
                which = which.distinct()  # a file with two of the tags counts once
        else:
            which = select(files.c.file_id).where(files.c.state == "published")
            if q.excl_ids:
                which = which.where(not_(_carried(files.c.file_id, q.excl_ids, pg)))
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


def _current_ids(q: _Query, *, ordered: bool = True) -> Select[Any]:
    """(path, id) of the published files with every tag of `all_ids` (rarest first), one
    of `any_ids` and none of `excl_ids`, from ``current_tags`` alone; `ordered`: each
    file once, the parts of a union each in path order (else a file may come once per
    `any` tag it carries, for a count of distinct ids).

    One index range is read, the starting tag's (or one per `any` tag), and each row
    tested against its version's ``tag_set``, which the index holds too: no other
    tag's rows are read.
    """
    all_ids, any_ids, excl_ids, pg = q.all_ids, q.any_ids, q.excl_ids, q.pg
    start = current_tags.alias("start")

    def having(ids: list[int]) -> ColumnElement[bool]:
        return or_(*(start.c.tag_set.contains(tag_set_item(t)) for t in ids))

    ids: Select[Any] = select(start.c.path, start.c.file_id)
    if all_ids:
        ids = ids.where(start.c.tag_id == all_ids[0], *(having([t]) for t in all_ids[1:]))
        if any_ids:
            ids = ids.where(having(any_ids))
    elif not ordered or len(any_ids) == 1:
        ids = ids.where(_among(start.c.tag_id, any_ids, pg))
    elif len(any_ids) > ANY_BRANCHES:
        ids = ids.where(_among(start.c.tag_id, any_ids, pg)).distinct()
    else:
        # One range per tag, without the files an earlier tag gave: no file twice, and
        # each part in path order.
        parts = []
        for i, tag_id in enumerate(any_ids):
            part = ids.where(start.c.tag_id == tag_id)
            if i:
                part = part.where(not_(having(any_ids[:i])))
            parts.append(part.where(not_(having(excl_ids))) if excl_ids else part)
        return union_all(*parts)  # type: ignore[return-value]
    return ids.where(not_(having(excl_ids))) if excl_ids else ids


def _current_files(q: _Query, limit: int | None, after: tuple[str, int] | None) -> Select[Any]:
    """Up to `limit` published files with the tags, after the key `after`, in order:
    their ids first (from ``current_tags`` only), then only their rows of ``files``."""
    ids = _current_ids(q)
    if after is not None:
        # The first condition lets the index start at the key.
        ids = _after(ids, after)
    key = ids.selected_columns
    ids = ids.order_by(key.path, key.file_id)
    if limit is not None:
        ids = ids.limit(limit)
    elif q.pg:
        # A fence: PostgreSQL would otherwise read versions before it has the ids.
        ids = ids.offset(0)
    found = ids.subquery("found")
    columns = [
        found.c.path if c.name == "path" else c for c in select_files(pg=q.pg).selected_columns
    ]
    return (
        select(*columns)
        .select_from(found.join(files, files.c.file_id == found.c.file_id))
        .order_by(found.c.path, found.c.file_id)
    )


def _after(ids: Any, after: tuple[str, int]) -> Any:
    """`ids` (a select or a union of them, of current_tags's path and file_id) after
    the key `after`, each part with the key's conditions."""
    if not isinstance(ids, Select):
        return union_all(*(_after(part, after) for part in ids.selects))
    path, file_id = ids.selected_columns.path, ids.selected_columns.file_id
    return ids.where(path >= after[0], tuple_(path, file_id) > tuple_(*after))


def _every_current_file(q: _Query) -> Select[Any]:
    """Every published file, but those with a tag of `excl_ids`."""
    query = select_files(pg=q.pg).where(files.c.state == "published")
    if q.excl_ids:
        query = query.where(not_(_carried(files.c.file_id, q.excl_ids, q.pg)))
    return query


def _carried(file_id: Any, tag_ids: list[int], pg: bool) -> ColumnElement[bool]:
    """The published version `file_id` carries one of `tag_ids`."""
    probe = current_tags.alias()
    found = select(literal(1)).where(
        probe.c.file_id == file_id, _among(probe.c.tag_id, tag_ids, pg)
    )
    return found.exists()


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
