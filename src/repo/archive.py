"""Archival: moving chosen versions' objects to an archival storage class, verified.

A move never changes a key or a byte (versions stay immutable): the object is copied
onto itself in the new class, checked (`stores.base.Archivable.move_to_class`), and only
then does the catalog record the class and the time, one commit per version, so the
catalog never says a version is archived when its object is not. Restoring (thawing)
archived versions is `thaw`. Costs and rules: docs/archiving.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from .errors import StateError, UsageError
from .file import RepoFile
from .storage_classes import ARCHIVE_CLASSES, OVERHEAD_BYTES, early_deletion_days, needs_restore
from .stores.base import archivable
from .units import human_size

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .session import Session

__all__ = ["ArchiveReport", "archive"]

logger = logging.getLogger(__name__)

#: States whose versions may be archived: unpublished ones are still being made.
ARCHIVABLE_STATES = ("published", "expired")


@dataclass
class ArchiveReport:
    """What `archive` moved (or, in a dry run, would move) and what it left, and why."""

    storage_class: str
    dry_run: bool = False
    #: Moved to `storage_class` and recorded (in a dry run: would be).
    archived: list[RepoFile] = field(default_factory=list)
    #: In `storage_class` already.
    already: list[RepoFile] = field(default_factory=list)
    #: Left as they are, each with the reason.
    skipped: list[tuple[RepoFile, str]] = field(default_factory=list)
    #: Early-deletion charges the moves pay (``archive_early_deletion: warn``).
    warnings: list[str] = field(default_factory=list)
    #: Archived versions smaller than the class's per-object overhead (40 KiB in GLACIER
    #: and DEEP_ARCHIVE), which each cost more to keep than their content.
    smaller_than_overhead: int = 0

    @property
    def bytes(self) -> int:
        return sum(f.size or 0 for f in self.archived)


def archive(
    session: Session,
    files: Iterable[RepoFile],
    *,
    storage_class: str | None = None,
    older_than: timedelta | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> ArchiveReport:
    """Move `files` (published or expired, uploaded longer than `older_than` ago) to
    `storage_class` (the configuration's ``archive_class`` by default)."""
    target = storage_class or session.config.archive_class
    if target not in ARCHIVE_CLASSES:
        raise UsageError(
            f"not an archival storage class: {str(target)[:40]!r}",
            hint="use GLACIER_IR, GLACIER or DEEP_ARCHIVE",
        )
    if older_than is not None and older_than < timedelta(0):
        raise UsageError("older_than must not be negative")
    session.require_clean("archiving")
    now = now or datetime.now(UTC)
    report = ArchiveReport(storage_class=target, dry_run=dry_run)
    chosen = _choose(files, report, target=target, older_than=older_than, now=now)
    # Each version in the store its row names (placement may have sent it elsewhere than
    # the default store), checked, and every one archivable before any request is made.
    stores = {rf.file_id: archivable(session.locate(rf.record)) for rf in chosen}
    _check_early_deletion(session, chosen, report, target=target, now=now)
    report.smaller_than_overhead = sum((rf.size or 0) < OVERHEAD_BYTES[target] for rf in chosen)
    if dry_run:
        report.archived.extend(chosen)
        return report
    for rf in chosen:
        rec = rf.record
        assert rec.md5 is not None  # noqa: S101 - `_choose` took uploaded versions only
        assert rec.size is not None  # noqa: S101
        store = stores[rec.file_id]
        checked = store.move_to_class(rec.key, target, md5=rec.md5, size=rec.size)
        updated = session.catalog.mark_archived(rec.file_id, storage_class=target, when=now)
        session.commit()
        logger.info(
            "archived %s (file %s) in %s, checked by %s", rec.path, rec.file_id, target, checked
        )
        report.archived.append(RepoFile(session, updated))
    return report


def _choose(
    files: Iterable[RepoFile],
    report: ArchiveReport,
    *,
    target: str,
    older_than: timedelta | None,
    now: datetime,
) -> list[RepoFile]:
    chosen: list[RepoFile] = []
    for rf in files:
        rec = rf.record
        if rec.state not in ARCHIVABLE_STATES or rec.md5 is None or rec.size is None:
            report.skipped.append((rf, f"{rec.state}: only published or expired versions"))
        elif rec.purge_started_at is not None:
            report.skipped.append((rf, "being purged"))
        elif rec.storage_class == target:
            report.already.append(rf)
        elif needs_restore(rec.storage_class):
            report.skipped.append(
                (rf, f"in {rec.storage_class} already (moving it needs a restore first)")
            )
        elif older_than is not None and (
            rec.uploaded_at is None or rec.uploaded_at > now - older_than
        ):
            report.skipped.append((rf, "uploaded too recently"))
        else:
            chosen.append(rf)
    return chosen


def _check_early_deletion(
    session: Session,
    chosen: list[RepoFile],
    report: ArchiveReport,
    *,
    target: str,
    now: datetime,
) -> None:
    """Moving out of GLACIER_IR before its 90 days bills the rest at once: warn, or
    refuse before anything moves (``archive_early_deletion``)."""
    charges = []
    for rf in chosen:
        days = early_deletion_days(rf.storage_class, rf.archived_at, now)
        if days:
            charges.append(
                f"{rf.path} (file {rf.file_id}): moving it out of {rf.storage_class} "
                f"now bills {days} more days of {rf.storage_class} storage "
                f"({human_size(rf.size)}) as an early-deletion charge"
            )
    if not charges:
        return
    if session.config.archive_early_deletion == "refuse":
        raise StateError(
            f"archiving to {target} would pay early-deletion charges for {len(charges)} "
            f"version(s), e.g. {charges[0]}; nothing was moved",
            hint="wait until the minimum storage duration has passed, or set "
            "archive_early_deletion to 'warn'",
        )
    report.warnings.extend(charges)
