"""Many new versions at once: the catalog side of `Repo.add_tree`.

Adding one file the ordinary way costs about a dozen statements (the row, the upload, each
tag, the publish with its locks and re-reads). A tree of small files would spend most of
its time waiting on those round trips, so a batch of versions whose objects are already
stored and verified is recorded in a fixed handful of statements, whatever its size:
intern the paths and tags, lock the paths (publishing only), expire what they had
current, insert the versions, tag them and, publishing, bring ``current_tags`` in step.
The rules are the ones `Catalog.publish` keeps for a single version: one current version
per path, publish times of a path only move forward, and publishers of a path take turns
on its row lock (taken in path order, so two batches sharing paths cannot deadlock).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Connection, literal, select, update

from ..errors import UsageError
from ..integrity import ETAG
from . import tag_index
from .arrays import IN_BATCH, among, unnest_ids, unnest_optional_ints, unnest_texts
from .base import CatalogBase
from .records import FileRecord
from .schema import file_tags, files, paths
from .translate import translate_errors

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["BulkQueries", "NewVersion"]


@dataclass(frozen=True, slots=True)
class NewVersion:
    """A version whose object is stored and verified, waiting for its catalog row."""

    path: str
    key: str
    md5: str
    size: int
    verified_with: str = ETAG
    #: Permission bits to record (`repo.permissions`), None when unknown.
    mode: int | None = None
    #: The bucket of the store it was uploaded to (`placement`), None for the batch's.
    bucket: str | None = None


class BulkQueries(CatalogBase):
    """Recording batches of uploaded versions."""

    def add_uploaded(
        self,
        versions: Sequence[NewVersion],
        *,
        bucket: str,
        origin: str,
        created_at: datetime,
        uploaded_at: datetime,
        tags: Sequence[str] = (),
        publish: bool = False,
    ) -> tuple[list[FileRecord], list[int]]:
        """Record uploaded `versions` (distinct paths), tagged and optionally published,
        each in its own `NewVersion.bucket` or else in `bucket`.

        Returns the new records, in the order given, and the ids of the versions they
        superseded. Everything happens in the caller's transaction.
        """
        if not versions:
            return [], []
        names = [v.path for v in versions]
        if len(set(names)) != len(names):
            raise UsageError("a batch of new versions names one path twice")
        with translate_errors(f"adding {len(versions)} files"):
            conn = self.db.begin_write()
            path_ids = self._path_ids(conn, names)
            tag_ids = list(self._tag_ids(conn, list(tags), create=True).values())
            state, published_at = "unpublished", None
            superseded: list[int] = []
            if publish:
                published_at, superseded = self._supersede(conn, sorted(path_ids.values()))
                state = "published"
                self._wake_waiters = True
            buckets = [v.bucket or bucket for v in versions]
            same = {
                "state": state,
                "origin": origin,
                "created_at": created_at,
                "uploaded_at": uploaded_at,
                "published_at": published_at,
            }
            if self.db.is_sqlite:
                inserted = conn.execute(
                    files.insert().returning(files.c.file_id, files.c.key),
                    [
                        {
                            "path_id": path_ids[v.path],
                            "key": v.key,
                            "md5": v.md5,
                            "size": v.size,
                            "verified_with": v.verified_with,
                            "mode": v.mode,
                            "bucket": b,
                        }
                        | same
                        for v, b in zip(versions, buckets, strict=True)
                    ],
                ).all()
            else:
                varying = {
                    "path_id": unnest_ids([path_ids[v.path] for v in versions]),
                    "key": unnest_texts([v.key for v in versions]),
                    "md5": unnest_texts([v.md5 for v in versions]),
                    "size": unnest_ids([v.size for v in versions]),
                    "verified_with": unnest_texts([v.verified_with for v in versions]),
                    "mode": unnest_optional_ints([v.mode for v in versions]),
                }
                if len(set(buckets)) == 1:  # one store, the usual case: a constant
                    same["bucket"] = buckets[0]
                else:
                    varying["bucket"] = unnest_texts(buckets)
                constant = {
                    name: literal(value, files.c[name].type) for name, value in same.items()
                }
                columns = {**varying, **constant}
                inserted = conn.execute(
                    files.insert()
                    .from_select(list(columns), select(*columns.values()))
                    .returning(files.c.file_id, files.c.key)
                ).all()
            ids = {key: int(file_id) for file_id, key in inserted}
            if tag_ids:
                pairs = [(f, t) for f in ids.values() for t in tag_ids]
                if self.db.is_sqlite:
                    conn.execute(
                        self._insert(file_tags).on_conflict_do_nothing(),
                        [{"file_id": f, "tag_id": t} for f, t in pairs],
                    )
                else:
                    conn.execute(
                        self._insert(file_tags)
                        .from_select(
                            ["file_id", "tag_id"],
                            select(
                                unnest_ids([f for f, _ in pairs]), unnest_ids([t for _, t in pairs])
                            ),
                        )
                        .on_conflict_do_nothing()
                    )
            if publish:
                tag_index.forget_versions(conn, superseded, not self.db.is_sqlite)
                tag_index.derive(conn, list(ids.values()), not self.db.is_sqlite)
            self._touched_files.update(ids.values())
            self._touched_files.update(superseded)
            records = [
                FileRecord(
                    file_id=ids[v.key],
                    path_id=path_ids[v.path],
                    path=v.path,
                    bucket=b,
                    key=v.key,
                    state=state,
                    md5=v.md5,
                    size=v.size,
                    origin=origin,
                    created_at=created_at,
                    uploaded_at=uploaded_at,
                    published_at=published_at,
                    expired_at=None,
                    verified_with=v.verified_with,
                    mode=v.mode,
                )
                for v, b in zip(versions, buckets, strict=True)
            ]
            return records, superseded

    def _path_ids(self, conn: Connection, names: Sequence[str]) -> dict[str, int]:
        found = self._lookup_paths(conn, names)
        missing = [n for n in names if n not in found]
        if missing and self.db.is_sqlite:
            self._intern(paths, "path", missing)
        elif missing:
            # `_intern`, as one short statement (see `arrays`).
            what = "recording names"
            with translate_errors(what), self.db.side_connection(what) as side:
                side.execute(
                    self._insert(paths)
                    .from_select(["path"], select(unnest_texts(sorted(set(missing)))))
                    .on_conflict_do_nothing()
                )
        if missing:
            found.update(self._lookup_paths(conn, missing))
        return found

    def _lookup_paths(self, conn: Connection, names: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        pg = not self.db.is_sqlite
        step = max(len(names), 1) if pg else IN_BATCH
        for i in range(0, len(names), step):
            chunk = list(names[i : i + step])
            for path_id, path in conn.execute(
                select(paths.c.path_id, paths.c.path).where(among(paths.c.path, chunk, postgres=pg))
            ):
                out[path] = int(path_id)
        return out

    def _supersede(self, conn: Connection, path_ids: Sequence[int]) -> tuple[datetime, list[int]]:
        """Lock `path_ids` (sorted) and expire their current versions; returns the publish
        time for the new ones (later than any publish of those paths) and the ids expired."""
        when = _now()
        superseded: list[int] = []
        pg = not self.db.is_sqlite
        step = max(len(path_ids), 1) if pg else IN_BATCH
        for i in range(0, len(path_ids), step):
            chunk = list(path_ids[i : i + step])
            # FOR NO KEY UPDATE, as in `Catalog.publish`; SQLite has one writer anyway.
            conn.execute(
                select(paths.c.path_id)
                .where(among(paths.c.path_id, chunk, postgres=pg))
                .order_by(paths.c.path_id)
                .with_for_update(key_share=True)
            ).all()
            for file_id, published_at in conn.execute(
                select(files.c.file_id, files.c.published_at)
                .where(among(files.c.path_id, chunk, postgres=pg), files.c.state == "published")
                .with_for_update()
            ):
                superseded.append(int(file_id))
                if published_at is not None and published_at >= when:
                    when = published_at + timedelta(microseconds=1)
        for i in range(0, len(superseded), IN_BATCH):
            conn.execute(
                update(files)
                .where(among(files.c.file_id, superseded[i : i + IN_BATCH], postgres=pg))
                .values(state="expired", expired_at=when)
            )
        return when, superseded


def _now() -> datetime:
    return datetime.now(UTC)
