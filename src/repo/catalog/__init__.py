"""The catalog: schema, migrations and every SQL query (PostgreSQL or SQLite)."""

from __future__ import annotations

from .catalog import BackupRecord, Catalog, FileRecord, HostCopy, HostSummary, NewVersion
from .schema import SCHEMA_VERSION

__all__ = [
    "SCHEMA_VERSION",
    "BackupRecord",
    "Catalog",
    "FileRecord",
    "HostCopy",
    "HostSummary",
    "NewVersion",
]
