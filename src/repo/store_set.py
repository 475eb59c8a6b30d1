"""A repository's stores by name, opened on first use, and the one way from a catalog row
to a store and key.

The default store (`store`, named `store_name`) and those `stores` names (docs/replicas.md).
What the catalog says about where a copy is, is input: a store name the configuration does
not have, or a key that is not the one this repository makes for the version's path in that
store, is `UntrustedDataError`, and nothing is touched.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from .errors import UntrustedDataError
from .named_stores import place
from .paths import DATA_PREFIX, check_key
from .stores import Store, open_store
from .urls import mask_url

if TYPE_CHECKING:
    from .catalog.records import FileRecord
    from .catalog.replicas import Replica
    from .config import Config

__all__ = ["StoreSet"]

logger = logging.getLogger(__name__)


class StoreSet:
    """The configured stores of one session, by name. Safe in worker threads."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._named: dict[str, Store] = {}
        self._lock = threading.Lock()

    def named(self, name: str) -> Store:
        """The configured store `name`, opened on first use. A name the configuration
        does not have is `UntrustedDataError` (names reach here from the catalog)."""
        store = self._named.get(name)
        if store is not None:
            return store
        if name not in self.config.store_names:
            raise UntrustedDataError(
                f"store {name[:40]!r} is not configured in {self.config.source}; "
                "nothing in it was touched",
                hint="name it in 'stores' again (docs/replicas.md), or, if it is gone, "
                "`repo store decommission NAME`",
            )
        with self._lock:
            store = self._named.get(name)
            if store is None:
                cfg = self.config.for_store(name)
                store = open_store(cfg.store_url, cfg)
                self._named[name] = store
                if name != self.config.store_name:
                    logger.info("store %s: %s", name, mask_url(store.url))
        return store

    @property
    def default(self) -> Store:
        """The store new versions go to."""
        return self.named(self.config.store_name)

    def use_default(self, store: Store) -> Store | None:
        """Make `store` the default store; returns the one it replaces, if any was open."""
        with self._lock:
            old = self._named.get(self.config.store_name)
            self._named[self.config.store_name] = store
        return old

    def for_path(self, path: str) -> Store:
        """The store a new version of `path` goes to: `placement`'s, else the default."""
        return self.named(place(path, self.config.placement, self.config.store_name))

    def opened(self) -> list[Store]:
        """The stores opened so far."""
        with self._lock:
            return list(self._named.values())

    def by_bucket(self) -> dict[str, Store]:
        """Every configured store, by its bucket (two stores never share one)."""
        return {store.bucket: store for store in map(self.named, self.config.store_names)}

    def home_name(self, rec: FileRecord) -> str | None:
        """The name of the configured store `rec` was created in (by its bucket), or None
        when no configured store has that bucket (its store was replaced)."""
        for name in self.config.store_names:
            if self.named(name).bucket == rec.bucket:
                return name
        return None

    def locate(self, rec: FileRecord) -> Store:
        """The store holding `rec`'s own object (``files.bucket``, ``files.key``), checked:
        one of this repository's stores, and the key it makes for the version's path."""
        name = self.home_name(rec)
        if name is None:
            raise UntrustedDataError(
                f"file {rec.file_id} ({rec.path!r}) is recorded in {rec.bucket[:120]!r}, not "
                f"in this repository's store {self.default.bucket!r}; it was not touched"
            )
        store = self.named(name)
        check_key(rec.key, key_prefix=store.key_prefix, path=rec.path)
        return store

    def check_own_key(self, rec: FileRecord) -> str:
        """`rec.key` if it is the key this repository makes for the version in its own
        store, or (its store replaced) under some configured store's prefix: a key that
        may name a file in this host's cache."""
        name = self.home_name(rec)
        names = [name] if name is not None else list(self.config.store_names)
        problem: UntrustedDataError | None = None
        for each in names:
            try:
                return check_key(rec.key, key_prefix=self.named(each).key_prefix, path=rec.path)
            except UntrustedDataError as exc:
                problem = problem or exc
        assert problem is not None  # noqa: S101 - a configuration names at least one store
        raise problem

    def copy_key(self, rec: FileRecord, name: str) -> str:
        """The key of `rec`'s copy in store `name`: that store's prefix, then the version's
        own ``data/<path>~<token>``, checked like a key read from the catalog."""
        store = self.named(name)
        token = rec.key.rpartition("~")[2] if isinstance(rec.key, str) else ""
        key = f"{store.key_prefix}{DATA_PREFIX}{rec.path}~{token}"
        return check_key(key, key_prefix=store.key_prefix, path=rec.path)

    def locate_copy(self, rec: FileRecord, copy: Replica) -> Store:
        """The store holding `copy` of `rec`, checked: a configured store, and the key this
        repository makes there for the version (`copy_key`)."""
        if copy.file_id != rec.file_id:
            raise UntrustedDataError(
                f"a copy of file {copy.file_id} was handed out as one of file {rec.file_id}"
            )
        store = self.named(copy.store)
        if copy.key != self.copy_key(rec, copy.store):
            raise UntrustedDataError(
                f"the copy of file {rec.file_id} ({rec.path!r}) in store {copy.store!r} is "
                f"recorded at {copy.key[:120]!r}, not at this repository's key for it; "
                "it was not touched"
            )
        return store
