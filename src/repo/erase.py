"""Deleting chosen versions now, whatever their state (`repo purge`).

Garbage collection deletes only what its rules allow, days after the fact. A secret
published by mistake, or an erasure request, cannot wait: this purges the versions a
person names, published ones included, with GC's own steps (`repo.gc.finish_claims`).
The versions are claimed first in one committed transaction (so no publish or expire
can race the deletion), then their objects are deleted, then their rows, tags and host
copy records. Each commit writes its journal entry, the last one naming the versions
purged, so a restore that replays the journal does not bring them back. Interrupted
anywhere, the claim stays: running the purge again, or `repo gc`, finishes it.

What it cannot reach (backups taken before, other hosts' caches, the store's own object
versions) is in docs/deleting.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .errors import NotFoundError, UsageError
from .file import RepoFile
from .gc import finish_claims
from .paths import TOKEN_LENGTH, validate_path
from .storage_classes import early_deletion_days

if TYPE_CHECKING:
    from .catalog import FileRecord
    from .session import Session

__all__ = ["PurgeReport", "purge"]

logger = logging.getLogger(__name__)


@dataclass
class PurgeReport:
    """The versions a purge deleted (or, in a dry run, would delete)."""

    dry_run: bool
    #: Each version as it was just before the purge (its state then), by id.
    purged: list[RepoFile] = field(default_factory=list)
    #: This host's staging copies of them removed (unpublished versions not uploaded).
    staging_removed: int = 0
    #: Archived versions among them still within their class's minimum storage duration:
    #: the early-deletion charge each pays, one line each. A purge is deliberate (a
    #: secret added by mistake), so it goes ahead whatever ``archive_early_deletion`` says.
    early_deletion: list[str] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(f.size or 0 for f in self.purged)


def purge(
    session: Session, target: int | str, *, all_versions: bool = False, dry_run: bool = False
) -> PurgeReport:
    """Delete version `target` (an id), or the one version of path `target` (every
    version with `all_versions`): object, catalog rows, this host's copies."""
    session.require_clean("purging")
    catalog = session.catalog
    try:
        chosen = _chosen(session, target, all_versions=all_versions)
        for rec in chosen:
            # A row naming a location outside this repository's store is not ours to
            # delete: refused before anything changes (`repo verify` lists such rows).
            session.check_readable(rec)
    finally:
        catalog.rollback()
    report = PurgeReport(dry_run=dry_run, purged=[RepoFile(session, r) for r in chosen])
    now = datetime.now(UTC)
    for rec in chosen:
        days = early_deletion_days(rec.storage_class, rec.archived_at, now)
        if days:
            report.early_deletion.append(
                f"{rec.path} (file {rec.file_id}, in {rec.storage_class}): an early-deletion "
                f"charge of {days} more days of {rec.storage_class} storage"
            )
    if dry_run:
        return report
    try:
        claimed = catalog.claim_regardless([r.file_id for r in chosen], now=datetime.now(UTC))
        catalog.commit()  # claimed: from here on nobody can publish or expire these
        finish_claims(session, claimed)
    finally:
        catalog.rollback()
    report.staging_removed = _remove_staging(session, [r.key for r in claimed])
    logger.info("purged %d versions (%d bytes)", len(report.purged), report.bytes)
    return report


def _chosen(session: Session, target: int | str, *, all_versions: bool) -> list[FileRecord]:
    """The versions `target` names, by id."""
    if isinstance(target, int) and not isinstance(target, bool):
        if all_versions:
            raise UsageError("all_versions goes with a path, not a file id")
        return [session.catalog.get(target)]
    if not isinstance(target, str):
        raise UsageError(f"expected a file id or a path, got {target!r}")
    path = validate_path(target)
    versions = session.catalog.history(path)
    if not versions:
        raise NotFoundError(f"no file at path {path!r}", hint="see `repo list --state all`")
    if len(versions) > 1 and not all_versions:
        raise UsageError(
            f"{path!r} has {len(versions)} versions; purge all of them or one by its id",
            hint=f"pass --all-versions, or an id that `repo history {path}` lists",
        )
    return sorted(versions, key=lambda r: r.file_id)


def _remove_staging(session: Session, keys: list[str]) -> int:
    """Remove this host's staging copies of these versions (a copy not yet uploaded is
    still on the disk of the host that added it)."""
    tokens = {key[-TOKEN_LENGTH:] for key in keys}
    removed = 0
    for token, directory, _mtime in session.staging.entries():
        if token in tokens:
            session.staging.remove(directory)
            removed += 1
    return removed
