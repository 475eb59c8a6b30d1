"""Where backups and the change journal live, and writing and reading journal entries.

Both go to the backup store (``backup_s3_bucket``, else the data store), under the data
store's prefix: ``<prefix>backups/`` and ``<prefix>journal/``. A journal entry is one
object per commit, named ``<prefix>journal/<13-digit ms>-<token>.json``, so listing the
prefix gives entries in commit-time order (by the committing host's clock).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .config import Config
from .errors import RepoError
from .paths import new_version_token
from .stores import Store, open_store

__all__ = ["BackupPlace", "backup_place", "read_entries", "write_entry"]

logger = logging.getLogger(__name__)


class BackupPlace:
    """The backup store and the key prefixes of backups and of the journal."""

    def __init__(self, store: Store, data_prefix: str, owned: bool) -> None:
        self.store = store
        self.backups = f"{data_prefix}backups/"
        self.journal = f"{data_prefix}journal/"
        self._owned = owned

    def close(self) -> None:
        if self._owned:
            self.store.close()


def backup_place(config: Config, data_store: Store) -> BackupPlace:
    """The backup store of `config`: ``backup_s3_bucket`` if set, else the data store."""
    prefix = data_store.key_prefix
    url = config.backup_store_url
    if url is None or url == f"s3://{data_store.bucket}":
        return BackupPlace(data_store, prefix, owned=False)
    return BackupPlace(open_store(url, config), prefix, owned=True)


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def write_entry(place: BackupPlace, entry: dict[str, Any], scratch: Path) -> str:
    """Store one journal entry; returns its key."""
    now = datetime.now(UTC)
    entry = {**entry, "committed_at": now.isoformat()}
    key = f"{place.journal}{_ms(now):013d}-{new_version_token()}.json"
    scratch.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=scratch, prefix=".journal-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            # dumps, not dump: only the one-shot encoder is the C one (10x faster on
            # the entry of a large tree).
            out.write(json.dumps(entry, separators=(",", ":")))
        place.store.put_file(key, Path(tmp))
    finally:
        os.unlink(tmp)
    return key


def read_entries(place: BackupPlace, after: datetime) -> Iterator[tuple[str, dict[str, Any]]]:
    """Journal entries committed after `after`, oldest first: (key, entry)."""
    floor = _ms(after)
    keys = []
    for info in place.store.list(place.journal):
        name = info.key[len(place.journal) :]
        stamp = name.split("-", 1)[0]
        if stamp.isdigit() and int(stamp) >= floor:
            keys.append(info.key)
    for key in sorted(keys):
        data = b"".join(place.store.iter_bytes(key))
        try:
            entry = json.loads(data)
        except ValueError:
            logger.warning("skipping unreadable journal entry %s", key)
            continue
        committed = datetime.fromisoformat(entry.get("committed_at", ""))
        if committed > after:
            yield key, entry


def safe_write(place: BackupPlace, entry: dict[str, Any], scratch: Path) -> None:
    """`write_entry`, logging instead of raising: the commit has happened already."""
    try:
        write_entry(place, entry, scratch)
    except (RepoError, OSError) as exc:
        logger.error(
            "committed, but could not write the change journal (%s); this commit is only "
            "recoverable from the next backup",
            exc,
        )
