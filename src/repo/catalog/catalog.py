"""Every query the library runs. Nothing outside this package writes SQL.

All statements are SQLAlchemy Core constructs, so every value is a bound parameter.
Operations on many rows use one statement (or one executemany) per batch.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    delete,
    exists,
    func,
    not_,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from ..errors import NotFoundError, StateError
from . import migrations
from .connection import Database, translate_errors
from .schema import (
    SCHEMA_VERSION,
    file_hosts,
    file_tags,
    files,
    hosts,
    path_tags,
    paths,
    repo_meta,
    tags,
)

__all__ = ["Catalog", "FileRecord", "HostCopy"]

_IN_BATCH = 500


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One row of ``files`` joined with its path."""

    file_id: int
    path_id: int
    path: str
    bucket: str
    key: str
    state: str
    md5: str | None
    size: int | None
    origin: str
    created_at: datetime
    uploaded_at: datetime | None
    published_at: datetime | None
    expired_at: datetime | None


@dataclass(frozen=True, slots=True)
class HostCopy:
    """A host that holds a verified copy of a file."""

    host: str
    downloaded_at: datetime
    last_access: datetime


_FILE_COLUMNS = (
    files.c.file_id,
    files.c.path_id,
    paths.c.path,
    files.c.bucket,
    files.c.key,
    files.c.state,
    files.c.md5,
    files.c.size,
    files.c.origin,
    files.c.created_at,
    files.c.uploaded_at,
    files.c.published_at,
    files.c.expired_at,
)


def _select_files() -> Select[Any]:
    return select(*_FILE_COLUMNS).select_from(files.join(paths, files.c.path_id == paths.c.path_id))


def _record(row: Any) -> FileRecord:
    return FileRecord(**row._mapping)


