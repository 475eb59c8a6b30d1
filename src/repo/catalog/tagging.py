"""Tag queries: file tags, path tags and `find`."""

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
    delete,
    exists,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    union_all,
)

from . import tag_index
from .arrays import IN_BATCH, among
from .base import CatalogBase
from .records import FileRecord, record, select_files
from .schema import current_tags, file_tags, files, path_tags, paths, tags
from .translate import translate_errors

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["TagQueries"]


class TagQueries(CatalogBase):
    """Adding, removing and querying tags."""

    # Every write below takes the path's row lock first, as publishing does: see
    # `tag_index` (the current versions' tags must not drift from their truth).

    def add_tags(self, file_id: int, names: Sequence[str]) -> None:
        with translate_errors(f"tagging file {file_id}"):
            conn = self.db.begin_write()
            self._touched_files.add(file_id)
            ids = list(self._tag_ids(conn, names, create=True).values())
            if ids:
                tag_index.lock_path(conn, file_id=file_id)
                conn.execute(
                    self._insert(file_tags).on_conflict_do_nothing(),
                    [{"file_id": file_id, "tag_id": t} for t in ids],
                )
                tag_index.add_rows(conn, files.c.file_id == file_id, ids, self._pg)

    def remove_tags(self, file_id: int, names: Sequence[str]) -> None:
        with translate_errors(f"untagging file {file_id}"):
            conn = self.db.begin_write()
            self._touched_files.add(file_id)
            ids = list(self._tag_ids(conn, names, create=False).values())
            if ids:
                tag_index.lock_path(conn, file_id=file_id)
                conn.execute(
                    delete(file_tags).where(
                        file_tags.c.file_id == file_id, file_tags.c.tag_id.in_(ids)
                    )
                )
                tag_index.drop_rows(conn, files.c.file_id == file_id, ids, self._pg)

    def add_path_tags(self, path_id: int, names: Sequence[str]) -> None:
        with translate_errors("tagging a path"):
            conn = self.db.begin_write()
            self._touched_paths.add(path_id)
            ids = list(self._tag_ids(conn, names, create=True).values())
            if ids:
                tag_index.lock_path(conn, path_id=path_id)
                conn.execute(
                    self._insert(path_tags).on_conflict_do_nothing(),
                    [{"path_id": path_id, "tag_id": t} for t in ids],
                )
                tag_index.add_rows(conn, files.c.path_id == path_id, ids, self._pg)

    def remove_path_tags(self, path_id: int, names: Sequence[str]) -> None:
        with translate_errors("untagging a path"):
            conn = self.db.begin_write()
            self._touched_paths.add(path_id)
            ids = list(self._tag_ids(conn, names, create=False).values())
            if ids:
                tag_index.lock_path(conn, path_id=path_id)
                conn.execute(
                    delete(path_tags).where(
                        path_tags.c.path_id == path_id, path_tags.c.tag_id.in_(ids)
                    )
                )
                tag_index.drop_rows(conn, files.c.path_id == path_id, ids, self._pg)

    @property
    def _pg(self) -> bool:
        return not self.db.is_sqlite

    def tags_of(self, file_id: int) -> tuple[list[str], list[str]]:
        """(file tags, path tags) of a file, each sorted."""
        with translate_errors(f"reading tags of file {file_id}"):
            conn = self.db.conn
            own = conn.execute(
                select(tags.c.name)
                .join(file_tags, file_tags.c.tag_id == tags.c.tag_id)
                .where(file_tags.c.file_id == file_id)
                .order_by(tags.c.name)
            ).scalars()
            via_path = conn.execute(
                select(tags.c.name)
                .join(path_tags, path_tags.c.tag_id == tags.c.tag_id)
                .join(files, files.c.path_id == path_tags.c.path_id)
                .where(files.c.file_id == file_id)
                .order_by(tags.c.name)
            ).scalars()
            return list(own), list(via_path)

    def tags_of_many(self, file_ids: Sequence[int]) -> dict[int, list[str]]:
        """Every tag (own and via the path) of each file, sorted; one query per batch."""
        out: dict[int, set[str]] = {f: set() for f in file_ids}
        ids = list(out)
        with translate_errors("reading tags"):
            conn = self.db.conn
            for i in range(0, len(ids), IN_BATCH):
                chunk = ids[i : i + IN_BATCH]
                own = (
                    select(file_tags.c.file_id, tags.c.name)
                    .join(tags, tags.c.tag_id == file_tags.c.tag_id)
                    .where(file_tags.c.file_id.in_(chunk))
                )
                via_path = (
                    select(files.c.file_id, tags.c.name)
                    .join(path_tags, path_tags.c.path_id == files.c.path_id)
                    .join(tags, tags.c.tag_id == path_tags.c.tag_id)
                    .where(files.c.file_id.in_(chunk))
                )
                for file_id, name in conn.execute(union_all(own, via_path)):
                    out[file_id].add(name)
        return {f: sorted(names) for f, names in out.items()}

    def find(
        self,
        *,
        any_tags: Sequence[str] = (),
        all_tags: Sequence[str] = (),
        exclude: Sequence[str] = (),
        published: bool = True,
    ) -> list[FileRecord]:
        """Files with every `all_tags`, at least one of `any_tags` and none of `exclude`.

        Two statements: the tags (ids, how many files carry each), then the files. The
        files query starts from the rarest `all` tag (or the `any` tags together)
        through a ``(tag_id, file_id)`` index and probes each candidate for the other
        tags, so its cost follows the smallest tag, not the catalog.

        Current files (`published`) come from ``current_tags`` (see `tag_index`), which
        holds the tags of published versions only, their paths' included. Versions in
        every state come from ``file_tags`` and ``path_tags``; the path branch is only
        added for the tags some path carries, because ``EXISTS (own) OR EXISTS
        (path's)`` cannot be planned as a join.
        """
        with translate_errors("finding files"):
            conn = self.db.conn
            pg = not self.db.is_sqlite
            # Only a choice between `all` tags needs their counts.
            count = all_tags if len(set(all_tags)) > 1 else ()
            known = _tag_stats(conn, [*any_tags, *all_tags, *exclude], count, pg, published)
            if any(t not in known for t in all_tags):
                return []
            any_ids = sorted({known[t].tag_id for t in any_tags if t in known})
            if any_tags and not any_ids:
                return []
            all_stats = sorted({known[t] for t in all_tags}, key=lambda s: (s.uses, s.tag_id))
            excl_ids = sorted({known[t].tag_id for t in exclude if t in known})
            if published:
                query = _current_files([s.tag_id for s in all_stats], any_ids, excl_ids, pg)
            else:
                query = _any_files(known, all_stats, any_ids, excl_ids, pg)
            query = query.order_by(paths.c.path, files.c.file_id)
            return [record(r) for r in conn.execute(query).all()]


