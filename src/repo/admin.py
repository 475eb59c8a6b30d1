"""Repository administration: create, destroy, and a health and usage report."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .cache import LocalCache
from .catalog import SCHEMA_VERSION, Catalog
from .config import Config, load_config
from .errors import RepoError
from .stores import Store, open_store

__all__ = ["CreateReport", "StatusReport", "create_repository", "destroy_catalog", "status_report"]

ConfigArg = str | os.PathLike[str] | Mapping[str, Any] | Config | None


def _config(config: ConfigArg) -> Config:
    return load_config(config)


@dataclass(frozen=True, slots=True)
class CreateReport:
    """Outcome of `create_repository`."""

    catalog: str
    store: str
    schema_version: int
    created: bool  # False: the catalog existed already (and is now up to date)


def _probe(store: Store) -> None:
    """One listing request: proves the store is reachable, the bucket exists and the
    credentials may list it."""
    next(iter(store.list(store.key_prefix + "data/")), None)


def create_repository(config: ConfigArg = None) -> CreateReport:
    """Create the catalog's tables (or upgrade them) and check that the store answers.

    Safe to run again. Buckets are not created: that takes account rights and choices
    (region, retention) that belong to whoever owns the account.
    """
    cfg = _config(config)
    store = open_store(cfg.store_url, cfg)  # first: a wrong store leaves no catalog behind
    try:
        _probe(store)
    finally:
        store.close()
    catalog = Catalog(cfg.database_url)
    try:
        before = catalog.schema_version()
        version = catalog.ensure_schema()
    finally:
        catalog.close()
    return CreateReport(
        catalog=cfg.masked_database_url(),
        store=cfg.store_url,
        schema_version=version,
        created=before is None,
    )


def destroy_catalog(config: ConfigArg = None) -> int | None:
    """Drop the catalog's tables; returns how many file versions it listed (None: there
    was no catalog). Objects in the store are never touched."""
    cfg = _config(config)
    catalog = Catalog(cfg.database_url)
    try:
        return catalog.drop_schema()
    finally:
        catalog.close()


@dataclass
class StatusReport:
    """Whether the catalog and store answer, what the catalog holds, and local cache use."""

    catalog: str
    store: str
    host: str
    catalog_error: str | None = None
    store_error: str | None = None
    schema_version: int | None = None
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    cache_files: int = 0
    cache_bytes: int = 0
    cache_limit: int | None = None

    @property
    def ok(self) -> bool:
        return self.catalog_error is None and self.store_error is None


def status_report(config: ConfigArg = None) -> StatusReport:
    """Check the catalog and the store independently (one failing does not hide the
    other) and collect counts and bytes by state and this host's cache use."""
    cfg = _config(config)
    report = StatusReport(
        catalog=cfg.masked_database_url(),
        store=cfg.store_url,
        host=cfg.host_name,
        cache_limit=cfg.cache_max_bytes,
    )
    try:
        catalog = Catalog(cfg.database_url)
        try:
            report.schema_version = catalog.schema_version()
            if report.schema_version is None:
                pass  # reachable but empty: the first command (or `repo create`) sets it up
            elif report.schema_version > SCHEMA_VERSION:
                report.catalog_error = (
                    f"schema version {report.schema_version} is newer than this repo's "
                    f"{SCHEMA_VERSION}"
                )
            else:
                report.counts = catalog.counts()
        finally:
            catalog.close()
    except RepoError as exc:
        report.catalog_error = exc.message
    try:
        store = open_store(cfg.store_url, cfg)
        try:
            _probe(store)
        finally:
            store.close()
    except RepoError as exc:
        report.store_error = exc.message
    report.cache_files, report.cache_bytes = LocalCache(cfg.local_root).usage()
    return report
