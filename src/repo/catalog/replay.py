"""Journal entries, the catalog's side: building each commit's entry, and replaying them.

An entry records what one commit changed as the full resulting state of its rows. Every
write notes the versions and paths it touched. At commit the catalog reads their
resulting rows (with their tags) inside the transaction and hands the entry to the
repository, which stores it as one small immutable object once the commit is done. A
restore loads a backup, then replays the entries committed after the backup's snapshot:
an entry holds whole rows, not operations, so applying it is an upsert and replaying one
twice changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select

from . import tag_index
from .arrays import IN_BATCH, among
from .base import CatalogBase
from .records import FileRecord, record, select_files
from .schema import file_hosts, file_tags, files, path_tags, paths, replicas, tags
from .translate import translate_errors

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["ENTRY_FORMAT", "ReplayQueries", "copies_entry", "replica_doc"]

#: Version of the entry format (`format` field).
ENTRY_FORMAT = 1

_TIME_FIELDS = ("created_at", "uploaded_at", "published_at", "expired_at", "purge_started_at")
#: Times that entries journaled before schema version 6 do not have.
_LATER_TIME_FIELDS = ("archived_at",)


#: A copy's fields in an entry (`replicas` rows), times as ISO text.
_REPLICA_FIELDS = ("store", "key", "state", "size", "md5", "verified_with")
_REPLICA_TIMES = ("written_at", "verified_at", "lost_at")


def replica_doc(row: Any) -> dict[str, Any]:
    """A `replicas` row (any object with its columns as attributes) as an entry holds it."""
    doc = {name: getattr(row, name) for name in _REPLICA_FIELDS}
    for name in _REPLICA_TIMES:
        value = getattr(row, name)
        doc[name] = value.isoformat() if value is not None else None
    return doc


def _row_doc(rec: FileRecord, own_tags: list[str]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "file_id": rec.file_id,
        "path": rec.path,
        "bucket": rec.bucket,
        "key": rec.key,
        "state": rec.state,
        "md5": rec.md5,
        "size": rec.size,
        "origin": rec.origin,
        "verified_with": rec.verified_with,
        "mode": rec.mode,
        "storage_class": rec.storage_class,
        "tags": own_tags,
    }
    for name in (*_TIME_FIELDS, *_LATER_TIME_FIELDS):
        value = getattr(rec, name)
        doc[name] = value.isoformat() if value is not None else None
    return doc


def copies_entry(rows: Sequence[Any]) -> dict[str, Any]:
    """The entry of a commit that changed only these `replicas` rows (lost marks a read
    recorded in a side transaction): the rows alone, under ``copies``, since the versions'
    rows may be in another transaction's hands meanwhile. Entries without ``copies`` (all
    before it) replay as before; code that predates it skips the field."""
    copies = [{"file_id": row.file_id, **replica_doc(row)} for row in rows]
    return {"format": ENTRY_FORMAT, "files": [], "paths": [], "purged": [], "copies": copies}


class ReplayQueries(CatalogBase):
    """Building journal entries at commit, and applying them on restore."""

    def journal_entry(self) -> dict[str, Any] | None:
        """The rows this transaction touched, as they are now (None: nothing touched)."""
        if not (self._touched_files or self._touched_paths or self._purged):
            return None
        conn = self.db.conn
        file_ids = sorted(self._touched_files - self._purged)
        docs: list[dict[str, Any]] = []
        pg = not self.db.is_sqlite
        step = 10_000 if pg else IN_BATCH
        with translate_errors("journaling the commit"):
            for i in range(0, len(file_ids), step):
                chunk = file_ids[i : i + step]
                recs = [
                    record(r)
                    for r in conn.execute(
                        select_files().where(among(files.c.file_id, chunk, postgres=pg))
                    )
                ]
                own: dict[int, list[str]] = {r.file_id: [] for r in recs}
                for file_id, name in conn.execute(
                    select(file_tags.c.file_id, tags.c.name)
                    .join(tags, tags.c.tag_id == file_tags.c.tag_id)
                    .where(among(file_tags.c.file_id, chunk, postgres=pg))
                ):
                    own[file_id].append(name)
                copies: dict[int, list[dict[str, Any]]] = {r.file_id: [] for r in recs}
                for row in conn.execute(
                    select(replicas)
                    .where(among(replicas.c.file_id, chunk, postgres=pg))
                    .order_by(replicas.c.file_id, replicas.c.store)
                ):
                    copies[row.file_id].append(replica_doc(row))
                for r in recs:
                    doc = _row_doc(r, sorted(own[r.file_id]))
                    doc["replicas"] = copies[r.file_id]
                    docs.append(doc)
            path_docs = []
            path_ids = sorted(self._touched_paths)
            for i in range(0, len(path_ids), IN_BATCH):
                chunk = path_ids[i : i + IN_BATCH]
                names = dict(
                    conn.execute(
                        select(paths.c.path_id, paths.c.path).where(paths.c.path_id.in_(chunk))
                    ).all()
                )
                by_path: dict[int, list[str]] = {p: [] for p in names}
                for path_id, name in conn.execute(
                    select(path_tags.c.path_id, tags.c.name)
                    .join(tags, tags.c.tag_id == path_tags.c.tag_id)
                    .where(path_tags.c.path_id.in_(chunk))
                ):
                    by_path[path_id].append(name)
                path_docs += [{"path": names[p], "tags": sorted(t)} for p, t in by_path.items()]
        return {
            "format": ENTRY_FORMAT,
            "files": docs,
            "paths": path_docs,
            "purged": sorted(self._purged),
        }

    def apply_entry(self, entry: dict[str, Any]) -> None:
        """Bring the rows an entry describes to the state it records (an upsert)."""
        conn = self.db.begin_write()
        self._wake_waiters = True
        with translate_errors("replaying the change journal"):
            # Versions leaving "published" first, so that the one-current-version index
            # never sees two current versions of a path mid-entry.
            docs = sorted(entry.get("files", []), key=lambda d: d["state"] == "published")
            touched: set[int] = set()
            for doc in docs:
                path_id = self._path_id(conn, doc["path"], create=True)
                assert path_id is not None  # noqa: S101 - create=True makes one (for mypy)
                touched.add(path_id)
                values = {
                    "path_id": path_id,
                    "bucket": doc["bucket"],
                    "key": doc["key"],
                    "state": doc["state"],
                    "md5": doc["md5"],
                    "size": doc["size"],
                    "origin": doc["origin"],
                    # Entries journaled before version 4 have none.
                    "verified_with": doc.get("verified_with"),
                    # And before version 6, these.
                    "mode": doc.get("mode"),
                    "storage_class": doc.get("storage_class"),
                    **{
                        name: datetime.fromisoformat(doc[name]) if doc.get(name) else None
                        for name in (*_TIME_FIELDS, *_LATER_TIME_FIELDS)
                    },
                }
                self._settle_state(conn, doc["file_id"], path_id, values)
                ins = self._insert(files).values(file_id=doc["file_id"], **values)
                conn.execute(
                    ins.on_conflict_do_update(index_elements=[files.c.file_id], set_=values)
                )
                self._set_file_tags(conn, doc["file_id"], doc["tags"])
                if "replicas" in doc:  # entries journaled before version 7 have none
                    self._set_replicas(conn, doc["file_id"], doc["replicas"])
            for doc in entry.get("copies", []):  # see `copies_entry`
                self._set_copy(conn, doc)
            for doc in entry.get("paths", []):
                path_id = self._path_id(conn, doc["path"], create=True)
                assert path_id is not None  # noqa: S101 - create=True makes one (for mypy)
                touched.add(path_id)
                wanted = self._tag_ids(conn, doc["tags"], create=True)
                conn.execute(delete(path_tags).where(path_tags.c.path_id == path_id))
                if wanted:
                    conn.execute(
                        path_tags.insert(),
                        [{"path_id": path_id, "tag_id": t} for t in wanted.values()],
                    )
            purged = list(entry.get("purged", []))
            for i in range(0, len(purged), IN_BATCH):
                chunk = purged[i : i + IN_BATCH]
                conn.execute(delete(file_tags).where(file_tags.c.file_id.in_(chunk)))
                conn.execute(delete(file_hosts).where(file_hosts.c.file_id.in_(chunk)))
                conn.execute(delete(replicas).where(replicas.c.file_id.in_(chunk)))
                conn.execute(delete(files).where(files.c.file_id.in_(chunk)))
            # Derived rows last, from the state the entry left (see `tag_index`).
            pg = not self.db.is_sqlite
            tag_index.forget_versions(conn, purged, pg)
            tag_index.rederive_paths(conn, sorted(touched), pg)

    def _settle_state(
        self, conn: Any, file_id: int, path_id: int | None, values: dict[str, Any]
    ) -> None:
        """Adjust `values` so a replay never moves a version backwards.

        Entries are ordered by the committing hosts' clocks, which may disagree: an
        expired version stays expired, and of two versions that both claim to be a
        path's current one, the one published later wins (as it did in the catalog).
        """
        existing = conn.execute(
            select(files.c.state, files.c.expired_at).where(files.c.file_id == file_id)
        ).first()
        if existing is not None and existing.state == "expired" and values["state"] != "expired":
            values["state"], values["expired_at"] = "expired", existing.expired_at
        if values["state"] != "published":
            return
        rival = conn.execute(
            select(files.c.file_id, files.c.published_at).where(
                files.c.path_id == path_id,
                files.c.state == "published",
                files.c.file_id != file_id,
            )
        ).first()
        if rival is None:
            return
        mine = values["published_at"]
        if rival.published_at is not None and mine is not None and rival.published_at > mine:
            values["state"], values["expired_at"] = "expired", rival.published_at
        else:
            conn.execute(
                files.update()
                .where(files.c.file_id == rival.file_id)
                .values(state="expired", expired_at=mine)
            )

    def _set_file_tags(self, conn: Any, file_id: int, names: Sequence[str]) -> None:
        wanted = self._tag_ids(conn, list(names), create=True)
        conn.execute(delete(file_tags).where(file_tags.c.file_id == file_id))
        if wanted:
            conn.execute(
                file_tags.insert(), [{"file_id": file_id, "tag_id": t} for t in wanted.values()]
            )

    def _set_copy(self, conn: Any, doc: dict[str, Any]) -> None:
        """One copy's row as `doc` records it; nothing for a version that is gone."""
        file_id = doc["file_id"]
        if conn.execute(select(files.c.file_id).where(files.c.file_id == file_id)).first() is None:
            return
        values = {
            **{name: doc[name] for name in _REPLICA_FIELDS if name != "store"},
            **{
                name: datetime.fromisoformat(doc[name]) if doc[name] else None
                for name in _REPLICA_TIMES
            },
        }
        ins = self._insert(replicas).values(file_id=file_id, store=doc["store"], **values)
        conn.execute(
            ins.on_conflict_do_update(
                index_elements=[replicas.c.file_id, replicas.c.store], set_=values
            )
        )

    def _set_replicas(self, conn: Any, file_id: int, copies: Sequence[dict[str, Any]]) -> None:
        conn.execute(delete(replicas).where(replicas.c.file_id == file_id))
        if copies:
            conn.execute(
                replicas.insert(),
                [
                    {
                        "file_id": file_id,
                        **{name: copy[name] for name in _REPLICA_FIELDS},
                        **{
                            name: datetime.fromisoformat(copy[name]) if copy[name] else None
                            for name in _REPLICA_TIMES
                        },
                    }
                    for copy in copies
                ],
            )
