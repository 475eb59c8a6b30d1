"""Thawing: asking S3 for readable copies of archived versions, and watching them come.

A version in GLACIER or DEEP_ARCHIVE reads only while a restored copy exists. `thaw`
asks for one (RestoreObject); `thaw_status` reads where each stands from a HEAD's
``x-amz-restore`` header (free of retrieval charges); `thaw(..., wait=...)` polls with
backoff until every copy is readable or the deadline passes. The storage class stays
archival throughout: readability comes from the restore header, never from the class.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import ConflictError, StateError, UsageError
from .storage_classes import RESTORE_TIERS, needs_restore
from .stores.base import archivable

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from datetime import datetime

    from .file import RepoFile
    from .session import Session

__all__ = ["ThawReport", "ThawStatus", "thaw", "thaw_status"]

logger = logging.getLogger(__name__)

#: RestoreObject's ``Days``: how long the restored copy stays readable.
DEFAULT_DAYS = 7
MAX_DAYS = 30_000
#: Polling while waiting: the first pause, and the longest one backoff reaches.
FIRST_POLL_SECONDS = 2.0
MAX_POLL_SECONDS = 300.0


@dataclass(frozen=True)
class ThawStatus:
    """Where one version stands, from its object's HEAD."""

    file: RepoFile
    #: The object's class as the store says it (None: the class it was uploaded in).
    storage_class: str | None
    #: ``readable`` (no restore needed), ``archived`` (no restore asked for),
    #: ``restoring`` or ``restored`` (readable until `restored_until`).
    status: str
    restored_until: datetime | None = None

    @property
    def readable(self) -> bool:
        return self.status in ("readable", "restored")


@dataclass
class ThawReport:
    """What `thaw` asked for, and where each version stood at the end."""

    days: int
    tier: str
    #: A restore started now (S3 answered 202).
    started: list[RepoFile] = field(default_factory=list)
    #: Restored already; the copy's expiry moved to `days` from now (200).
    extended: list[RepoFile] = field(default_factory=list)
    #: A restore was running already (409 RestoreAlreadyInProgress).
    in_progress: list[RepoFile] = field(default_factory=list)
    #: Readable without a restore (not archived, or in GLACIER_IR).
    not_needed: list[RepoFile] = field(default_factory=list)
    #: With `wait`: each version's status once every one was readable.
    statuses: list[ThawStatus] = field(default_factory=list)


def thaw(
    session: Session,
    files: Iterable[RepoFile],
    *,
    days: int = DEFAULT_DAYS,
    tier: str = "Standard",
    wait: float | None = None,
    first_poll: float = FIRST_POLL_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> ThawReport:
    """Ask for a readable copy of each archived version in `files` for `days` days at
    `tier`; with `wait` (seconds), then poll until all are readable (`StateError` if
    some are not by then)."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise UsageError(f"days must be a whole number from 1 to {MAX_DAYS}, got {days!r}")
    if tier not in RESTORE_TIERS:
        raise UsageError(
            f"unknown restore tier {str(tier)[:40]!r}", hint="use " + ", ".join(RESTORE_TIERS)
        )
    chosen = list(files)
    # Each version in the store its row names (placement), every one checked first.
    stores = {rf.file_id: archivable(session.locate(rf.record)) for rf in chosen}
    deep = [rf for rf in chosen if rf.storage_class == "DEEP_ARCHIVE"]
    if tier == "Expedited" and deep:
        # Refused before any request: no restore starts for some and fails for others.
        raise UsageError(
            f"{deep[0].path} (file {deep[0].file_id}) is in DEEP_ARCHIVE, which has no "
            "Expedited restores; nothing was asked for",
            hint="use --tier Standard (within 12 hours) or Bulk (within 48 hours)",
        )
    report = ThawReport(days=days, tier=tier)
    for rf in chosen:
        rec = rf.record
        if not needs_restore(rec.storage_class):
            report.not_needed.append(rf)
            continue
        try:
            started = stores[rec.file_id].request_restore(rec.key, days=days, tier=tier)
        except ConflictError:
            report.in_progress.append(rf)
            continue
        (report.started if started else report.extended).append(rf)
        logger.info(
            "thaw %s (file %s): %s", rec.path, rec.file_id, "started" if started else "extended"
        )
    if wait is not None:
        report.statuses = wait_until_readable(
            session, chosen, deadline=wait, first_poll=first_poll, sleep=sleep
        )
    return report


def thaw_status(session: Session, files: Iterable[RepoFile]) -> list[ThawStatus]:
    """Where each version stands (one HEAD each: no retrieval, no restore)."""
    statuses = []
    for rf in files:
        rec = rf.record
        if rec.md5 is None:
            raise StateError(f"{rec.path} (file {rec.file_id}) is not uploaded")
        state = archivable(session.locate(rec)).archive_state(rec.key)
        if not needs_restore(state.storage_class):
            status = "readable"
        elif state.restoring is None:
            status = "archived"
        else:
            status = "restoring" if state.restoring else "restored"
        statuses.append(ThawStatus(rf, state.storage_class, status, state.restored_until))
    return statuses


def wait_until_readable(
    session: Session,
    files: list[RepoFile],
    *,
    deadline: float,
    first_poll: float = FIRST_POLL_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> list[ThawStatus]:
    """Poll `thaw_status` (pauses doubling from `first_poll`, at most `MAX_POLL_SECONDS`)
    until every version is readable; `StateError` once `deadline` seconds have passed."""
    if deadline < 0 or first_poll <= 0:
        raise UsageError("the deadline must not be negative and the first poll must be positive")
    give_up = time.monotonic() + deadline
    pause = first_poll
    while True:
        statuses = thaw_status(session, files)
        waiting = [s for s in statuses if not s.readable]
        if not waiting:
            return statuses
        left = give_up - time.monotonic()
        if left <= 0:
            asked = sum(s.status == "restoring" for s in waiting)
            raise StateError(
                f"{len(waiting)} of {len(statuses)} version(s) still not readable after "
                f"{deadline:g} s ({asked} restoring, {len(waiting) - asked} never asked for)",
                hint="a Standard restore takes hours; see `repo thaw --status`, or wait longer",
            )
        sleep(min(pause, left))
        pause = min(pause * 2, MAX_POLL_SECONDS)
