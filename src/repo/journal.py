"""The change journal: one object per commit in the backup place, read back by restore.

An entry is named ``<prefix>journal/<13-digit ms>-<token>.json``, so listing the prefix
gives entries in commit-time order (by the committing host's clock).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import RepoError
from .paths import new_version_token

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .backup_place import BackupPlace

__all__ = ["read_entries", "safe_write", "write_entry"]

logger = logging.getLogger(__name__)


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def write_entry(place: BackupPlace, entry: dict[str, Any], scratch: Path) -> str:
    """Store one journal entry; returns its key."""
    now = datetime.now(UTC)
    entry = {**entry, "committed_at": now.isoformat()}
    key = f"{place.journal_prefix}{_ms(now):013d}-{new_version_token()}.json"
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
    for info in place.store.list(place.journal_prefix):
        name = info.key[len(place.journal_prefix) :]
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
