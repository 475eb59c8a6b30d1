"""This host's local leftovers (staging copies, partial downloads) and when they may go.

One rule, shared by garbage collection and cache administration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .paths import TOKEN_LENGTH

if TYPE_CHECKING:
    from collections.abc import Set as AbstractSet
    from datetime import datetime

    from .session import Session

__all__ = ["clean_partials", "clean_staging"]


def clean_staging(
    session: Session, now: datetime, dry_run: bool, going: AbstractSet[str] = frozenset()
) -> int:
    """Remove this host's staging copies that no unfinished version needs any more.

    Returns how many were (or, in a dry run, would be) removed.

    A staging copy younger than the orphan grace period may belong to a transaction
    still in flight on this host, so it stays.
    """
    entries = session.staging.entries()
    if not entries:
        return 0
    # `going`: versions a dry run would purge, whose rows are still there.
    pending = session.catalog.pending_upload_keys(session.host) - going
    live = {key[-TOKEN_LENGTH:] for key in pending}
    session.catalog.end_read()
    grace = session.config.orphan_grace_seconds
    removed = 0
    for token, directory, mtime in entries:
        if token in live or now.timestamp() - mtime < grace:
            continue
        if not dry_run:
            session.staging.remove(directory)
        removed += 1
    return removed


def clean_partials(session: Session, now: datetime, dry_run: bool) -> int:
    """Remove this host's abandoned partial downloads (``.part-*`` in the cache).

    One is removed only when no live process holds it and it was last written more than
    ``orphan_grace_seconds`` before `now`. Returns how many were (or would be) removed.
    """
    older_than = now.timestamp() - session.config.orphan_grace_seconds
    return session.cache.remove_partials(older_than, dry_run=dry_run)
