"""Repository administration: create, destroy, database roles, and a health and usage
report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from .catalog import SCHEMA_VERSION
from .catalog.roles import create_roles as _create_roles
from .errors import RepoError, UsageError, at_boundary
from .session import ConfigSource, Session

if TYPE_CHECKING:
    from .config import Config
    from .stores import Store

__all__ = [
    "CreateReport",
    "RolesReport",
    "StatusReport",
    "create_repository",
    "create_roles",
    "destroy_catalog",
    "status_report",
]


@dataclass(frozen=True, slots=True)
class RolesReport:
    """Outcome of `create_roles`: the two group roles and what they may touch."""

    catalog: str
    read_only: str
    read_write: str
    #: The roles this call created (the others existed and had their grants renewed).
    created: tuple[str, ...]
    schema: str
    tables: tuple[str, ...]
    sequences: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CreateReport:
    """Outcome of `create_repository`."""

    catalog: str
    store: str
    schema_version: int
    created: bool  # False: the catalog existed already (and is now up to date)
    #: With ``roles=True``: the database roles (see `create_roles`).
    roles: RolesReport | None = None


def _probe(store: Store) -> None:
    """One listing request: proves the store is reachable, the bucket exists and the
    credentials may list it."""
    next(iter(store.list(store.key_prefix + "data/")), None)


@at_boundary("creating the repository")
def create_repository(
    config: ConfigSource = None, *, roles: bool = False, role_name: str | None = None
) -> CreateReport:
    """Create the catalog's tables (or upgrade them) and check that the store answers;
    with `roles`, also the read-only and read-write database roles (`create_roles`).

    Safe to run again. Buckets are not created: that takes account rights and choices
    (region, retention) that belong to whoever owns the account.
    """
    session = Session(config)
    cfg = session.config
    try:
        if roles:
            _require_postgresql(cfg)  # before anything is created
        _probe(session.store)  # first: a wrong store leaves no catalog behind
        before = session.catalog.schema_version()
        version = session.exclusively("upgrading the catalog", session.catalog.ensure_schema)
    finally:
        session.close(discard=True)
    return CreateReport(
        catalog=cfg.masked_database_url(),
        store=cfg.store_url,
        schema_version=version,
        created=before is None,
        roles=create_roles(cfg, name=role_name) if roles else None,
    )


def _require_postgresql(cfg: Config) -> None:
    if make_url(cfg.database_url).get_backend_name() != "postgresql":
        raise UsageError(
            "database roles need a PostgreSQL catalog; SQLite has none",
            hint="on SQLite, file permissions on the catalog file decide who may write",
        )


def create_roles(config: ConfigSource = None, *, name: str | None = None) -> RolesReport:
    """Create PostgreSQL group roles ``<name>_ro`` (may read the catalog) and ``<name>_rw``
    (may read and write it, but change no schema) and grant them their rights.

    `name` defaults to the database's name. Safe to run again (after a schema upgrade,
    run it again to cover new tables). Needs the owner of the catalog's tables with
    CREATEROLE; on SQLite a `UsageError`. The roles cannot log in: grant them to login
    users (docs/security.md).
    """
    session = Session(config)
    cfg = session.config
    try:
        _require_postgresql(cfg)
        roles = _create_roles(session.catalog, name)
    finally:
        session.close(discard=True)
    return RolesReport(
        catalog=cfg.masked_database_url(),
        read_only=roles.read_only,
        read_write=roles.read_write,
        created=roles.created,
        schema=roles.schema,
        tables=roles.tables,
        sequences=roles.sequences,
    )


def destroy_catalog(config: ConfigSource = None, *, terminate_others: bool = False) -> int | None:
    """Drop the catalog's tables; returns how many file versions it listed (None: there
    was no catalog). Objects in the store are never touched.

    Waits a bounded time for sessions holding the catalog, then fails naming them; with
    `terminate_others`, ends them instead (where the database role may)."""
    session = Session(config)
    try:
        return session.exclusively(
            "destroying the catalog",
            session.catalog.drop_schema,
            terminate_others=terminate_others,
        )
    finally:
        session.close(discard=True)


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
    #: The default store's name, and with several stores (docs/replicas.md) the others:
    #: name -> (URL, error or None).
    store_name: str = "main"
    stores: dict[str, tuple[str, str | None]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        others = all(error is None for _url, error in self.stores.values())
        return self.catalog_error is None and self.store_error is None and others


@at_boundary("checking the repository")
def status_report(config: ConfigSource = None) -> StatusReport:
    """Check the catalog and the store independently (one failing does not hide the
    other) and collect counts and bytes by state and this host's cache use."""
    session = Session(config)
    try:
        return _status(session)
    finally:
        session.close(discard=True)


def _status(session: Session) -> StatusReport:
    cfg = session.config
    report = StatusReport(
        catalog=cfg.masked_database_url(),
        store=cfg.store_url,
        host=cfg.host_name,
        cache_limit=cfg.cache_max_bytes,
        store_name=cfg.store_name,
    )
    try:
        catalog = session.catalog
        report.schema_version = catalog.schema_version()
        if report.schema_version is None:
            pass  # reachable but empty: the first command (or `repo create`) sets it up
        elif report.schema_version > SCHEMA_VERSION:
            report.catalog_error = (
                f"schema version {report.schema_version} is newer than this repo's {SCHEMA_VERSION}"
            )
        else:
            unfinished = catalog.unfinished_restore()
            if unfinished is not None:
                report.catalog_error = (
                    f"a restore of backup {unfinished} did not finish; "
                    "run `repo restore` again to finish it"
                )
            report.counts = catalog.counts()
    except RepoError as exc:
        report.catalog_error = exc.message
    try:
        _probe(session.store)
    except RepoError as exc:
        report.store_error = exc.message
    for name in cfg.stores:
        try:
            store = session.stores.named(name)
            _probe(store)
        except RepoError as exc:
            report.stores[name] = (cfg.for_store(name).store_url, exc.message)
        else:
            report.stores[name] = (store.url, None)
    report.cache_files, report.cache_bytes = session.cache.usage()
    return report
