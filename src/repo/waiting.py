"""Waiting for data: return as soon as a current version matching a query exists.

PostgreSQL: ``LISTEN`` first, *then* query, so that nothing committed in between is
missed; query again on each notice (`catalog.notices`) and, since notices sent while
the listener is disconnected are lost, every `POLL_SECONDS` anyway. A listener whose
connection is lost is replaced. SQLite: query with pauses that double from
`FIRST_PAUSE` up to `LAST_PAUSE`. Every loop ends at the deadline.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import timedelta
from typing import TYPE_CHECKING

from . import lookup
from .errors import CatalogError, UsageError
from .paths import validate_path
from .tags import validate_tags

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from .file import RepoFile
    from .session import Session

__all__ = ["FIRST_PAUSE", "LAST_PAUSE", "POLL_SECONDS", "wait"]

logger = logging.getLogger(__name__)

#: PostgreSQL: query again this often even without a notice (lost notices).
POLL_SECONDS = 5.0
#: SQLite (and PostgreSQL while it cannot listen): the first pause between queries,
#: doubled after each up to the last.
FIRST_PAUSE = 0.1
LAST_PAUSE = 5.0


def wait(
    session: Session,
    *,
    any: Iterable[str] = (),
    all: Iterable[str] = (),
    exclude: Iterable[str] = (),
    path: str | None = None,
    pattern: str | None = None,
    timeout: float | timedelta,
    limit: int | None = None,
) -> list[RepoFile]:
    """The current versions matching the query (as `lookup.find` gives them) once there
    is at least one, within `timeout`; an empty list when there is none by then.

    ``timeout=0`` asks once. A longer wait needs a session with nothing uncommitted:
    it would hold that transaction's locks all the while.
    """
    seconds = _seconds(timeout)
    if seconds > 0:
        session.require_clean("waiting")
    deadline = time.monotonic() + seconds
    query = _query(session, any, all, exclude, path, pattern, limit)
    if session.catalog.db.is_sqlite:
        return _poll(query, deadline)
    return _listen(session, query, deadline)


def _seconds(timeout: object) -> float:
    if isinstance(timeout, timedelta):
        timeout = timeout.total_seconds()
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise UsageError(f"timeout must be a number of seconds or a timedelta, got {timeout!r}")
    if not math.isfinite(timeout) or timeout < 0:
        raise UsageError(f"timeout must be 0 seconds or more, got {timeout!r}")
    return float(timeout)


def _query(
    session: Session,
    any: Iterable[str],
    all: Iterable[str],
    exclude: Iterable[str],
    path: str | None,
    pattern: str | None,
    limit: int | None,
) -> Callable[[], list[RepoFile]]:
    """The query, its arguments checked now (before any waiting)."""
    any_tags, all_tags, excluded = validate_tags(any), validate_tags(all), validate_tags(exclude)
    if path is not None and pattern is not None:
        raise UsageError("give a path or a pattern, not both")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise UsageError(f"limit must be a whole number of files (0 or more), got {limit!r}")
    if path is None:
        # The pattern is checked by the first query, before any waiting.
        def matching() -> list[RepoFile]:
            return lookup.find(
                session, any=any_tags, all=all_tags, exclude=excluded, pattern=pattern, limit=limit
            )

        return matching
    clean = validate_path(path)

    def at_path() -> list[RepoFile]:
        found = lookup.published(session, clean)
        if found is None or limit == 0:
            return []
        if any_tags or all_tags or excluded:
            tags = set(lookup.tags_of(session, [found])[found.file_id])
            if not set(all_tags) <= tags or tags & set(excluded):
                return []
            if any_tags and not tags & set(any_tags):
                return []
        return [found]

    return at_path


def _poll(query: Callable[[], list[RepoFile]], deadline: float) -> list[RepoFile]:
    pause = FIRST_PAUSE
    while True:
        found = query()
        left = deadline - time.monotonic()
        if found or left <= 0:
            return found
        time.sleep(min(pause, left))
        pause = min(pause * 2, LAST_PAUSE)


def _listen(
    session: Session, query: Callable[[], list[RepoFile]], deadline: float
) -> list[RepoFile]:
    listener = session.catalog.listener()
    pause = FIRST_PAUSE
    try:
        while True:
            if not listener.is_open and deadline > time.monotonic():
                try:
                    listener.open()
                    pause = FIRST_PAUSE
                except CatalogError as exc:
                    logger.warning("%s; polling instead", exc.message)
            found = query()  # after LISTEN: a commit from here on sends us a notice
            left = deadline - time.monotonic()
            if found or left <= 0:
                return found
            if listener.is_open:
                listener.wait(min(left, POLL_SECONDS))
            else:
                time.sleep(min(pause, left))
                pause = min(pause * 2, LAST_PAUSE)
    finally:
        listener.close()
