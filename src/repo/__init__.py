"""repo: turn S3 (or any S3-compatible store) into a distributed, verified file repository.

import repo

with repo.Repo() as r:
    rf = r.add_file("reports/daily.csv")
    rf.touch("some data")
    rf.publish()
    rf.tag("abc")
"""

from __future__ import annotations

from .admin import CreateReport, StatusReport, create_repository, destroy_catalog, status_report
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
from .tags import date_tags

__version__ = "0.1.0"

__all__ = [
    "AddReport",
    "CacheReport",
    "CacheStatus",
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
    "ProgressListener",
    "Repo",
    "RepoError",
    "RepoFile",
    "StateError",
    "StatusReport",
    "StoreError",
    "UsageError",
    "VerificationError",
    "__version__",
    "create_repository",
    "date_tags",
    "describe_config",
    "destroy_catalog",
    "load_config",
    "status_report",
]
