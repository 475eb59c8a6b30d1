"""Tag queries: file tags, path tags and `find`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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

from .base import IN_BATCH, CatalogBase
from .connection import translate_errors
from .lists import among
from .records import FileRecord, record, select_files
from .schema import file_tags, files, path_tags, paths, tags

__all__ = ["TagQueries"]


class TagQueries(CatalogBase):
    """Adding, removing and querying tags."""

    def add_tags(self, file_id: int, names: Sequence[str]) -> None:
        with translate_errors(f"tagging file {file_id}"):
            conn = self.db.begin_write()
            self._touched_files.add(file_id)
            ids = self._tag_ids(conn, names, create=True)
            if ids:
                conn.execute(
                    self._insert(file_tags).on_conflict_do_nothing(),
                    [{"file_id": file_id, "tag_id": t} for t in ids.values()],
                )

    def remove_tags(self, file_id: int, names: Sequence[str]) -> None:
        with translate_errors(f"untagging file {file_id}"):
            conn = self.db.begin_write()
            self._touched_files.add(file_id)
            ids = list(self._tag_ids(conn, names, create=False).values())
            if ids:
                conn.execute(
                    delete(file_tags).where(
                        file_tags.c.file_id == file_id, file_tags.c.tag_id.in_(ids)
                    )
                )

    def add_path_tags(self, path_id: int, names: Sequence[str]) -> None:
        with translate_errors("tagging a path"):
            conn = self.db.begin_write()
            self._touched_paths.add(path_id)
            ids = self._tag_ids(conn, names, create=True)
            if ids:
                conn.execute(
                    self._insert(path_tags).on_conflict_do_nothing(),
                    [{"path_id": path_id, "tag_id": t} for t in ids.values()],
                )

    def remove_path_tags(self, path_id: int, names: Sequence[str]) -> None:
        with translate_errors("untagging a path"):
            conn = self.db.begin_write()
            self._touched_paths.add(path_id)
            ids = list(self._tag_ids(conn, names, create=False).values())
            if ids:
                conn.execute(
                    delete(path_tags).where(
                        path_tags.c.path_id == path_id, path_tags.c.tag_id.in_(ids)
                    )
                )

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

        Two statements: the tags (ids, how many files carry each, whether any path
        does), then the files. The files query starts from the rarest `all` tag (or the
        `any` tags together) through the ``(tag_id, file_id)`` index and probes each
        candidate for the other tags, so its cost follows the smallest tag, not the
        catalog. A file also carries its path's tags; that branch is only added for the
        tags some path carries, because ``EXISTS (own) OR EXISTS (path's)`` cannot be
        planned as a join.
        """
        with translate_errors("finding files"):
            conn = self.db.conn
            pg = not self.db.is_sqlite
            # Only a choice between `all` tags needs their counts.
            count = all_tags if len(set(all_tags)) > 1 else ()
            known = _tag_stats(conn, [*any_tags, *all_tags, *exclude], count, pg)
            if any(t not in known for t in all_tags):
                return []
            any_ids = sorted({known[t].tag_id for t in any_tags if t in known})
            if any_tags and not any_ids:
                return []
            all_stats = sorted({known[t] for t in all_tags}, key=lambda s: (s.uses, s.tag_id))
            excl_ids = sorted({known[t].tag_id for t in exclude if t in known})
            on_paths = {s.tag_id for s in known.values() if s.on_paths}

            def split(ids: Sequence[int]) -> _TagSet:
                return _TagSet(list(ids), [t for t in ids if t in on_paths], pg)

            conds: list[ColumnElement[bool]] = []
            if published:
                conds.append(files.c.state == "published")
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
            query = (
                select_files().where(and_(true(), *conds)).order_by(paths.c.path, files.c.file_id)
            )
            return [record(r) for r in conn.execute(query)]


#: Files counted per tag when choosing the rarest of the `all` tags: enough to tell rare
#: from common, and cheap for a tag that half the catalog carries.
USES_CAP = 1000


@dataclass(frozen=True, slots=True)
class _TagStats:
    tag_id: int
    #: Only for the tags asked to count: files carrying it (on themselves, then via their
    #: path), each up to `USES_CAP`; else 0.
    uses: int
    on_paths: bool


def _tag_stats(
    conn: Connection, names: Sequence[str], count: Sequence[str], pg: bool
) -> dict[str, _TagStats]:
    """Known tags among `names`: their ids, and what `find` needs to plan its query."""
    on_paths = exists().where(path_tags.c.tag_id == tags.c.tag_id)
    uses: ColumnElement[Any] = literal(0)
    if count:
        own = select(file_tags.c.file_id).where(file_tags.c.tag_id == tags.c.tag_id)
        via = (
            select(files.c.file_id)
            .join(path_tags, path_tags.c.path_id == files.c.path_id)
            .where(path_tags.c.tag_id == tags.c.tag_id)
        )
        # A CASE, so that only these tags are counted (the others' subqueries never run).
        uses = case(
            (
                among(tags.c.name, sorted(set(count)), postgres=pg),
                _capped_count(own) + _capped_count(via),
            ),
            else_=0,
        )
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
    """Tag ids, and those of them some path carries."""

    ids: list[int]
    on_paths: list[int]
    pg: bool

    def _is(self, column: Any, ids: list[int]) -> ColumnElement[bool]:
        return column == ids[0] if len(ids) == 1 else among(column, ids, postgres=self.pg)

    def carriers(self) -> Select[Any]:
        """The ids of the files carrying one of the tags, themselves or by their path."""
        own = select(file_tags.c.file_id).where(self._is(file_tags.c.tag_id, self.ids))
        if not self.on_paths:
            return own
        other = files.alias("tagged_path_files")
        via = (
            select(other.c.file_id)
            .join(path_tags, path_tags.c.path_id == other.c.path_id)
            .where(self._is(path_tags.c.tag_id, self.on_paths))
        )
        return union_all(own, via)  # type: ignore[return-value]

    def carried(self) -> ColumnElement[bool]:
        """The file (of the outer query) carries one of the tags."""
        own = exists().where(
            file_tags.c.file_id == files.c.file_id, self._is(file_tags.c.tag_id, self.ids)
        )
        if not self.on_paths:
            return own
        via = exists().where(
            path_tags.c.path_id == files.c.path_id, self._is(path_tags.c.tag_id, self.on_paths)
        )
        return or_(own, via)
