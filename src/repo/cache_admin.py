"""Administering caches: this host's as a whole (status, prune, clear), and the
catalog's list of hosts and what their caches hold."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .errors import NotFoundError, StoreError
from .leftovers import clean_partials, clean_staging

if TYPE_CHECKING:
    from .catalog import HostSummary
    from .session import Session

__all__ = [
    "CacheReport",
    "CacheStatus",
    "cache_status",
    "clear_cache",
    "decommission_host",
    "list_hosts",
    "prune_cache",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CacheStatus:
    """This host's cache: where, how full, and its limit."""

    host: str
    directory: str
    files: int
    bytes: int
    limit: int | None


@dataclass
class CacheReport:
    """What `prune_cache` or `clear_cache` removed."""

    evicted_for_space: int = 0
    dropped_expired: int = 0
    dropped_purged: int = 0
    bytes: int = 0
    staging_removed: int = 0
    #: Temporary files of downloads cut off (``.part-*``), past the orphan grace period.
    partial_downloads_removed: int = 0
    keys: list[str] = field(default_factory=list)


def cache_status(session: Session) -> CacheStatus:
    files, size = session.cache.usage()
    return CacheStatus(
        host=session.host,
        directory=str(session.cache.cache_dir),
        files=files,
        bytes=size,
        limit=session.config.cache_max_bytes,
    )


def prune_cache(session: Session) -> CacheReport:
    """Drop cached copies of versions that are expired or gone, then evict least recently
    used copies down to the limit; also remove staging leftovers (as GC does)."""
    report = CacheReport()
    entries = session.cache.entries()
    known = session.catalog.files_by_key([e.key for e in entries])
    session.catalog.end_read()
    for entry in entries:
        rec = known.get(entry.key)
        if rec is not None:
            if rec.state != "expired" and rec.purge_started_at is None:
                continue
            report.dropped_expired += 1
        else:
            # Not in the catalog: purged, or the catalog lost it (restored from an older
            # backup). A host cache can be the last copy in the second case, so it is
            # dropped only when the store no longer has the object either.
            if not _gone_from_store(session, entry.key):
                continue
            report.dropped_purged += 1
        session.cache.evict(entry.key)
        report.bytes += entry.size
        report.keys.append(entry.key)
    limit = session.config.cache_max_bytes
    if limit is not None:
        evicted = session.cache.evict_to(limit)
        report.evicted_for_space = len(evicted)
        report.bytes += sum(e.size for e in evicted)
        report.keys += [e.key for e in evicted]
    session.copies.forgotten(report.keys)
    now = datetime.now(UTC)
    report.staging_removed = clean_staging(session, now, dry_run=False)
    report.partial_downloads_removed = clean_partials(session, now, dry_run=False)
    return report


def _gone_from_store(session: Session, key: str) -> bool:
    """No store that may hold `key` has it (placement puts versions in any store)."""
    for name in session.config.store_names:
        store = session.stores.named(name)
        if not key.startswith(store.key_prefix):
            continue
        try:
            store.head(key)
        except NotFoundError:
            continue
        except StoreError as exc:
            logger.warning(
                "cannot check %s in store %s, keeping the cached copy: %s", key, name, exc
            )
            return False
        return False
    return True


def clear_cache(session: Session) -> CacheReport:
    """Evict every cached copy on this host, and partial downloads past the orphan grace
    period that no process holds (staging copies of unfinished work stay)."""
    evicted = session.cache.clear()
    report = CacheReport(
        evicted_for_space=len(evicted),
        bytes=sum(e.size for e in evicted),
        keys=[e.key for e in evicted],
        partial_downloads_removed=clean_partials(session, datetime.now(UTC), dry_run=False),
    )
    session.copies.forgotten(report.keys)
    return report


def list_hosts(session: Session) -> list[HostSummary]:
    try:
        return session.catalog.host_summaries()
    finally:
        session.catalog.end_read()


def decommission_host(session: Session, name: str) -> int:
    """Forget a host and the copies it held; returns how many copies were forgotten."""
    forgotten = session.catalog.forget_host(name)
    if forgotten is None:
        raise NotFoundError(f"no host named {name!r}", hint="see `repo host list`")
    return forgotten
