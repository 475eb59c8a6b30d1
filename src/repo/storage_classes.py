"""S3 storage classes a version may be archived to, and what each costs to keep and read.

Plain values (the catalog's check constraint, the change journal's validation and the
S3 store all use them), kept below every other layer.
"""

from __future__ import annotations

__all__ = ["ARCHIVE_CLASSES", "is_archive_class"]

#: The archival classes (``files.storage_class``); NULL in the catalog is the class the
#: object was uploaded in. GLACIER_IR reads without a restore; the other two need one.
ARCHIVE_CLASSES = ("GLACIER_IR", "GLACIER", "DEEP_ARCHIVE")


def is_archive_class(value: object) -> bool:
    """Whether `value` names one of `ARCHIVE_CLASSES` (exactly, as S3 spells it)."""
    return isinstance(value, str) and value in ARCHIVE_CLASSES
