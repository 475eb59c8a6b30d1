"""The configuration of several named stores: `stores`, `placement` and their rules.

A repository's stores are the default one (the `store` setting, named `store_name`) and
those `stores` names ([replicas.md](../../docs/replicas.md)). A store's name is its
identity in the catalog: the URL behind a name may change (a lost bucket replaced), the
name may not. This module checks the JSON values; `repo.config` builds the `Config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from .errors import ConfigError
from .settings import BY_KEY, STORE_NAME_PATTERN, check_type, check_value
from .urls import mask_url, parse_sftp_url

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "DEFAULT_STORE_NAME",
    "STORE_SETTINGS",
    "StoreSpec",
    "bucket_of",
    "check_store_name",
    "check_store_url",
    "describe_placement",
    "describe_stores",
    "parse_placement",
    "parse_stores",
    "place",
]

DEFAULT_STORE_NAME = "main"
#: The settings a store object may give for itself; the rest are the top level's.
STORE_SETTINGS = ("s3_endpoint_url", "s3_region", "s3_access_key", "s3_secret_key")


@dataclass(frozen=True, kw_only=True, slots=True)
class StoreSpec:
    """One named store: its URL and the S3 settings it gives for itself (None: the
    top-level setting applies)."""

    name: str
    url: str
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        endpoint = f", endpoint={mask_url(self.s3_endpoint_url)!r}" if self.s3_endpoint_url else ""
        return f"StoreSpec({self.name!r}, {self.url!r}{endpoint})"


def check_store_name(name: object, where: str) -> str:
    """`name` if it may name a store (1-32 of a-z 0-9 _ -, a letter first)."""
    if not isinstance(name, str) or not STORE_NAME_PATTERN.fullmatch(name):
        raise ConfigError(
            f"{where}: {str(name)[:40]!r} is not a store name",
            hint="use 1-32 characters of a-z, 0-9, '_' and '-', starting with a letter",
        )
    return name


def check_store_url(store: str, where: str) -> str:
    """The normal form of a store URL (``s3://bucket/prefix``, ``file:///abs/path`` or
    ``sftp://user@host[:port]/abs/path``)."""
    parts = urlsplit(store)
    if parts.scheme == "sftp" and ":" not in parts.netloc.rpartition("@")[0]:
        # A login name before the '@', never a password (refused below, unechoed).
        try:
            parse_sftp_url(store)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc.message}", hint=exc.hint) from None
        return store.rstrip("/")
    if "@" in parts.netloc:
        # Never echoed: what comes before the '@' is likely a key and a secret.
        raise ConfigError(
            f"{where} must not carry credentials (user:password@)",
            hint="put them in 's3_access_key' and 's3_secret_key', or the environment",
        )
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ConfigError(f"{where} has no bucket: {store!r}")
        return store.rstrip("/")
    if parts.scheme == "file":
        path = unquote(parts.path)
        if parts.netloc not in ("", "localhost") or not path.startswith("/"):
            raise ConfigError(f"{where} must be file:///absolute/path, got {store!r}")
        from pathlib import Path

        return Path(path).as_uri()
    raise ConfigError(f"{where} must start with s3://, file:// or sftp://, got {store!r}")


def bucket_of(url: str) -> str:
    """What two stores may not share: the S3 bucket, or the directory."""
    parts = urlsplit(url)
    if parts.scheme == "s3":
        return f"s3://{parts.netloc}"
    return url


def parse_stores(
    value: Any, *, source: str, default_name: str, default_url: str
) -> dict[str, StoreSpec]:
    """The `stores` setting (name -> URL or object), checked; the default store is not in it."""
    if value is None:
        return {}
    check_type(f"{source}: key 'stores'", value, (dict,), secret=False)
    specs: dict[str, StoreSpec] = {}
    seen = {bucket_of(default_url): default_name}
    for name, entry in value.items():
        where = f"{source}: key 'stores.{check_store_name(name, f'{source}: key stores')}'"
        if name == default_name:
            raise ConfigError(
                f"{where} names the default store ({default_name!r}) again",
                hint="`store` is that one; give this store another name",
            )
        spec = _spec(name, entry, where)
        other = seen.setdefault(bucket_of(spec.url), name)
        if other != name:
            raise ConfigError(
                f"{where} is in the same bucket as store {other!r}",
                hint="copies in one bucket are lost together: give each store its own bucket",
            )
        specs[name] = spec
    return specs


def _spec(name: str, entry: Any, where: str) -> StoreSpec:
    check_type(where, entry, (str, dict), secret=False)
    if isinstance(entry, str):
        return StoreSpec(name=name, url=check_store_url(entry, where))
    unknown = sorted(set(entry) - {"url", *STORE_SETTINGS})
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}",
            hint="known keys: url, " + ", ".join(STORE_SETTINGS),
        )
    if "url" not in entry:
        raise ConfigError(f"{where}: the store's 'url' is missing")
    check_type(f"{where[:-1]}.url'", entry["url"], (str,), secret=False)
    for key in STORE_SETTINGS:
        if key in entry:
            check_value(BY_KEY[key], entry[key], f"{where[:-1]}.{key}'")
    return StoreSpec(
        name=name,
        url=check_store_url(entry["url"], f"{where[:-1]}.url'"),
        **{key: entry[key] for key in STORE_SETTINGS if key in entry},
    )


def parse_placement(value: Any, *, source: str, names: set[str]) -> dict[str, str]:
    """The `placement` setting (path prefix -> store name), checked."""
    if value is None:
        return {}
    check_type(f"{source}: key 'placement'", value, (dict,), secret=False)
    for prefix, name in value.items():
        where = f"{source}: key 'placement.{prefix[:60]}'"
        if not prefix or prefix.startswith("/") or not prefix.isprintable():
            raise ConfigError(
                f"{where}: a prefix must be the start of a repository path",
                hint='e.g. "raw/": paths have no leading slash',
            )
        check_type(where, name, (str,), secret=False)
        if name not in names:
            raise ConfigError(
                f"{where} names store {name[:40]!r}, which is not configured",
                hint="configured stores: " + ", ".join(sorted(names)),
            )
    return dict(value)


def place(path: str, placement: Mapping[str, str], default: str) -> str:
    """The store a new version of `path` goes to: the longest matching prefix's."""
    best = ""
    for prefix in placement:
        if path.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return placement[best] if best else default


def describe_stores(stores: Mapping[str, StoreSpec]) -> str | None:
    """`stores` for `repo config --show`: names and masked URLs, never a secret."""
    if not stores:
        return None
    return ", ".join(f"{name}={mask_url(spec.url)}" for name, spec in stores.items())


def describe_placement(placement: Mapping[str, str]) -> str | None:
    if not placement:
        return None
    return ", ".join(f"{prefix}={name}" for prefix, name in placement.items())
