"""Copies of versions in the repository's other stores: the ``replicas`` table.

A row names a store by its configured name and holds the object's key there, the copy's
state (``writing`` before the object is written, ``verified`` once checked at the
destination, ``lost`` once found missing or corrupt) and what it was verified with
(docs/replicas.md). Rows are read back as input: `Replica` values are checked here, and
a row's store and key again by `Session` before any store is touched.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import and_, delete, select

from ..errors import StateError, UntrustedDataError
from .arrays import IN_BATCH
from .base import CatalogBase
from .records import FileRecord, records, select_files
from .replay import copies_entry
from .schema import REPLICA_STATES, files, replicas
from .translate import translate_errors

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

__all__ = ["Replica", "ReplicaQueries", "check_replica"]

_MD5 = re.compile(r"[0-9a-f]{32}")
_STORE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
#: `repo.integrity.VERIFIED_WITH` (the catalog sits below `integrity`'s users).
_VERIFIED_WITH = ("etag", "read-back", "server")


class Replica(NamedTuple):
    """One row of ``replicas``: a version's copy in one named store."""

    file_id: int
    store: str
    key: str
    state: str
    size: int | None
    md5: str | None
    verified_with: str | None
    written_at: datetime
    verified_at: datetime | None
    lost_at: datetime | None

    @property
    def verified(self) -> bool:
        return self.state == "verified"


_COLUMNS = (
    replicas.c.file_id,
    replicas.c.store,
    replicas.c.key,
    replicas.c.state,
    replicas.c.size,
    replicas.c.md5,
    replicas.c.verified_with,
    replicas.c.written_at,
    replicas.c.verified_at,
    replicas.c.lost_at,
)
assert [c.name for c in _COLUMNS] == list(Replica._fields)  # noqa: S101


def check_replica(copy: Replica) -> Replica:
    """`copy` if its values are ones this code writes, else `UntrustedDataError`."""
    problem = None
    if not (type(copy.file_id) is int and copy.file_id > 0):
        problem = "no valid file id"
    elif not (isinstance(copy.store, str) and _STORE.fullmatch(copy.store)):
        problem = f"store {str(copy.store)[:40]!r} is no store name"
    elif not (isinstance(copy.key, str) and 0 < len(copy.key) <= 4096):
        problem = "no valid key"
    elif copy.state not in REPLICA_STATES:
        problem = f"state {str(copy.state)[:20]!r}"
    elif copy.md5 is not None and not (isinstance(copy.md5, str) and _MD5.fullmatch(copy.md5)):
        problem = "an md5 that is not 32 hex digits"
    elif copy.size is not None and not (type(copy.size) is int and copy.size >= 0):
        problem = "a size that is no count of bytes"
    elif copy.verified_with not in (None, *_VERIFIED_WITH):
        problem = "an unknown verified_with"
    elif copy.state == "verified" and (
        copy.md5 is None or copy.size is None or copy.verified_at is None
    ):
        problem = "verified without md5, size or time"
    if problem is not None:
        raise UntrustedDataError(
            f"the catalog's copy of file {copy.file_id} in store {str(copy.store)[:40]!r} "
            f"has {problem}; it was not used"
        )
    return copy