class Catalog:
    """The catalog of one repository: files, paths, tags and hosts."""

    def __init__(self, url: str) -> None:
        self.db = Database(url)

    # -- lifecycle -----------------------------------------------------------------------

    def ensure_schema(self) -> int:
        """Create the schema in an empty database, or bring an older one up to date."""
        with translate_errors("preparing the catalog"):
            conn = self.db.conn
            version = migrations.current_version(conn)
            if version is not None and version == SCHEMA_VERSION:
                self.db.rollback()
                return version
            self.db.rollback()
            conn = self.db.begin_write()
            self.db.lock_schema(conn)
            version = migrations.upgrade(conn)
            self.db.commit()
            return version

    def repository_id(self) -> str:
        with translate_errors("reading the catalog"):
            value = self.db.conn.execute(
                select(repo_meta.c.value).where(repo_meta.c.name == "repository_id")
            ).scalar_one()
            return str(value)

    def commit(self) -> None:
        self.db.commit()

    def rollback(self) -> None:
        self.db.rollback()

    def close(self) -> None:
        self.db.close()

    # -- dialect helpers -----------------------------------------------------------------

    def _insert(self, table: Any) -> Any:
        if self.db.is_sqlite:
            return sqlite_dialect.insert(table)
        return pg_dialect.insert(table)

    # Paths and tags are interned in short transactions of their own. Created inside the
    # user's transaction, a new name (say today's date tag) would hold a lock on its
    # unique index entry until that transaction ends, and every other host using the
    # same new name would queue behind it. An interned name nobody uses is harmless.

    def _intern(self, table: Any, column: str, names: Sequence[str]) -> None:
        with translate_errors("recording names"), self.db.side_connection() as side:
            # Sorted, so that concurrent interning takes index locks in one order.
            side.execute(
                self._insert(table).on_conflict_do_nothing(),
                [{column: n} for n in sorted(set(names))],
            )

    def _path_id(self, conn: Connection, path: str, *, create: bool) -> int | None:
        query = select(paths.c.path_id).where(paths.c.path == path)
        found = conn.execute(query).scalar()
        if found is not None or not create:
            return None if found is None else int(found)
        self._intern(paths, "path", [path])
        return int(conn.execute(query).scalar_one())

    def _tag_ids(self, conn: Connection, names: Sequence[str], *, create: bool) -> dict[str, int]:
        out = self._lookup_tags(conn, names)
        missing = [n for n in names if n not in out]
        if create and missing:
            self._intern(tags, "name", missing)
            out.update(self._lookup_tags(conn, missing))
        return out

    def _lookup_tags(self, conn: Connection, names: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in range(0, len(names), _IN_BATCH):
            chunk = list(names[i : i + _IN_BATCH])
            for tag_id, name in conn.execute(
                select(tags.c.tag_id, tags.c.name).where(tags.c.name.in_(chunk))
            ):
                out[name] = tag_id
        return out

    # -- files ---------------------------------------------------------------------------

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
            return self.get(file_id)

    def get(self, file_id: int) -> FileRecord:
        with translate_errors(f"reading file {file_id}"):
            row = self.db.conn.execute(
                _select_files().where(files.c.file_id == file_id)
            ).one_or_none()
        if row is None:
            raise NotFoundError(f"no file with id {file_id}")
        return _record(row)

    def get_many(self, file_ids: Sequence[int]) -> list[FileRecord]:
        out: list[FileRecord] = []
        with translate_errors("reading files"):
            for i in range(0, len(file_ids), _IN_BATCH):
                chunk = list(file_ids[i : i + _IN_BATCH])
                rows = self.db.conn.execute(_select_files().where(files.c.file_id.in_(chunk)))
                out.extend(_record(r) for r in rows)
        return out

    def by_key(self, key: str) -> FileRecord | None:
        with translate_errors("reading the catalog"):
            row = self.db.conn.execute(_select_files().where(files.c.key == key)).one_or_none()
        return _record(row) if row is not None else None

    def current(self, path: str) -> FileRecord | None:
        with translate_errors(f"reading {path!r}"):
            row = self.db.conn.execute(
                _select_files().where(paths.c.path == path, files.c.state == "published")
            ).one_or_none()
        return _record(row) if row is not None else None

    def newest(self, path: str) -> FileRecord | None:
        with translate_errors(f"reading {path!r}"):
            row = self.db.conn.execute(
                _select_files()
                .where(paths.c.path == path)
                .order_by(files.c.created_at.desc(), files.c.file_id.desc())
                .limit(1)
            ).one_or_none()
        return _record(row) if row is not None else None

    def history(self, path: str) -> list[FileRecord]:
        with translate_errors(f"reading the history of {path!r}"):
            rows = self.db.conn.execute(
                _select_files()
                .where(paths.c.path == path)
                .order_by(files.c.created_at.desc(), files.c.file_id.desc())
            )
            return [_record(r) for r in rows]

    def list_current(
        self, pattern: str, *, states: Sequence[str] = ("published",)
    ) -> list[FileRecord]:
        """Files whose path matches the glob `pattern` (``*`` also matches ``/``)."""
        like = _glob_to_like(pattern)
        query = _select_files().where(files.c.state.in_(list(states)))
        if like != "%":
            query = query.where(paths.c.path.like(like, escape="\\"))
        with translate_errors(f"listing {pattern!r}"):
            rows = self.db.conn.execute(query.order_by(paths.c.path, files.c.file_id))
            # LIKE narrows (it may be case-insensitive on SQLite); fnmatchcase decides.
            return [_record(r) for r in rows if fnmatch.fnmatchcase(r.path, pattern)]

    def mark_uploaded(self, file_id: int, *, md5: str, size: int, when: datetime) -> FileRecord:
        with translate_errors(f"recording the upload of file {file_id}"):
            conn = self.db.begin_write()
            result = conn.execute(
                update(files)
                .where(files.c.file_id == file_id, files.c.md5.is_(None))
                .values(md5=md5, size=size, uploaded_at=when)
            )
            rec = self.get(file_id)
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
            return self.get(file_id)

    def publish(self, file_id: int, *, when: datetime) -> tuple[FileRecord, list[int]]:
        """Make `file_id` the current version of its path; returns it and the ids expired.

        The path's row is locked first, so concurrent publishers of one path take turns;
        each then expires whatever is current when it gets the lock.
        """
        with translate_errors(f"publishing file {file_id}"):
            conn = self.db.begin_write()
            rec = self.get(file_id)
            conn.execute(
                select(paths.c.path_id).where(paths.c.path_id == rec.path_id).with_for_update()
            ).scalar_one()
            rec = self.get(file_id)  # re-read under the lock
            if rec.state == "published":
                return rec, []
            if rec.state == "expired":
                raise StateError(
                    f"file {file_id} ({rec.path}) is expired and cannot be published again",
                    hint="add a new version of the path instead",
                )
            if rec.md5 is None or rec.size is None:
                raise StateError(f"file {file_id} must be uploaded before it is published")
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
            conn.execute(
                update(files)
                .where(files.c.file_id == file_id)
                .values(state="published", published_at=when)
            )
            return self.get(file_id), superseded

    def expire(self, file_id: int, *, when: datetime) -> FileRecord:
        with translate_errors(f"expiring file {file_id}"):
            conn = self.db.begin_write()
            conn.execute(
                update(files)
                .where(files.c.file_id == file_id, files.c.state != "expired")
                .values(state="expired", expired_at=when)
            )
            return self.get(file_id)

    # -- tags ----------------------------------------------------------------------------

    def add_tags(self, file_id: int, names: Sequence[str]) -> None:
        with translate_errors(f"tagging file {file_id}"):
            conn = self.db.begin_write()
            ids = self._tag_ids(conn, names, create=True)
            if ids:
                conn.execute(
                    self._insert(file_tags).on_conflict_do_nothing(),
                    [{"file_id": file_id, "tag_id": t} for t in ids.values()],
                )

    def remove_tags(self, file_id: int, names: Sequence[str]) -> None:
        with translate_errors(f"untagging file {file_id}"):
            conn = self.db.begin_write()
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
            ids = self._tag_ids(conn, names, create=True)
            if ids:
                conn.execute(
                    self._insert(path_tags).on_conflict_do_nothing(),
                    [{"path_id": path_id, "tag_id": t} for t in ids.values()],
                )

    def remove_path_tags(self, path_id: int, names: Sequence[str]) -> None:
        with translate_errors("untagging a path"):
            conn = self.db.begin_write()
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
                _select_files().where(and_(true(), *conds)).order_by(paths.c.path, files.c.file_id)
            )
            return [_record(r) for r in conn.execute(query)]

    # -- hosts and copies ----------------------------------------------------------------

    def record_copies(
        self,
        host: str,
        copies: Iterable[tuple[int, datetime, bool]],
        *,
        cache_max_bytes: int | None = None,
    ) -> None:
        """Record verified copies on `host`: (file_id, when, newly downloaded?).

        Runs in its own short transaction: bookkeeping never holds up, or is lost with,
        the user's transaction.
        """
        rows = list(copies)
        if not rows:
            return
        with self.db.side_connection() as conn:
            host_id = self._host_id(conn, host, rows[-1][1], cache_max_bytes)
            existing = set(
                conn.execute(
                    select(files.c.file_id).where(files.c.file_id.in_({r[0] for r in rows}))
                ).scalars()
            )
            last: dict[int, datetime] = {}
            downloaded: dict[int, datetime] = {}
            for file_id, when, fresh in rows:
                if file_id not in existing:
                    continue  # purged, or never committed: nothing to record
                last[file_id] = max(when, last.get(file_id, when))
                if fresh:
                    downloaded[file_id] = max(when, downloaded.get(file_id, when))
            for columns, ids in (
                (("downloaded_at", "last_access"), [f for f in last if f in downloaded]),
                (("last_access",), [f for f in last if f not in downloaded]),
            ):
                if not ids:
                    continue
                ins = self._insert(file_hosts)
                stmt = ins.on_conflict_do_update(
                    index_elements=[file_hosts.c.file_id, file_hosts.c.host_id],
                    set_={c: getattr(ins.excluded, c) for c in columns},
                )
                conn.execute(
                    stmt,
                    [
                        {
                            "file_id": f,
                            "host_id": host_id,
                            "downloaded_at": downloaded.get(f, last[f]),
                            "last_access": last[f],
                        }
                        for f in ids
                    ],
                )

    def _host_id(
        self, conn: Connection, host: str, when: datetime, cache_max_bytes: int | None
    ) -> int:
        ins = self._insert(hosts).values(
            name=host, first_seen=when, last_seen=when, cache_max_bytes=cache_max_bytes
        )
        conn.execute(
            ins.on_conflict_do_update(
                index_elements=[hosts.c.name],
                set_={"last_seen": when, "cache_max_bytes": cache_max_bytes},
            )
        )
        return int(conn.execute(select(hosts.c.host_id).where(hosts.c.name == host)).scalar_one())

    def copies_of(self, file_id: int) -> list[HostCopy]:
        with translate_errors(f"reading copies of file {file_id}"):
            rows = self.db.conn.execute(
                select(hosts.c.name, file_hosts.c.downloaded_at, file_hosts.c.last_access)
                .join(hosts, hosts.c.host_id == file_hosts.c.host_id)
                .where(file_hosts.c.file_id == file_id)
                .order_by(hosts.c.name)
            )
            return [HostCopy(host=r[0], downloaded_at=r[1], last_access=r[2]) for r in rows]

    def counts(self) -> dict[str, tuple[int, int]]:
        """Files and bytes per state."""
        with translate_errors("counting files"):
            rows = self.db.conn.execute(
                select(
                    files.c.state, func.count(), func.coalesce(func.sum(files.c.size), 0)
                ).group_by(files.c.state)
            )
            return {r[0]: (int(r[1]), int(r[2])) for r in rows}


def _has_tag(tag_ids: list[int]) -> ColumnElement[bool]:
    """The file carries one of these tags, on itself or on its path."""
    own = exists().where(file_tags.c.file_id == files.c.file_id, file_tags.c.tag_id.in_(tag_ids))
    via_path = exists().where(
        path_tags.c.path_id == files.c.path_id, path_tags.c.tag_id.in_(tag_ids)
    )
    return or_(own, via_path)


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
            end = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("!", "]") else i + 1)
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
