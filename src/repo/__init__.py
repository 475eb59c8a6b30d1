"""repo: turn S3 (or any S3-compatible store) into a distributed, verified file repository.

import repo

with repo.Repo() as r:
    rf = r.add_file("reports/daily.csv")
    rf.touch("some data")
    rf.publish()
    rf.tag("abc")
"""

from __future__ import annotations

from .catalog import HostCopy
from .config import Config, load_config
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
from .repository import Repo
from .tags import date_tags

__version__ = "0.1.0"

__all__ = [
    "CatalogError",
    "Config",
    "ConfigError",
    "ConflictError",
    "HostCopy",
    "ImmutableError",
    "InvalidPathError",
    "InvalidTagError",
    "NotFoundError",
    "Repo",
    "RepoError",
    "RepoFile",
    "StateError",
    "StoreError",
    "UsageError",
    "VerificationError",
    "__version__",
    "date_tags",
    "load_config",
]
