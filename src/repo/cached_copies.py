"""The catalog's list of which versions this host's cache holds, kept in step in batches.

The list is advisory (a stale entry is harmless: readers check the disk), so it is never
allowed to fail a read or a commit: uses and evictions wait in memory and are written in
side transactions of their own, at commit, close, a fresh download, or once a minute.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .errors import PermissionDeniedError, RepoError

if TYPE_CHECKING:
    from pathlib import Path

    from .cache import LocalCache
    from .catalog import Catalog, FileRecord

__all__ = ["ACCESS_FLUSH_SECONDS", "MAX_PENDING", "CachedCopies"]

logger = logging.getLogger(__name__)

#: Cache hits are remembered in memory and written in one batch at commit, close, or when
#: this many seconds have passed since the last write.
ACCESS_FLUSH_SECONDS = 60.0
MAX_PENDING = 10_000


class CachedCopies:
    """This host's cache together with the catalog's record of what it holds."""

    def __init__(
        self, catalog: Catalog, cache: LocalCache, *, host: str, limit: int | None
    ) -> None:
        self._catalog = catalog
        self._cache = cache
        self._host = host
        self._limit = limit
        # (file id, when, downloaded?, key) of copies used; keys of copies evicted.
        self._pending: list[tuple[int, datetime, bool, str]] = []
        self._evicted: list[str] = []
        self._last_flush = time.monotonic()
        # False once the catalog refused the bookkeeping to this database user (a
        # read-only role): reads go on without it.
        self._enabled = True

    def noted(
        self,
        file_id: int,
        *,
        fresh: bool,
        key: str,
        flush: bool = True,
        when: datetime | None = None,
    ) -> None:
        """Remember that this host holds (`fresh`: just downloaded) or used a copy."""
        self._pending.append((file_id, when or datetime.now(UTC), fresh, key))
        due = time.monotonic() - self._last_flush > ACCESS_FLUSH_SECONDS
        if flush and (fresh or due or len(self._pending) >= MAX_PENDING):
            self.flush()

    def forgotten(self, keys: list[str]) -> None:
        """Remember that the copies of `keys` left this host's cache, and write it now."""
        self._evicted += keys
        self.flush()

    def make_room(self, size: int) -> None:
        """Evict least recently used copies until `size` more bytes fit under the limit."""
        evicted = self._cache.make_room(size, self._limit)
        if evicted:
            self.forgotten([e.key for e in evicted])

    def keep_uploaded(self, record: FileRecord, source: Path | None) -> None:
        """Move the verified staging copy of an uploaded version into the cache (None:
        the copy is there already, `LocalCache.store_bytes`)."""
        assert record.size is not None  # noqa: S101 - uploaded, so sized (for mypy)
        self.make_room(record.size)
        if source is not None:
            self._cache.adopt(source, record.key)
        # Recorded after commit: until then other sessions cannot see the file's row.
        self.noted(record.file_id, fresh=True, flush=False, key=record.key)

    def flush(self) -> None:
        """Write what waits, in side transactions of its own.

        On SQLite, while this session holds the write lock, a side transaction would wait
        on ourselves, and the bookkeeping would otherwise ride in (and be undone with) the
        user's transaction: it waits for the commit or rollback instead.
        """
        if not self._enabled:
            self._pending.clear()
            self._evicted.clear()
            return
        if not (self._pending or self._evicted):
            return
        db = self._catalog.db
        if db.is_sqlite and db.in_write:
            return
        pending, self._pending = self._pending, []
        evicted, self._evicted = self._evicted, []
        # A copy evicted since it was used must not be recorded again.
        used = [
            (f, when, fresh)
            for f, when, fresh, key in pending
            if os.path.exists(self._cache.cache_file(key))
        ]
        try:
            self._catalog.record_copies(self._host, used, cache_max_bytes=self._limit)
            self._catalog.forget_copies(self._host, evicted)
        except PermissionDeniedError as exc:
            # A read-only database user: the list of copies is advisory, so reads carry
            # on without it for the rest of this session.
            logger.info("not recording this host's cached copies: %s", exc)
            self._enabled = False
        except RepoError as exc:
            # Kept for the next flush, which re-checks which versions still exist (GC
            # may have purged one).
            logger.warning("could not record cache use yet: %s", exc)
            self._pending = pending + self._pending
            self._evicted = evicted + self._evicted
        self._last_flush = time.monotonic()

    @property
    def waiting(self) -> int:
        """Uses and evictions not written yet."""
        return len(self._pending) + len(self._evicted)
