"""Load and validate configuration.

The format is the seed's JSON document (``~/.repo_cfg``). Where it comes from, in order:
an explicit path or dict, ``$REPO_CFG``, ``~/.repo_cfg``, else the embedded default (a SQLite
catalog and a local-directory store under ``$REPO_HOME`` or the user data directory).

Errors name the source and the key and never echo a secret value. Every URL is shown
through `repo.settings.mask_url`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import platformdirs

from .errors import ConfigError
from .named_stores import (
    StoreSpec,
    check_store_url,
    describe_placement,
    describe_stores,
    parse_placement,
    parse_stores,
)
from .settings import (
    BY_KEY,
    SETTINGS,
    Mask,
    Setting,
    check_type,
    check_value,
    default_of,
    default_of_text,
    value_from_env,
)
from .storage_classes import DEFAULT_ARCHIVE_CLASS
from .urls import (
    mask_url,
    split_url_credentials,
    url_has_secret,
    url_is_ambiguous,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = ["Config", "ConfigEntry", "describe_config", "load_config"]

logger = logging.getLogger(__name__)

#: Garbage-collection settings and their defaults (all non-negative integers).
GC_DEFAULTS: dict[str, int] = {
    key: default_of(key)
    for key in (
        "unpublished_ttl_seconds",
        "expired_ttl_seconds",
        "orphan_grace_seconds",
        "backups_before_purge",
    )
}
#: The keys of the `database` object, when it is not a URL.
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
    """Validated configuration. Secrets are masked in `repr`.

    One attribute per `repo.settings.Setting.attribute` (a test keeps them in step), plus
    where the configuration came from.
    """

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
    unpublished_ttl_seconds: int = default_of("unpublished_ttl_seconds")
    expired_ttl_seconds: int = default_of("expired_ttl_seconds")
    orphan_grace_seconds: int = default_of("orphan_grace_seconds")
    backups_before_purge: int = default_of("backups_before_purge")
    backup_keep: int = default_of("backup_keep")
    s3_timeout_seconds: int = default_of("s3_timeout_seconds")
    s3_sse: str | None = None
    s3_sse_kms_key_id: str | None = None
    s3_upload_check: str = "read-back"
    archive_class: str = DEFAULT_ARCHIVE_CLASS
    archive_early_deletion: str = "warn"
    retention_timezone: str = "UTC"
    backup_key: str | None = field(default=None, repr=False)
    ssh_key_file: Path | None = None
    ssh_known_hosts: Path | None = None
    store_name: str = default_of_text("store_name")
    #: The other stores, by name (the default one, `store_url`, is not among them).
    stores: Mapping[str, StoreSpec] = field(default_factory=dict)
    numcopies: int = default_of("numcopies")
    mincopies: int = default_of("mincopies")
    replicate_on_publish: str = default_of_text("replicate_on_publish")
    #: Path prefix -> store name, for new versions.
    placement: Mapping[str, str] = field(default_factory=dict)
    #: Where each field's value came from (a key of the source, or a default).
    origins: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_embedded(self) -> bool:
        return self.source == "embedded default"

    @property
    def store_names(self) -> tuple[str, ...]:
        """Every store's name, the default store's first."""
        return (self.store_name, *self.stores)

    @property
    def copies_on_publish(self) -> bool:
        """Whether a commit that publishes versions copies them before it returns
        (``replicate_on_publish: now``, with copies to make)."""
        return self.replicate_on_publish == "now" and self.numcopies > 1

    def for_store(self, name: str) -> Config:
        """This configuration as seen by store `name`: its URL as `store_url`, and the
        S3 settings it gives for itself in place of the top level's."""
        if name == self.store_name:
            return self
        spec = self.stores[name]
        changes: dict[str, Any] = {"store_url": spec.url}
        for key in ("s3_endpoint_url", "s3_region", "s3_access_key", "s3_secret_key"):
            if getattr(spec, key) is not None:
                changes[key] = getattr(spec, key)
        return dataclasses.replace(self, **changes)

    def masked_database_url(self) -> str:
        return mask_url(self.database_url)

    def __repr__(self) -> str:
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.repr}
        del shown["origins"]
        shown["database_url"] = self.masked_database_url()
        if self.s3_endpoint_url is not None:
            shown["s3_endpoint_url"] = mask_url(self.s3_endpoint_url)
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
        "embedded default under $REPO_HOME" if os.environ.get("REPO_HOME") else "embedded default"
    )
    # Built, not parsed: the paths need no checking, and a home with URL-special characters
    # must not be read as a URL.
    values: dict[str, Any] = {
        "local_root": home / "local",
        "store_url": (home / "store").as_uri(),
        "database_url": f"sqlite:///{home / 'catalog.db'}",
    }
    return _complete(values, dict.fromkeys(values, where), source="embedded default")


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
    urls = (
        config.database_url,
        config.s3_endpoint_url,
        *(spec.s3_endpoint_url for spec in config.stores.values()),
    )
    has_secret = (
        config.s3_secret_key is not None
        or any(spec.s3_secret_key is not None for spec in config.stores.values())
        or config.backup_key is not None
        or any(url is not None and url_has_secret(url) for url in urls)
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
    unknown = sorted(set(data) - set(BY_KEY))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(map(repr, unknown))}",
            hint="check the spelling; known keys: " + ", ".join(sorted(BY_KEY)),
        )
    for key, value in data.items():
        check_value(BY_KEY[key], value, f"{source}: key '{key}'")
    _check_together(data, source)

    origin = f"{source} ({chosen_by})" if chosen_by else source
    # The two keys that are more than a value: either store key makes `store_url`, and
    # the database may be an object.
    values: dict[str, Any] = {
        "store_url": _store_url(data, source),
        "database_url": _database_url(data, source, base),
    }
    values.update(_replication(data, source, values["store_url"]))
    origins: dict[str, str] = {}
    for setting in SETTINGS:
        if setting.key in data:
            origins[setting.attribute] = f"{origin}: {setting.key}"
            values.setdefault(setting.attribute, _convert(setting, data[setting.key], base))
    return _complete(values, origins, source=source)


