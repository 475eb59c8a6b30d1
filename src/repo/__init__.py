"""repo: turn S3 (or any S3-compatible store) into a distributed, verified file repository.

import repo

with repo.Repo() as r:
    rf = r.add_file("reports/daily.csv")
    rf.touch("some data")
    rf.publish()
    rf.tag("abc")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    ArchivedError,
    CatalogBusyError,
    CatalogError,
    ConfigError,
    ConflictError,
    ImmutableError,
    InvalidPathError,
    InvalidTagError,
    LocalDiskError,
    NotFoundError,
    PermissionDeniedError,
    RepoError,
    StateError,
    StoreError,
    UntrustedDataError,
    UsageError,
    VerificationError,
)

if TYPE_CHECKING:
    from .admin import (
        CreateReport,
        RolesReport,
        StatusReport,
        create_repository,
        create_roles,
        destroy_catalog,
        status_report,
    )
    from .archive import ArchiveReport
    from .backup import BackupReport
    from .cache_admin import CacheReport, CacheStatus
    from .cache_check import CacheVerifyReport
    from .catalog import HostCopy, HostSummary
    from .config import Config, ConfigEntry, describe_config, load_config
    from .copy_list import StoreCopy
    from .erase import PurgeReport
    from .expiring import Scheduled, ScheduleReport
    from .fetch import FetchReport
    from .file import RepoFile
    from .gc import GcCategory, GcReport
    from .ingest import AddReport
    from .named_stores import StoreSpec
    from .progress import ProgressListener
    from .recover import LostFile, RecoverReport
    from .replicate import ReplicateReport
    from .repository import Repo
    from .restore import RestoreReport, restorable_backups, restore_catalog
    from .retention import KeepPolicy
    from .session import Session
    from .store_admin import StoreSummary
    from .tags import date_tags
    from .thaw import ThawReport, ThawStatus
    from .verify import Finding, VerifyCategory, VerifyReport
    from .verify_copies import CopiesReport, CopyFinding

#: Where each public name lives: imported on first use (PEP 562), so that `import repo`
#: (and every command, through it) loads SQLAlchemy and the S3 clients only when it
#: uses something that needs them.
_LAZY = {
    "AddReport": "ingest",
    "ArchiveReport": "archive",
    "BackupReport": "backup",
    "CacheReport": "cache_admin",
    "CacheStatus": "cache_admin",
    "CacheVerifyReport": "cache_check",
    "Config": "config",
    "CopiesReport": "verify_copies",
    "CopyFinding": "verify_copies",
    "ConfigEntry": "config",
    "CreateReport": "admin",
    "FetchReport": "fetch",
    "Finding": "verify",
    "GcCategory": "gc",
    "GcReport": "gc",
    "HostCopy": "catalog",
    "HostSummary": "catalog",
    "KeepPolicy": "retention",
    "LostFile": "recover",
    "ProgressListener": "progress",
    "PurgeReport": "erase",
    "RecoverReport": "recover",
    "ReplicateReport": "replicate",
    "Repo": "repository",
    "RepoFile": "file",
    "RestoreReport": "restore",
    "RolesReport": "admin",
    "ScheduleReport": "expiring",
    "Scheduled": "expiring",
    "Session": "session",
    "StoreCopy": "copy_list",
    "StoreSummary": "store_admin",
    "StatusReport": "admin",
    "StoreSpec": "named_stores",
    "ThawReport": "thaw",
    "ThawStatus": "thaw",
    "VerifyCategory": "verify",
    "VerifyReport": "verify",
    "create_repository": "admin",
    "create_roles": "admin",
    "date_tags": "tags",
    "describe_config": "config",
    "destroy_catalog": "admin",
    "load_config": "config",
    "restorable_backups": "restore",
    "restore_catalog": "restore",
    "status_report": "admin",
}

__version__ = "0.1.0"

__all__ = [
    "AddReport",
    "ArchiveReport",
    "ArchivedError",
    "BackupReport",
    "CacheReport",
    "CacheStatus",
    "CacheVerifyReport",
    "CatalogBusyError",
    "CatalogError",
    "Config",
    "ConfigEntry",
    "ConfigError",
    "ConflictError",
    "CopiesReport",
    "CopyFinding",
    "CreateReport",
    "FetchReport",
    "Finding",
    "GcCategory",
    "GcReport",
    "HostCopy",
    "HostSummary",
    "ImmutableError",
    "InvalidPathError",
    "InvalidTagError",
    "KeepPolicy",
    "LocalDiskError",
    "LostFile",
    "NotFoundError",
    "PermissionDeniedError",
    "ProgressListener",
    "PurgeReport",
    "RecoverReport",
    "ReplicateReport",
    "Repo",
    "RepoError",
    "RepoFile",
    "RestoreReport",
    "RolesReport",
    "ScheduleReport",
    "Scheduled",
    "Session",
    "StateError",
    "StatusReport",
    "StoreCopy",
    "StoreError",
    "StoreSpec",
    "StoreSummary",
    "ThawReport",
    "ThawStatus",
    "UntrustedDataError",
    "UsageError",
    "VerificationError",
    "VerifyCategory",
    "VerifyReport",
    "__version__",
    "create_repository",
    "create_roles",
    "date_tags",
    "describe_config",
    "destroy_catalog",
    "load_config",
    "restorable_backups",
    "restore_catalog",
    "status_report",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # once found, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