class ReplicaQueries(CatalogBase):
    """Which stores hold a copy of which version, and in what state."""

    def replicas_of(self, file_ids: Iterable[int]) -> dict[int, list[Replica]]:
        """The copies recorded for each of `file_ids` (in store-name order), checked."""
        wanted = sorted(set(file_ids))
        found: dict[int, list[Replica]] = {}
        with translate_errors("reading the copies of versions"):
            conn = self.db.conn
            for i in range(0, len(wanted), IN_BATCH):
                chunk = wanted[i : i + IN_BATCH]
                query = (
                    select(*_COLUMNS)
                    .where(replicas.c.file_id.in_(chunk))
                    .order_by(replicas.c.file_id, replicas.c.store)
                )
                for row in conn.execute(query):
                    copy = check_replica(Replica._make(row))
                    found.setdefault(copy.file_id, []).append(copy)
            self.end_read()
        return found

    def known_copy_keys(self, store: str, keys: Iterable[str]) -> set[str]:
        """Which of these keys a copy recorded in `store` names (in any state)."""
        wanted = list(keys)
        found: set[str] = set()
        with translate_errors("looking up copies by key"):
            for i in range(0, len(wanted), IN_BATCH):
                query = select(replicas.c.key).where(
                    replicas.c.store == store, replicas.c.key.in_(wanted[i : i + IN_BATCH])
                )
                found.update(self.db.conn.execute(query).scalars())
        return found

    def versions_to_copy(self, *, after_id: int, limit: int) -> list[FileRecord]:
        """Uploaded versions GC has not claimed, published or expired, in id order after
        `after_id`: what replication keeps at its number of copies."""
        query = (
            select_files()
            .where(
                files.c.file_id > after_id,
                files.c.md5.is_not(None),
                files.c.purge_started_at.is_(None),
                files.c.state.in_(("published", "expired")),
            )
            .order_by(files.c.file_id)
            .limit(limit)
        )
        with translate_errors("listing versions to replicate"):
            found = records(self.db.conn.execute(query).all())
            self.end_read()
        return found

    def replica_lost(self, file_id: int, store: str, key: str, *, when: datetime) -> None:
        """Record that the copy of `file_id` at `key` in `store` is missing or corrupt: it
        no longer counts, nor is read. For the version's own store too (a row there
        overrides ``files.key``). Nothing happens to a version already gone."""
        with translate_errors(f"recording a lost copy of file {file_id} in store {store!r}"):
            conn = self.db.begin_write()
            exists = conn.execute(select(files.c.file_id).where(files.c.file_id == file_id))
            if exists.first() is None:
                return
            self._upsert_lost(conn, file_id, store, key, when)
        self._touched_files.add(file_id)

    def _upsert_lost(self, conn: Any, file_id: int, store: str, key: str, when: datetime) -> None:
        """The copy of `file_id` in `store` recorded as lost (a row made if it had none)."""
        values = {"key": key, "state": "lost", "lost_at": when}
        ins = self._insert(replicas).values(file_id=file_id, store=store, written_at=when, **values)
        conn.execute(
            ins.on_conflict_do_update(
                index_elements=[replicas.c.file_id, replicas.c.store], set_=values
            )
        )

    def forget_replica(self, file_id: int, store: str, key: str) -> None:
        """Delete the row of a copy whose object is deleted (or was never written)."""
        with translate_errors(f"forgetting a copy of file {file_id} in store {store!r}"):
            conn = self.db.begin_write()
            conn.execute(
                delete(replicas).where(
                    and_(
                        replicas.c.file_id == file_id,
                        replicas.c.store == store,
                        replicas.c.key == key,
                    )
                )
            )
        self._touched_files.add(file_id)

    def note_lost_copies(self, lost: Iterable[tuple[int, str, str]], *, when: datetime) -> None:
        """Record copies a read found missing or corrupt, as (file id, store, key), in a
        side transaction of their own: a read records what it found without touching the
        caller's transaction. Versions gone meanwhile are skipped. The marks are journaled
        (`replay.copies_entry`), so a restore keeps them."""
        found = sorted(set(lost))
        if not found:
            return
        # On SQLite inside our own write transaction the side connection is that one:
        # the marks are then journaled by its commit (and gone with its rollback).
        own = self.db.is_sqlite and self.db.in_write
        with self.db.side_connection("recording lost copies") as conn:
            live = {
                row[0]
                for row in conn.execute(
                    select(files.c.file_id).where(files.c.file_id.in_({f for f, _s, _k in found}))
                )
            }
            marked = {(f, s) for f, s, _k in found if f in live}
            for file_id, store, key in found:
                if (file_id, store) in marked:
                    self._upsert_lost(conn, file_id, store, key, when)
            rows = [
                row
                for row in conn.execute(
                    select(*_COLUMNS).where(replicas.c.file_id.in_({f for f, _s in marked}))
                )
                if (row.file_id, row.store) in marked
            ]
        if own:
            self._touched_files.update(f for f, _s in marked)
        elif rows and self.on_commit is not None:
            self.on_commit(copies_entry(rows))  # committed: journaled like any commit

    def claim_drop(
        self,
        file_id: int,
        store: str,
        key: str,
        *,
        home: str | None,
        mincopies: int,
        when: datetime,
    ) -> int:
        """Take the copy at `key` in `store` out of `file_id`'s counted copies (state
        ``lost``), before its object is deleted; returns the verified copies left.

        The version's row is locked first (``SELECT ... FOR UPDATE``; SQLite has one
        writer) and its verified copies counted under the lock, so two drops of one
        version take turns and the second counts without the first's copy: no
        interleaving goes below `mincopies`. `home`: the name of the store holding the
        version's own copy (``files.key``), None if no configured store does.
        `StateError` when the drop would go below the floor or the copy is not verified.
        """
        with translate_errors(f"dropping the copy of file {file_id} in store {store!r}"):
            conn = self.db.begin_write()
            row = conn.execute(
                select(files.c.md5, files.c.purge_started_at)
                .where(files.c.file_id == file_id)
                .with_for_update()
            ).first()
            if row is None or row.md5 is None or row.purge_started_at is not None:
                raise StateError(f"file {file_id} is not uploaded, or is being purged")
            rows = {
                r.store: check_replica(Replica._make(r))
                for r in conn.execute(select(*_COLUMNS).where(replicas.c.file_id == file_id))
            }
            good = {name for name, copy in rows.items() if copy.verified}
            if home is not None and home not in rows:
                good.add(home)
            if store not in good:
                raise StateError(f"file {file_id} has no verified copy in store {store!r}")
            if len(good) - 1 < mincopies:
                raise StateError(
                    f"dropping the copy of file {file_id} in store {store!r} would leave "
                    f"{len(good) - 1} verified copies, below mincopies {mincopies}",
                    hint="make another copy first (`repo replicate`), or lower mincopies",
                )
            self._upsert_lost(conn, file_id, store, key, when)
        self._touched_files.add(file_id)
        return len(good) - 1