def _check_together(data: Mapping[str, Any], source: str) -> None:
    """The rules that span keys (each key's own type and rule are already checked)."""
    if data.get("store") and data.get("default_s3_bucket"):
        raise ConfigError(
            f"{source}: keys 'store' and 'default_s3_bucket' both name a store",
            hint="keep one of them",
        )
    if "s3_sse_kms_key_id" in data and data.get("s3_sse") != "aws:kms":
        raise ConfigError(
            f"{source}: key 's3_sse_kms_key_id' needs 's3_sse' set to 'aws:kms'",
            hint='set "s3_sse": "aws:kms", or remove \'s3_sse_kms_key_id\'',
        )


def _replication(data: Mapping[str, Any], source: str, store_url: str) -> dict[str, Any]:
    """`stores` and `placement`, checked against each other and the copy counts."""
    name = data.get("store_name", default_of_text("store_name"))
    stores = parse_stores(
        data.get("stores"), source=source, default_name=name, default_url=store_url
    )
    placement = parse_placement(data.get("placement"), source=source, names={name, *stores})
    numcopies = data.get("numcopies", default_of("numcopies"))
    mincopies = data.get("mincopies", default_of("mincopies"))
    if mincopies > numcopies:
        raise ConfigError(
            f"{source}: key 'mincopies' ({mincopies}) is more than 'numcopies' ({numcopies})",
            hint="the floor must not be above the goal: lower 'mincopies' or raise 'numcopies'",
        )
    if numcopies > 1 + len(stores):
        raise ConfigError(
            f"{source}: key 'numcopies' asks for {numcopies} copies in distinct stores, "
            f"but {1 + len(stores)} {'is' if not stores else 'are'} configured",
            hint="name more stores in 'stores', or lower 'numcopies'",
        )
    return {"stores": stores, "placement": placement}


def _convert(setting: Setting, value: Any, base: Path) -> Any:
    """A setting's `Config` value from its JSON value; relative paths resolve against `base`."""
    if setting.key == "local_root":
        return _resolve(value, base)
    if setting.key in ("ssh_key_file", "ssh_known_hosts"):
        return _resolve(value, base)
    if setting.key == "backup_s3_bucket":
        return f"s3://{value}" if value else None
    return value


def store_key(store_url: str) -> str:
    """A directory name for a store: readable, and distinct for distinct stores."""
    parts = urlsplit(store_url)
    words = re.sub(r"[^a-z0-9]+", "-", f"{parts.netloc}{parts.path}".lower()).strip("-")
    digest = hashlib.sha256(store_url.encode()).hexdigest()[:8]
    return f"{parts.scheme}-{words[-40:].lstrip('-')}-{digest}"


#: Defaults that depend on the machine or on other settings; the table's `default_text`
#: says what they are. Each repository gets a `local_root` of its own: two must never
#: share a cache (pruning one would drop the other's copies).
_COMPUTED_DEFAULTS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "local_root": lambda values: repo_home() / "local" / store_key(values["store_url"]),
    "host_name": lambda values: _default_host_name(),
}


