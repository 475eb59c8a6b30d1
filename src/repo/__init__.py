"""repo: turn S3 (or any S3-compatible store) into a distributed, verified file repository.

import repo

with repo.Repo() as r:
    rf = r.add_file("reports/daily.csv")
    rf.touch("some data")
    rf.publish()
    rf.tag("abc")
"""

from __future__ import annotations

from .admin import (
    CreateReport,
    RolesReport,
    StatusReport,
    create_repository,
    create_roles,
    destroy_catalog,
    status_report,
)
from .backup import BackupReport
from .catalog import HostCopy, HostSummary
from .config import Config, ConfigEntry, describe_config, load_config
from .errors import (
    CatalogError,
    ConfigError,
    ConflictError,
    ImmutableError,
    InvalidPathError,
    InvalidTagError,
    NotFoundError,
    PermissionDeniedError,
    RepoError,
    StateError,
    StoreError,
    UsageError,
    VerificationError,
)
from .file import RepoFile
from .gc import GcCategory, GcReport
from .hosts import CacheReport, CacheStatus
from .ingest import AddReport, ProgressListener
from .repository import Repo
from .restore import RestoreReport, restore_catalog
from .tags import date_tags
from .verify import CacheVerifyReport, RecoverReport, VerifyReport

__version__ = "0.1.0"

__all__ = [
    "AddReport",
    "BackupReport",
    "CacheReport",
    "CacheStatus",
    "CacheVerifyReport",
    "CatalogError",
    "Config",
    "ConfigEntry",
    "ConfigError",
    "ConflictError",
    "CreateReport",
    "GcCategory",
    "GcReport",
    "HostCopy",
    "HostSummary",
    "ImmutableError",
    "InvalidPathError",
    "InvalidTagError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProgressListener",
    "RecoverReport",
    "Repo",
    "RepoError",
    "RepoFile",
    "RestoreReport",
    "RolesReport",
    "StateError",
    "StatusReport",
    "StoreError",
    "UsageError",
    "VerificationError",
    "VerifyReport",
    "__version__",
    "create_repository",
    "create_roles",
    "date_tags",
    "describe_config",
    "destroy_catalog",
    "load_config",
    "restore_catalog",
    "status_report",
]
