"""Where a repository keeps its catalog backups and its change journal.

Both live in the backup store (``backup_s3_bucket``, else the data store), under the data
store's key prefix: backups under ``<prefix>backups/``, journal entries under
``<prefix>journal/``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .stores import Store, open_store

if TYPE_CHECKING:
    from .config import Config

__all__ = ["BackupPlace", "open_backup_place", "place_in"]


class BackupPlace:
    """The backup store and the key prefixes of backups and of the journal."""

    def __init__(
        self, store: Store, data_prefix: str, *, owned: bool, key: str | None = None
    ) -> None:
        self.store = store
        #: ``backup_key``: seals manifests and journal entries (`repo.seal`); None: none.
        self.key = key
        #: Key prefix of the backups (one "directory" per backup, manifest last).
        self.backups_prefix = f"{data_prefix}backups/"
        #: Key prefix of the journal entries (one object per commit).
        self.journal_prefix = f"{data_prefix}journal/"
        self._owned = owned

    def location(self, key: str) -> str:
        """`key` as a URL a person can look up: the store's URL carries its own key
        prefix already, so that prefix is not repeated."""
        own = self.store.key_prefix
        return f"{self.store.url}/{key[len(own) :] if own and key.startswith(own) else key}"

    def close(self) -> None:
        if self._owned:
            self.store.close()


def open_backup_place(config: Config, data_store: Store) -> BackupPlace:
    """The backup place of `config`: ``backup_s3_bucket`` if set, else the data store."""
    prefix = data_store.key_prefix
    url = config.backup_store_url
    key = config.backup_key
    if url is None or url == f"s3://{data_store.bucket}":
        return BackupPlace(data_store, prefix, owned=False, key=key)
    return BackupPlace(open_store(url, config), prefix, owned=True, key=key)


def place_in(config: Config, store: Store) -> BackupPlace:
    """The copy of the backup place kept in another named store (`repo replicate` fills
    it; a restore falls back to it): under that store's own prefix."""
    return BackupPlace(store, store.key_prefix, owned=False, key=config.backup_key)