def _complete(values: dict[str, Any], origins: dict[str, str], *, source: str) -> Config:
    """Apply environment overrides, then defaults, and build the `Config`."""
    for setting in SETTINGS:
        name = setting.attribute
        text = os.environ.get(setting.env) if setting.env else None
        if text:  # an empty variable counts as unset, as with $REPO_CFG
            values[name] = _convert(setting, value_from_env(setting, text), Path.cwd())
            origins[name] = f"${setting.env}"
        elif name in values:
            continue
        elif setting.default is not None:
            values[name] = setting.default
            origins[name] = "default"
        elif name in _COMPUTED_DEFAULTS:
            values[name] = _COMPUTED_DEFAULTS[name](values)
            origins[name] = "default: " + setting.default_text.replace("`", "")
    return Config(source=source, origins=origins, **values)


def _resolve(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _store_url(data: Mapping[str, Any], source: str) -> str:
    store: str | None = data.get("store")
    bucket: str | None = data.get("default_s3_bucket")
    if bucket:  # checked already: a bare bucket name, and no `store` beside it
        return f"s3://{bucket}"
    if not store:
        raise ConfigError(
            f"{source}: no store configured",
            hint="set 'store' (s3://bucket/prefix, file:///path or sftp://user@host/path) "
            "or 'default_s3_bucket'",
        )
    return check_store_url(store, f"{source}: key 'store'")


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
            check_type(
                f"{source}: key 'database.{key}'",
                value,
                _DATABASE_KEYS[key],
                secret=key == "password",
            )
        if "database" not in db:
            raise ConfigError(f"{source}: key 'database.database' (the database name) is missing")
        from sqlalchemy.engine import URL  # loaded by a configured database only

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
    url = _parse_database_url(db, source)
    backend = url.get_backend_name()
    if backend == "postgresql":
        url = _password_out_of_query(url.set(drivername="postgresql+psycopg"))
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


def _parse_database_url(db: str, source: str) -> URL:
    """`db` parsed, its user info read as `split_url_credentials` reads it.

    SQLAlchemy ends the user info at the first '@': a password holding '@' would send its
    tail to the resolver as the host name, and show it wherever the URL is shown. Parsed
    here, the URL is stored with the password percent-encoded, which every reader agrees on.
    """
    if url_is_ambiguous(db):
        raise ConfigError(
            f"{source}: key 'database' has an '@' after its user info, where the host or "
            "the query should be",
            hint="percent-encode '@' as %40 and '?' as %3F in the password",
        )
    # SQLAlchemy's URL parser, loaded here: the embedded default builds its URL, and a
    # command that opens no catalog (`repo config --show` on it) should not pay for it.
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    head, user, password, rest = split_url_credentials(db)
    try:
        url = make_url(head + rest)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise ConfigError(
            f"{source}: key 'database' is not a database URL",
            hint="use postgresql://user:password@host:port/name or sqlite:///path/catalog.db",
        ) from None
    if user is None:
        return url
    return url.set(username=unquote(user), password=None if password is None else unquote(password))


def _password_out_of_query(url: URL) -> URL:
    """The query's ``password`` moved into the user info, where every renderer hides it.

    psycopg lets the query's password win over the user info's, so this changes nothing
    for the connection. Without a user name the user info cannot hold it: it stays (and
    `mask_url` hides it).
    """
    password = url.query.get("password")
    if url.username is None or not isinstance(password, str):
        return url
    return url.difference_update_query(["password"]).set(password=password)


def _default_host_name() -> str:
    return socket.gethostname() or "localhost"


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    """One effective setting for display: secrets already masked."""

    name: str
    value: str | int | None
    origin: str


def describe_config(config: Config) -> list[ConfigEntry]:
    """The effective configuration, secrets masked, with where each value came from.

    One entry per `Config` attribute that a setting sets, in the order of `SETTINGS`."""
    entries = [ConfigEntry("source", config.source, "how the configuration was found")]
    shown: set[str] = set()
    for setting in SETTINGS:
        name = setting.attribute
        if name not in shown:  # `store` and `default_s3_bucket` both set `store_url`
            shown.add(name)
            value = _masked(setting, getattr(config, name))
            entries.append(ConfigEntry(name, value, config.origins.get(name, "not set")))
    return entries


def _masked(setting: Setting, value: object) -> str | int | None:
    if value is None or isinstance(value, int):
        return value
    if setting.key == "stores":
        return describe_stores(value)  # type: ignore[arg-type]
    if setting.key == "placement":
        return describe_placement(value)  # type: ignore[arg-type]
    text = str(value)
    if setting.mask is Mask.ALL:
        return "****"
    if setting.mask is Mask.START:
        return f"{text[:4]}****"
    if setting.mask is Mask.PASSWORD:
        return mask_url(text)
    return text
