"""S3 storage classes a version may be archived to, and what each costs to keep and read.

Plain values (the catalog's check constraint, the change journal's validation, the
configuration and the S3 store all use them), kept below every other layer. The figures
are AWS's published rules (the S3 pricing page, "minimum storage duration" and
"per-object overhead"); S3-compatible servers may bill otherwise or not at all.
"""

from __future__ import annotations

from datetime import datetime, timedelta

__all__ = [
    "ARCHIVE_CLASSES",
    "DEFAULT_ARCHIVE_CLASS",
    "EARLY_DELETION_POLICIES",
    "MINIMUM_DAYS",
    "OVERHEAD_BYTES",
    "RESTORE_TIERS",
    "early_deletion_days",
    "is_archive_class",
    "needs_restore",
]

#: The archival classes (``files.storage_class``); NULL in the catalog is the class the
#: object was uploaded in. GLACIER_IR reads without a restore; the other two need one.
ARCHIVE_CLASSES = ("GLACIER_IR", "GLACIER", "DEEP_ARCHIVE")

#: `archive_class`'s default: Glacier Flexible Retrieval.
DEFAULT_ARCHIVE_CLASS = "GLACIER"

#: Days an object is billed for in each class even when deleted (or moved) sooner.
MINIMUM_DAYS = {"GLACIER_IR": 90, "GLACIER": 90, "DEEP_ARCHIVE": 180}

#: Bytes billed per object beyond its content: GLACIER and DEEP_ARCHIVE keep 32 KiB of
#: index at the archive's rate and 8 KiB of name and metadata at STANDARD's.
OVERHEAD_BYTES = {"GLACIER_IR": 0, "GLACIER": 40 * 1024, "DEEP_ARCHIVE": 40 * 1024}

#: How fast a restore is asked to be (RestoreObject's ``Tier``), fastest first.
RESTORE_TIERS = ("Expedited", "Standard", "Bulk")

#: What `archive_early_deletion` may say: go on and warn, or refuse.
EARLY_DELETION_POLICIES = ("warn", "refuse")


def is_archive_class(value: object) -> bool:
    """Whether `value` names one of `ARCHIVE_CLASSES` (exactly, as S3 spells it)."""
    return isinstance(value, str) and value in ARCHIVE_CLASSES


def needs_restore(storage_class: str | None) -> bool:
    """Whether an object in `storage_class` must be restored before it can be read."""
    return storage_class in ("GLACIER", "DEEP_ARCHIVE")


def early_deletion_days(
    storage_class: str | None, archived_at: datetime | None, now: datetime
) -> int:
    """Days of storage still billed if the object went at `now` (0 when none are).

    An object archived at `archived_at` into `storage_class` is billed `MINIMUM_DAYS`
    whatever happens; deleting it sooner charges the rest at once. A partial day counts
    as a whole one (AWS bills by the day, rounding up).
    """
    if not is_archive_class(storage_class) or archived_at is None:
        return 0
    assert storage_class is not None  # noqa: S101 - is_archive_class checked it (for mypy)
    remaining = archived_at + timedelta(days=MINIMUM_DAYS[storage_class]) - now
    if remaining <= timedelta(0):
        return 0
    return remaining.days + (1 if remaining % timedelta(days=1) else 0)
