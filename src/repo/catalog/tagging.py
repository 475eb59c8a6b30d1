"""Tag queries: file tags, path tags and `find`."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, and_, delete, exists, not_, or_, select, true, union_all

from .base import IN_BATCH, CatalogBase
from .connection import translate_errors
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
        """Files with every `all_tags`, at least one of `any_tags` and none of `exclude`."""
        with translate_errors("finding files"):
            conn = self.db.conn
            known = self._tag_ids(conn, [*any_tags, *all_tags, *exclude], create=False)
            if any(t not in known for t in all_tags):
                return []
            any_ids = [known[t] for t in any_tags if t in known]
            if any_tags and not any_ids:
                return []
            conds: list[ColumnElement[bool]] = []
            if published:
                conds.append(files.c.state == "published")
            for name in all_tags:
                conds.append(_has_tag([known[name]]))
            if any_ids:
                conds.append(_has_tag(any_ids))
            excl_ids = [known[t] for t in exclude if t in known]
            if excl_ids:
                conds.append(not_(_has_tag(excl_ids)))
            query = (
                select_files().where(and_(true(), *conds)).order_by(paths.c.path, files.c.file_id)
            )
            return [record(r) for r in conn.execute(query)]


def _has_tag(tag_ids: list[int]) -> ColumnElement[bool]:
    """The file carries one of these tags, on itself or on its path."""
    own = exists().where(file_tags.c.file_id == files.c.file_id, file_tags.c.tag_id.in_(tag_ids))
    via_path = exists().where(
        path_tags.c.path_id == files.c.path_id, path_tags.c.tag_id.in_(tag_ids)
    )
    return or_(own, via_path)
