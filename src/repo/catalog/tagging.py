"""Tag queries: file tags, path tags and `find`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import (
    delete,
    select,
    union_all,
)

from . import finding, tag_index
from .arrays import IN_BATCH
from .base import CatalogBase
from .schema import file_tags, files, path_tags, tags
from .translate import translate_errors

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .records import FileRecord

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
                self._wake_waiters = True
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
                self._wake_waiters = True
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
                self._wake_waiters = True
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
                self._wake_waiters = True
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
        limit: int | None = None,
        after: tuple[str, int] | None = None,
    ) -> list[FileRecord]:
        """Files with every `all_tags`, at least one of `any_tags` and none of `exclude`,
        by path then id: up to `limit` of them, after the (path, id) key `after`.

        Current files (`published`) come from ``current_tags`` (see `tag_index`), which
        holds the tags of published versions only, their paths' included; versions in
        every state from ``file_tags`` and ``path_tags``. The plans: see `finding`.
        """
        with translate_errors("finding files"):
            return finding.find(
                self.db.conn,
                any_tags=any_tags,
                all_tags=all_tags,
                exclude=exclude,
                published=published,
                pg=self._pg,
                limit=limit,
                after=after,
            )

    def count_found(
        self,
        *,
        any_tags: Sequence[str] = (),
        all_tags: Sequence[str] = (),
        exclude: Sequence[str] = (),
        published: bool = True,
    ) -> int:
        """How many files `find` would return, counted in the catalog."""
        with translate_errors("counting files"):
            return finding.count(
                self.db.conn,
                any_tags=any_tags,
                all_tags=all_tags,
                exclude=exclude,
                published=published,
                pg=self._pg,
            )