def _current_files(
    all_ids: list[int], any_ids: list[int], excl_ids: list[int], pg: bool
) -> Select[Any]:
    """Published files with every tag of `all_ids` (rarest first), one of `any_ids` and
    none of `excl_ids`, from ``current_tags``.

    The tags decide on ``current_tags`` alone, every probe keyed by the starting row's
    file id, so PostgreSQL may join the tags' index ranges (each sorted by file id)
    before it reads a single version row; only the answer's rows are read from
    ``files`` and ``paths``.
    """
    if not all_ids and not any_ids:
        query = select_files().where(files.c.state == "published")
        if excl_ids:
            query = query.where(not_(_carried(files.c.file_id, excl_ids, pg)))
        return query
    start = current_tags.alias("start")
    if all_ids:
        ids = select(start.c.file_id).where(start.c.tag_id == all_ids[0])
        for tag_id in all_ids[1:]:
            ids = ids.where(_carried(start.c.file_id, [tag_id], pg))
        if any_ids:
            ids = ids.where(_carried(start.c.file_id, any_ids, pg))
    else:
        ids = select(start.c.file_id).where(_among(start.c.tag_id, any_ids, pg))
    if excl_ids:
        ids = ids.where(not_(_carried(start.c.file_id, excl_ids, pg)))
    return select_files().where(files.c.file_id.in_(ids))


def _carried(file_id: Any, tag_ids: list[int], pg: bool) -> ColumnElement[bool]:
    """The published version `file_id` carries one of `tag_ids`."""
    probe = current_tags.alias()
    return exists().where(probe.c.file_id == file_id, _among(probe.c.tag_id, tag_ids, pg))


def _among(column: Any, ids: list[int], pg: bool) -> ColumnElement[bool]:
    return column == ids[0] if len(ids) == 1 else among(column, ids, postgres=pg)


def _any_files(
    known: dict[str, _TagStats],
    all_stats: list[_TagStats],
    any_ids: list[int],
    excl_ids: list[int],
    pg: bool,
) -> Select[Any]:
    """Versions in every state with the tags, from ``file_tags`` and ``path_tags``."""
    on_paths = {s.tag_id for s in known.values() if s.on_paths}

    def split(ids: Sequence[int]) -> _TagSet:
        return _TagSet(list(ids), [t for t in ids if t in on_paths], pg)

    conds: list[ColumnElement[bool]] = []
    if all_stats:
        # Start from the rarest tag; the others are probes per candidate.
        conds.append(files.c.file_id.in_(split([all_stats[0].tag_id]).carriers()))
        conds.extend(split([s.tag_id]).carried() for s in all_stats[1:])
        if any_ids:
            conds.append(split(any_ids).carried())
    elif any_ids:
        conds.append(files.c.file_id.in_(split(any_ids).carriers()))
    if excl_ids:
        conds.append(not_(split(excl_ids).carried()))
    return select_files().where(and_(true(), *conds))


#: Files counted per tag when choosing the rarest of the `all` tags: enough to tell rare
#: from common, and cheap for a tag that half the catalog carries.
USES_CAP = 1000


@dataclass(frozen=True, slots=True)
class _TagStats:
    tag_id: int
    #: Only for the tags asked to count: files carrying it, up to `USES_CAP` (versions in
    #: every state: on themselves, then via their path, each up to the cap); else 0.
    uses: int
    on_paths: bool


def _tag_stats(
    conn: Connection, names: Sequence[str], count: Sequence[str], pg: bool, current: bool
) -> dict[str, _TagStats]:
    """Known tags among `names`: their ids, and what `find` needs to plan its query
    (of current files only, or of versions in every state)."""
    on_paths: ColumnElement[Any] = literal(False)
    uses: ColumnElement[Any] = literal(0)
    if current and count:
        live = select(current_tags.c.file_id).where(current_tags.c.tag_id == tags.c.tag_id)
        uses = _capped_count(live)
    elif count:
        own = select(file_tags.c.file_id).where(file_tags.c.tag_id == tags.c.tag_id)
        via = (
            select(files.c.file_id)
            .join(path_tags, path_tags.c.path_id == files.c.path_id)
            .where(path_tags.c.tag_id == tags.c.tag_id)
        )
        uses = _capped_count(own) + _capped_count(via)
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


def _capped_count(rows: Select[Any]) -> ScalarSelect[Any]:
    capped = rows.limit(USES_CAP).correlate(tags).subquery()
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
