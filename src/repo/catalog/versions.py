"""Versions of files and their states: adding, reading, uploading, publishing, expiring.

A version is a row of ``files`` (its path a row of ``paths``): unpublished, published
(its path's current version) or expired. Versions are also found here by object key.
"""

from __future__ import annotations

import fnmatch
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Connection, bindparam, func, select, update

from ..errors import NotFoundError, StateError
from . import tag_index
from .arrays import IN_BATCH, among
from .base import CatalogBase
from .records import FileRecord, record, select_files
from .schema import files, paths
from .translate import translate_errors

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["VersionQueries"]


class VersionQueries(CatalogBase):
    """Adding versions, reading them and moving them through their states."""

    # -- versions ------------------------------------------------------------------------

    def add_file(
        self, *, path: str, bucket: str, key: str, origin: str, created_at: datetime
    ) -> FileRecord:
        with translate_errors(f"adding {path!r}"):
            conn = self.db.begin_write()
            path_id = self._path_id(conn, path, create=True)
            file_id = conn.execute(
                files.insert()
                .values(
                    path_id=path_id,
                    bucket=bucket,
                    key=key,
                    state="unpublished",
                    origin=origin,
                    created_at=created_at,
                )
                .returning(files.c.file_id)
            ).scalar_one()
            self._touched_files.add(file_id)
            return self.get(file_id)

    def get(self, file_id: int) -> FileRecord:
        with translate_errors(f"reading file {file_id}"):
            row = self.db.conn.execute(
                select_files().where(files.c.file_id == file_id)
            ).one_or_none()
        if row is None:
            raise NotFoundError(
                f"no file with id {file_id}", hint="see the IDs with `repo list --state all`"
            )
        return record(row)

    def _get_or_purged(self, file_id: int) -> FileRecord:
        """`get`, for a version the caller holds: gone can only mean purged."""
        try:
            return self.get(file_id)
        except NotFoundError:
            raise StateError(
                f"file {file_id} no longer exists: garbage collection purged it",
                hint="add a new version of the path; unpublished versions are purged after "
                "'unpublished_ttl_seconds'",
            ) from None

    def current(self, path: str) -> FileRecord | None:
        with translate_errors(f"reading {path!r}"):
            row = self.db.conn.execute(_CURRENT, {"path": path}).one_or_none()
        return record(row) if row is not None else None

    def history(self, path: str) -> list[FileRecord]:
        with translate_errors(f"reading the history of {path!r}"):
            rows = self.db.conn.execute(
                select_files()
                .where(paths.c.path == path)
                .order_by(files.c.created_at.desc(), files.c.file_id.desc())
            )
            return [record(r) for r in rows]

    def list_current(
        self, pattern: str, *, states: Sequence[str] = ("published",)
    ) -> list[FileRecord]:
        """Files whose path matches the glob `pattern` (``*`` also matches ``/``)."""
        like = _glob_to_like(pattern)
        query = select_files().where(files.c.state.in_(list(states)))
        if like != "%":
            query = query.where(paths.c.path.like(like, escape="\\"))
        with translate_errors(f"listing {pattern!r}"):
            rows = self.db.conn.execute(query.order_by(paths.c.path, files.c.file_id))
            # LIKE narrows (it may be case-insensitive on SQLite); fnmatchcase decides.
            return [record(r) for r in rows if fnmatch.fnmatchcase(r.path, pattern)]

    def mark_uploaded(
        self,
        file_id: int,
        *,
        md5: str,
        size: int,
        when: datetime,
        verified_with: str,
        mode: int | None = None,
    ) -> FileRecord:
        with translate_errors(f"recording the upload of file {file_id}"):
            conn = self.db.begin_write()
            result = conn.execute(
                update(files)
                .where(files.c.file_id == file_id, files.c.md5.is_(None))
                .values(
                    md5=md5, size=size, uploaded_at=when, verified_with=verified_with, mode=mode
                )
            )
            rec = self.get(file_id)
            self._touched_files.add(file_id)
            if result.rowcount == 0 and (rec.md5 != md5 or rec.size != size):
                raise StateError(f"file {file_id} was already uploaded with other content")
            return rec

    def rekey(self, file_id: int, *, old_key: str, new_key: str) -> FileRecord:
        """Move a version that is not uploaded yet to a fresh object key."""
        with translate_errors(f"moving file {file_id} to a new key"):
            conn = self.db.begin_write()
            result = conn.execute(
                update(files)
                .where(files.c.file_id == file_id, files.c.key == old_key, files.c.md5.is_(None))
                .values(key=new_key)
            )
            if result.rowcount != 1:
                raise StateError(f"file {file_id} is uploaded already or was changed meanwhile")
            self._touched_files.add(file_id)
            return self.get(file_id)

    def publish(self, file_id: int, *, when: datetime) -> tuple[FileRecord, list[int]]:
        """Make `file_id` the current version of its path; returns it and the ids expired.

        The path's row is locked first, so concurrent publishers of one path take turns;
        each then expires whatever is current when it gets the lock.
        """
        with translate_errors(f"publishing file {file_id}"):
            conn = self.db.begin_write()
            rec = self._get_or_purged(file_id)
            self._lock_path(conn, rec.path_id)
            # Then the version's own row, before anything changes: a GC claim in flight
            # finishes first (and is seen below), or GC passes over the row (SKIP LOCKED).
            conn.execute(
                select(files.c.file_id).where(files.c.file_id == file_id).with_for_update()
            ).scalar()
            rec = self._get_or_purged(file_id)  # re-read under the locks
            if rec.state == "published":
                return rec, []
            if rec.state == "expired":
                raise StateError(
                    f"file {file_id} ({rec.path}) is expired and cannot be published again",
                    hint="add a new version of the path instead",
                )
            if rec.md5 is None or rec.size is None:
                raise StateError(f"file {file_id} must be uploaded before it is published")
            if rec.purge_started_at is not None:
                raise _purged(rec)
            current = conn.execute(
                select(files.c.file_id, files.c.published_at).where(
                    files.c.path_id == rec.path_id, files.c.state == "published"
                )
            ).all()
            superseded = [row[0] for row in current]
            # Publish times of one path only move forward, whatever the hosts' clocks say,
            # so "newest published" always means "published last".
            for row in current:
                if row[1] is not None and row[1] >= when:
                    when = row[1] + timedelta(microseconds=1)
            if superseded:
                conn.execute(
                    update(files)
                    .where(files.c.file_id.in_(superseded))
                    .values(state="expired", expired_at=when)
                )
            # Conditional: garbage collection claims versions with a conditional update
            # of its own, and exactly one of the two can match the row.
            result = conn.execute(
                update(files)
                .where(
                    files.c.file_id == file_id,
                    files.c.state == "unpublished",
                    files.c.purge_started_at.is_(None),
                )
                .values(state="published", published_at=when)
            )
            if result.rowcount != 1:
                raise _purged(self.get(file_id))
            pg = not self.db.is_sqlite
            tag_index.forget_versions(conn, superseded, pg)
            tag_index.derive(conn, [file_id], pg)
            self._touched_files.update([file_id, *superseded])
            self._wake_waiters = True
            return self.get(file_id), superseded

    def expire(self, file_id: int, *, when: datetime) -> FileRecord:
        with translate_errors(f"expiring file {file_id}"):
            conn = self.db.begin_write()
            rec = self._get_or_purged(file_id)
            # The path's row first, as `publish` does: expiring a path's current version
            # and publishing its successor in one transaction then takes its locks in the
            # same order as a concurrent publisher of that path, which waits its turn
            # instead of deadlocking.
            self._lock_path(conn, rec.path_id)
            conn.execute(
                update(files)
                .where(
                    files.c.file_id == file_id,
                    files.c.state != "expired",
                    files.c.purge_started_at.is_(None),
                )
                .values(state="expired", expired_at=when)
            )
            tag_index.forget_versions(conn, [file_id], not self.db.is_sqlite)
            self._touched_files.add(file_id)
            return self._get_or_purged(file_id)

    def expire_many(self, file_ids: Sequence[int], *, when: datetime) -> list[FileRecord]:
        """`expire` for many versions, a statement per batch rather than per version;
        returns those it expired (not those expired already or claimed by GC), by id.

        Every path concerned is locked first, in path order: two sessions that lock
        several paths (this, a batch publish) take them in one order and never deadlock.
        """
        ids = sorted(set(file_ids))
        pg = not self.db.is_sqlite
        step = max(len(ids), 1) if pg else IN_BATCH
        done: list[int] = []
        with translate_errors(f"expiring {len(ids)} files"):
            conn = self.db.begin_write()
            path_ids: set[int] = set()
            for i in range(0, len(ids), step):
                chunk = ids[i : i + step]
                path_ids.update(
                    conn.execute(
                        select(files.c.path_id).where(among(files.c.file_id, chunk, postgres=pg))
                    ).scalars()
                )
            ordered = sorted(path_ids)
            for i in range(0, len(ordered), step):
                conn.execute(
                    select(paths.c.path_id)
                    .where(among(paths.c.path_id, ordered[i : i + step], postgres=pg))
                    .order_by(paths.c.path_id)
                    .with_for_update(key_share=True)
                ).all()
            for i in range(0, len(ids), step):
                done += conn.execute(
                    update(files)
                    .where(
                        among(files.c.file_id, ids[i : i + step], postgres=pg),
                        files.c.state != "expired",
                        files.c.purge_started_at.is_(None),
                    )
                    .values(state="expired", expired_at=when)
                    .returning(files.c.file_id)
                ).scalars()
            done.sort()
            tag_index.forget_versions(conn, done, pg)
            self._touched_files.update(done)
            records: list[FileRecord] = []
            for i in range(0, len(done), step):
                rows = conn.execute(
                    select_files()
                    .where(among(files.c.file_id, done[i : i + step], postgres=pg))
                    .order_by(files.c.file_id)
                )
                records += [record(r) for r in rows]
            return records

    def _lock_path(self, conn: Connection, path_id: int) -> None:
        """FOR NO KEY UPDATE on the path's row: publishers of a path take turns, but
        sessions adding new versions of it (whose foreign key takes a KEY SHARE lock) are
        not waited for. (SQLite has one writer: nothing to lock.)"""
        conn.execute(
            select(paths.c.path_id)
            .where(paths.c.path_id == path_id)
            .with_for_update(key_share=True)
        ).scalar_one()

    def counts(self) -> dict[str, tuple[int, int]]:
        """Files and bytes per state."""
        with translate_errors("counting files"):
            rows = self.db.conn.execute(
                select(
                    files.c.state, func.count(), func.coalesce(func.sum(files.c.size), 0)
                ).group_by(files.c.state)
            )
            return {r[0]: (int(r[1]), int(r[2])) for r in rows}

    # -- by object key -------------------------------------------------------------------

    def known_keys(self, keys: Sequence[str]) -> set[str]:
        """Which of these object keys a version (in any state) refers to."""
        found: set[str] = set()
        with translate_errors("looking up object keys"):
            for i in range(0, len(keys), IN_BATCH):
                chunk = list(keys[i : i + IN_BATCH])
                found.update(
                    self.db.conn.execute(
                        select(files.c.key).where(
                            among(files.c.key, chunk, postgres=not self.db.is_sqlite)
                        )
                    ).scalars()
                )
        return found

    def files_by_key(self, keys: Sequence[str]) -> dict[str, FileRecord]:
        out: dict[str, FileRecord] = {}
        with translate_errors("looking up object keys"):
            for i in range(0, len(keys), IN_BATCH):
                chunk = list(keys[i : i + IN_BATCH])
                query = select_files().where(
                    among(files.c.key, chunk, postgres=not self.db.is_sqlite)
                )
                for row in self.db.conn.execute(query):
                    rec = record(row)
                    out[rec.key] = rec
        return out


# The cache-hit path (`Repo.get_file`) runs this once per read: built once, so each call
# only binds the path (the statement is compiled once and prepared by the driver).
_CURRENT = select_files().where(paths.c.path == bindparam("path"), files.c.state == "published")


def _purged(rec: FileRecord) -> StateError:
    return StateError(
        f"file {rec.file_id} ({rec.path}) was claimed by garbage collection and cannot be "
        "published",
        hint="add a new version of the path; unpublished versions are purged after "
        "'unpublished_ttl_seconds'",
    )


def _glob_to_like(pattern: str) -> str:
    """A LIKE pattern matching at least every path the glob matches."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        elif ch == "[":
            # As fnmatch: a ']' first in the set (after an optional '!') is a member.
            start = i + 1
            if pattern[start : start + 1] == "!":
                start += 1
            end = pattern.find("]", start + 1)
            if end == -1:
                out.append("[")
            else:
                out.append("_")
                i = end
        elif ch in "%_\\":
            out.append("\\" + ch)
        else:
            out.append(ch)
        i += 1
    like = "".join(out)
    while "%%" in like:
        like = like.replace("%%", "%")
    return like
