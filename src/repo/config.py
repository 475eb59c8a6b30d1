"""Load and validate configuration.

The format is the seed's JSON document (``~/.repo_cfg``). Where it comes from, in order:
an explicit path or dict, ``$REPO_CFG``, ``~/.repo_cfg``, else the embedded default (a SQLite
catalog and a local-directory store under ``$REPO_HOME`` or the user data directory).

Errors name the source and the key and never echo a secret value.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import platformdirs
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from .errors import ConfigError

__all__ = ["Config", "ConfigEntry", "describe_config", "load_config"]

logger = logging.getLogger(__name__)

SECRET_KEYS = frozenset({"s3_secret_key", "password"})

_KNOWN_KEYS: dict[str, tuple[type, ...]] = {
    "local_root": (str,),
    "default_s3_bucket": (str,),
    "backup_s3_bucket": (str,),
    "s3_access_key": (str,),
    "s3_secret_key": (str,),
    "s3_endpoint_url": (str,),
    "s3_region": (str,),
    "database": (str, dict),
    "store": (str,),
    "host_name": (str,),
    "cache_max_bytes": (int,),
    "unpublished_ttl_seconds": (int,),
    "expired_ttl_seconds": (int,),
    "orphan_grace_seconds": (int,),
    "backups_before_purge": (int,),
    "backup_keep": (int,),
    "s3_timeout_seconds": (int,),
    "s3_sse": (str,),
    "s3_sse_kms_key_id": (str,),
}

#: Garbage-collection settings and their defaults (all non-negative integers).
GC_DEFAULTS: dict[str, int] = {
    "unpublished_ttl_seconds": 86_400,
    "expired_ttl_seconds": 604_800,
    "orphan_grace_seconds": 86_400,
    "backups_before_purge": 2,
}
#: How many backups retention keeps (at least 1).
BACKUP_KEEP_DEFAULT = 7
#: How long an S3 request may go without a byte from the server before it is abandoned.
S3_TIMEOUT_DEFAULT = 60
#: The server-side encryption `s3_sse` may ask for: SSE-S3 and SSE-KMS.
S3_SSE_ALGORITHMS = ("AES256", "aws:kms")
_DATABASE_KEYS: dict[str, tuple[type, ...]] = {
    "host": (str,),
    "port": (int,),
    "user": (str,),
    "password": (str,),
    "database": (str,),
}


def repo_home() -> Path:
    """Directory of the embedded default: ``$REPO_HOME`` or the user data directory."""
    env = os.environ.get("REPO_HOME")
    if env:
        return Path(env).expanduser().resolve()
    return Path(platformdirs.user_data_dir("repo", appauthor=False))


@dataclass(frozen=True, kw_only=True, repr=False)
class Config:
    """Validated configuration. Secrets are masked in `repr`."""

    source: str
    local_root: Path
    store_url: str
    database_url: str
    host_name: str
    backup_store_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = field(default=None, repr=False)
    cache_max_bytes: int | None = None
    unpublished_ttl_seconds: int = GC_DEFAULTS["unpublished_ttl_seconds"]
    expired_ttl_seconds: int = GC_DEFAULTS["expired_ttl_seconds"]
    orphan_grace_seconds: int = GC_DEFAULTS["orphan_grace_seconds"]
    backups_before_purge: int = GC_DEFAULTS["backups_before_purge"]
    backup_keep: int = BACKUP_KEEP_DEFAULT
    s3_timeout_seconds: int = S3_TIMEOUT_DEFAULT
    s3_sse: str | None = None
    s3_sse_kms_key_id: str | None = None
    #: Where each field's value came from (a key of the source, or a default).
    origins: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_embedded(self) -> bool:
        return self.source == "embedded default"

    def masked_database_url(self) -> str:
        return make_url(self.database_url).render_as_string(hide_password=True)

    def __repr__(self) -> str:
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.repr}
        del shown["origins"]
        shown["database_url"] = self.masked_database_url()
        return f"Config({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


def load_config(
    config: str | os.PathLike[str] | Mapping[str, Any] | Config | None = None,
) -> Config:
    """Find, read and validate the configuration (a `Config` is returned as is)."""
    if isinstance(config, Config):
        return config
    if isinstance(config, Mapping):
        return _from_mapping(config, source="<config dict>", base=Path.cwd())
    if config is not None:
        return _from_file(Path(config))
    env = os.environ.get("REPO_CFG")
    if env:
        return _from_file(Path(env), chosen_by="$REPO_CFG")
    home_cfg = Path("~/.repo_cfg").expanduser()
    if home_cfg.exists():
        return _from_file(home_cfg, chosen_by="~/.repo_cfg")
    return embedded_default()


def embedded_default() -> Config:
    """SQLite catalog and local-directory store under the repo home; no server needed."""
    home = repo_home()
    where = (
        "embedded default under $REPO_HOME" if os.environ.get("REPO_HOME") else ("embedded default")
    )
    return Config(
        source="embedded default",
        local_root=home / "local",
        store_url=(home / "store").as_uri(),
        database_url=f"sqlite:///{home / 'catalog.db'}",
        host_name=_default_host_name(),
        origins={
            "local_root": where,
            "store_url": where,
            "database_url": where,
            "host_name": "default: this machine's host name",
            **dict.fromkeys((*GC_DEFAULTS, "backup_keep"), "default"),
        },
    )


def _from_file(path: Path, *, chosen_by: str = "") -> Config:
    path = path.expanduser()
    try:
        text = path.read_text(encoding="utf-8-sig")  # tolerate a byte-order mark
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: configuration file not found",
            hint="check the path given with --config or $REPO_CFG (without either, "
            "~/.repo_cfg or else the embedded default is used)",
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 (undecodable byte at offset {exc.start})",
            hint="save the file as UTF-8",
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the configuration must be a JSON object")
    config = _from_mapping(data, source=str(path), base=path.resolve().parent, chosen_by=chosen_by)
    _warn_if_exposed(path, config)
    return config


def _warn_if_exposed(path: Path, config: Config) -> None:
    """Warn when a file holding a secret can be read by other users."""
    has_secret = config.s3_secret_key is not None or (
        make_url(config.database_url).password is not None
    )
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if has_secret and mode & 0o077:
        logger.warning(
            "%s holds secrets but can be read by other users (mode %o); run: chmod 600 %s",
            path,
            mode & 0o777,
            path,
        )


def _from_mapping(
    data: Mapping[str, Any], *, source: str, base: Path, chosen_by: str = ""
) -> Config:
    unknown = sorted(set(data) - set(_KNOWN_KEYS))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(map(repr, unknown))}",
            hint="check the spelling; known keys: " + ", ".join(sorted(_KNOWN_KEYS)),
        )
    for key, value in data.items():
        _check_type(source, key, value, _KNOWN_KEYS[key])

    store_url = _store_url(data, source)
    backup = data.get("backup_s3_bucket")
    local_root = data.get("local_root")
    cache_max = data.get("cache_max_bytes")
    if cache_max is not None and cache_max <= 0:
        raise ConfigError(f"{source}: key 'cache_max_bytes' must be a positive integer")
    for key in GC_DEFAULTS:
        if key in data and data[key] < 0:
            raise ConfigError(f"{source}: key '{key}' must be zero or more")
    if data.get("backup_keep", 1) < 1:
        raise ConfigError(f"{source}: key 'backup_keep' must be at least 1")
    endpoint = data.get("s3_endpoint_url")
    if endpoint is not None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"{source}: key 's3_endpoint_url' must be an http:// or https:// URL")
    _check_s3_transfer(data, source)
    host_name = data["host_name"] if "host_name" in data else _default_host_name()
    if not host_name.strip() or not host_name.isprintable():
        raise ConfigError(f"{source}: key 'host_name' must be a non-empty printable name")
    origin = f"{source} ({chosen_by})" if chosen_by else source
    keys = {
        "local_root": "local_root",
        "store_url": "default_s3_bucket" if "default_s3_bucket" in data else "store",
        "database_url": "database",
        "host_name": "host_name",
        "backup_store_url": "backup_s3_bucket",
        "s3_endpoint_url": "s3_endpoint_url",
        "s3_region": "s3_region",
        "s3_access_key": "s3_access_key",
        "s3_secret_key": "s3_secret_key",
        "cache_max_bytes": "cache_max_bytes",
        **{key: key for key in GC_DEFAULTS},
        "backup_keep": "backup_keep",
        "s3_timeout_seconds": "s3_timeout_seconds",
        "s3_sse": "s3_sse",
        "s3_sse_kms_key_id": "s3_sse_kms_key_id",
    }
    origins = {name: f"{origin}: {key}" for name, key in keys.items() if key in data}
    origins.setdefault("local_root", "default: $REPO_HOME/local or the user data directory")
    origins.setdefault("host_name", "default: this machine's host name")
    for key in (*GC_DEFAULTS, "backup_keep"):
        origins.setdefault(key, "default")
    return Config(
        origins=origins,
        source=source,
        local_root=_resolve(local_root, base) if local_root else repo_home() / "local",
        store_url=store_url,
        database_url=_database_url(data, source, base),
        host_name=host_name,
        backup_store_url=f"s3://{backup}" if backup else None,
        s3_endpoint_url=endpoint,
        s3_region=data.get("s3_region"),
        s3_access_key=data.get("s3_access_key"),
        s3_secret_key=data.get("s3_secret_key"),
        cache_max_bytes=cache_max,
        **{key: data.get(key, default) for key, default in GC_DEFAULTS.items()},
        backup_keep=data.get("backup_keep", BACKUP_KEEP_DEFAULT),
        s3_timeout_seconds=data.get("s3_timeout_seconds", S3_TIMEOUT_DEFAULT),
        s3_sse=data.get("s3_sse"),
        s3_sse_kms_key_id=data.get("s3_sse_kms_key_id"),
    )


def _check_s3_transfer(data: Mapping[str, Any], source: str) -> None:
    """The S3 timeout and server-side encryption keys (types are already checked)."""
    if data.get("s3_timeout_seconds", 1) < 1:
        raise ConfigError(f"{source}: key 's3_timeout_seconds' must be at least 1")
    sse = data.get("s3_sse")
    if sse is not None and sse not in S3_SSE_ALGORITHMS:
        raise ConfigError(
            f"{source}: key 's3_sse' must be 'AES256' (SSE-S3) or 'aws:kms' (SSE-KMS), got {sse!r}"
        )
    key_id = data.get("s3_sse_kms_key_id")
    if key_id is not None and sse != "aws:kms":
        raise ConfigError(
            f"{source}: key 's3_sse_kms_key_id' needs 's3_sse' set to 'aws:kms'",
            hint='set "s3_sse": "aws:kms", or remove \'s3_sse_kms_key_id\'',
        )
    if key_id is not None and (not key_id.strip() or not key_id.isprintable()):
        raise ConfigError(f"{source}: key 's3_sse_kms_key_id' must be a non-empty key id or ARN")


def _check_type(source: str, key: str, value: Any, types: tuple[type, ...]) -> None:
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        names = " or ".join(
            {str: "a string", int: "an integer", dict: "an object"}[t] for t in types
        )
        # A database URL can carry a password, so its value is not shown either.
        secret = key == "database" or key.rsplit(".", 1)[-1] in SECRET_KEYS
        shown = "a value" if secret else repr(value)
        raise ConfigError(f"{source}: key '{key}' must be {names}, got {shown}")


def _resolve(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _store_url(data: Mapping[str, Any], source: str) -> str:
    store: str | None = data.get("store")
    bucket: str | None = data.get("default_s3_bucket")
    if store and bucket:
        raise ConfigError(
            f"{source}: keys 'store' and 'default_s3_bucket' both name a store",
            hint="keep one of them",
        )
    if bucket:
        if "/" in bucket or not bucket.strip():
            raise ConfigError(f"{source}: key 'default_s3_bucket' must be a bare bucket name")
        return f"s3://{bucket}"
    if not store:
        raise ConfigError(
            f"{source}: no store configured",
            hint="set 'store' (s3://bucket/prefix or file:///path) or 'default_s3_bucket'",
        )
    parts = urlsplit(store)
    if "@" in parts.netloc:
        # Never echoed: what comes before the '@' is likely a key and a secret.
        raise ConfigError(
            f"{source}: key 'store' must not carry credentials (user:password@)",
            hint="put them in 's3_access_key' and 's3_secret_key', or the environment",
        )
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ConfigError(f"{source}: key 'store' has no bucket: {store!r}")
        return store.rstrip("/")
    if parts.scheme == "file":
        path = unquote(parts.path)
        if parts.netloc not in ("", "localhost") or not path.startswith("/"):
            raise ConfigError(f"{source}: key 'store' must be file:///absolute/path, got {store!r}")
        return Path(path).as_uri()
    raise ConfigError(
        f"{source}: key 'store' must start with s3:// or file://, got {store!r}",
    )


def _database_url(data: Mapping[str, Any], source: str, base: Path) -> str:
    db = data.get("database")
    if db is None:
        raise ConfigError(
            f"{source}: key 'database' is missing",
            hint="set it to a postgresql:// or sqlite:/// URL, or an object with host/port/...",
        )
    if isinstance(db, dict):
        unknown = sorted(set(db) - set(_DATABASE_KEYS))
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) in 'database': {', '.join(map(repr, unknown))}",
                hint="known keys: " + ", ".join(sorted(_DATABASE_KEYS)),
            )
        for key, value in db.items():
            _check_type(source, f"database.{key}", value, _DATABASE_KEYS[key])
        if "database" not in db:
            raise ConfigError(f"{source}: key 'database.database' (the database name) is missing")
        url = URL.create(
            "postgresql+psycopg",
            username=db.get("user"),
            password=db.get("password"),
            host=db.get("host", "localhost"),
            port=db.get("port"),
            database=db["database"],
        )
        return url.render_as_string(hide_password=False)
    if db.startswith("postgres://"):  # the short scheme many hosting services hand out
        db = "postgresql://" + db[len("postgres://") :]
    try:
        url = make_url(db)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise ConfigError(
            f"{source}: key 'database' is not a database URL",
            hint="use postgresql://user:password@host:port/name or sqlite:///path/catalog.db",
        ) from None
    backend = url.get_backend_name()
    if backend == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    elif backend == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ConfigError(
                f"{source}: key 'database' must name a SQLite file (sqlite:///path/catalog.db)"
            )
        url = url.set(drivername="sqlite", database=str(_resolve(url.database, base)))
    else:
        raise ConfigError(
            f"{source}: key 'database' uses unsupported backend {backend!r}",
            hint="use postgresql:// or sqlite:///",
        )
    return url.render_as_string(hide_password=False)


def _default_host_name() -> str:
    return socket.gethostname() or "localhost"


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    """One effective setting for display: secrets already masked."""

    name: str
    value: str | int | None
    origin: str


def describe_config(config: Config) -> list[ConfigEntry]:
    """The effective configuration, secrets masked, with where each value came from."""

    def entry(name: str, value: str | int | None) -> ConfigEntry:
        return ConfigEntry(name, value, config.origins.get(name, "not set"))

    secret = config.s3_secret_key
    access = config.s3_access_key
    return [
        ConfigEntry("source", config.source, "how the configuration was found"),
        entry("store_url", config.store_url),
        entry("database_url", config.masked_database_url()),
        entry("local_root", str(config.local_root)),
        entry("host_name", config.host_name),
        entry("backup_store_url", config.backup_store_url),
        entry("s3_endpoint_url", config.s3_endpoint_url),
        entry("s3_region", config.s3_region),
        # Access key ids are not secret, but showing only their start is enough to tell
        # which one is in use.
        entry("s3_access_key", f"{access[:4]}****" if access else None),
        entry("s3_secret_key", "****" if secret else None),
        entry("cache_max_bytes", config.cache_max_bytes),
        *(entry(key, getattr(config, key)) for key in GC_DEFAULTS),
        entry("backup_keep", config.backup_keep),
    ]
