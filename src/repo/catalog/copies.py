"""Hosts and the copies they cache: which host holds a verified copy of which version."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Connection, delete, func, literal, select

from .arrays import IN_BATCH, among, unnest_ids, unnest_times
from .base import CatalogBase
from .schema import file_hosts, files, hosts
from .translate import translate_errors

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from datetime import datetime

__all__ = ["CopyQueries", "HostCopy", "HostSummary"]


@dataclass(frozen=True, slots=True)
class HostCopy:
    """A host that holds a verified copy of a file."""

    host: str
    downloaded_at: datetime
    last_access: datetime


@dataclass(frozen=True, slots=True)
class HostSummary:
    """A host known to the catalog and what its cache holds."""

    name: str
    first_seen: datetime
    last_seen: datetime
    cache_max_bytes: int | None
    files: int
    bytes: int


class CopyQueries(CatalogBase):
    """The bookkeeping of hosts and their cached copies."""

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
            pg = not self.db.is_sqlite
            wanted = sorted({r[0] for r in rows})
            existing: set[int] = set()
            step = max(len(wanted), 1) if pg else IN_BATCH
            for i in range(0, len(wanted), step):
                chunk = wanted[i : i + step]
                existing.update(
                    conn.execute(
                        select(files.c.file_id).where(among(files.c.file_id, chunk, postgres=pg))
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
                if pg:
                    # One statement whatever the count (see `arrays`).
                    ins = self._insert(file_hosts).from_select(
                        ["file_id", "host_id", "downloaded_at", "last_access"],
                        select(
                            unnest_ids(ids),
                            literal(host_id, file_hosts.c.host_id.type),
                            unnest_times([downloaded.get(f, last[f]) for f in ids]),
                            unnest_times([last[f] for f in ids]),
                        ),
                    )
                    conn.execute(
                        ins.on_conflict_do_update(
                            index_elements=[file_hosts.c.file_id, file_hosts.c.host_id],
                            set_={c: getattr(ins.excluded, c) for c in columns},
                        )
                    )
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

    def forget_copies(self, host: str, keys: Sequence[str]) -> None:
        """`host` no longer holds these objects (evicted from its cache)."""
        if not keys:
            return
        with self.db.side_connection() as conn:
            host_id = conn.execute(select(hosts.c.host_id).where(hosts.c.name == host)).scalar()
            if host_id is None:
                return
            for i in range(0, len(keys), IN_BATCH):
                chunk = list(keys[i : i + IN_BATCH])
                conn.execute(
                    delete(file_hosts).where(
                        file_hosts.c.host_id == host_id,
                        file_hosts.c.file_id.in_(
                            select(files.c.file_id).where(files.c.key.in_(chunk))
                        ),
                    )
                )

    def forget_host(self, host: str) -> int | None:
        """Forget a host and every copy it held; the number of copies (None: unknown host)."""
        with translate_errors(f"forgetting host {host!r}"):
            conn = self.db.begin_write()
            host_id = conn.execute(select(hosts.c.host_id).where(hosts.c.name == host)).scalar()
            if host_id is None:
                return None
            copies = conn.execute(delete(file_hosts).where(file_hosts.c.host_id == host_id))
            conn.execute(delete(hosts).where(hosts.c.host_id == host_id))
            return int(copies.rowcount)

    def host_summaries(self) -> list[HostSummary]:
        with translate_errors("listing hosts"):
            held = (
                select(
                    file_hosts.c.host_id,
                    func.count().label("n"),
                    func.coalesce(func.sum(files.c.size), 0).label("b"),
                )
                .join(files, files.c.file_id == file_hosts.c.file_id)
                .group_by(file_hosts.c.host_id)
                .subquery()
            )
            rows = self.db.conn.execute(
                select(
                    hosts.c.name,
                    hosts.c.first_seen,
                    hosts.c.last_seen,
                    hosts.c.cache_max_bytes,
                    func.coalesce(held.c.n, 0),
                    func.coalesce(held.c.b, 0),
                )
                .outerjoin(held, held.c.host_id == hosts.c.host_id)
                .order_by(hosts.c.name)
            )
            return [HostSummary(r[0], r[1], r[2], r[3], int(r[4]), int(r[5])) for r in rows]
