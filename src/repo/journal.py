"""The change journal: one object per commit in the backup place, read back by restore.

An entry is named ``<prefix>journal/<13-digit ms>-<token>.json``, so listing the prefix
gives entries in commit-time order (by the committing host's clock). With ``backup_key``
each entry is sealed (`repo.seal`). Whatever is under the prefix is input to a restore:
`entry_problem` says why one may not be replayed (unreadable, another repository's or
none, unsigned, a row that breaks the catalog's rules), and restore skips and reports it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .catalog.replicas import Replica, check_replica
from .errors import RepoError
from .integrity import VERIFIED_WITH
from .paths import new_version_token, validate_path
from .permissions import MODE_BITS
from .seal import check_seal, seal
from .storage_classes import ARCHIVE_CLASSES
from .tags import validate_tags

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .backup_place import BackupPlace

__all__ = ["entry_problem", "read_entries", "safe_write", "write_entry"]

#: What a journal entry's seal is for (`repo.seal`).
PURPOSE = "journal"
_STATES = ("unpublished", "published", "expired")
_TIMES = ("created_at", "uploaded_at", "published_at", "expired_at", "purge_started_at")
#: Fields entries journaled before schema version 6 lack.
_LATER_TIMES = ("archived_at",)

logger = logging.getLogger(__name__)


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def write_entry(place: BackupPlace, entry: dict[str, Any], scratch: Path) -> str:
    """Store one journal entry; returns its key."""
    now = datetime.now(UTC)
    entry = seal({**entry, "committed_at": now.isoformat()}, place.key, PURPOSE)
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


def read_entries(
    place: BackupPlace, after: datetime
) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """Journal entries named as committed at or after `after`, oldest first: (key, the
    parsed document, or None if it is no JSON object). Nothing in them is checked yet:
    see `entry_problem`."""
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
            entry = None
        yield key, entry if isinstance(entry, dict) else None


def committed_at(entry: dict[str, Any]) -> datetime | None:
    """When `entry` says it was committed (aware), or None if it does not say so clearly."""
    try:
        when = datetime.fromisoformat(entry["committed_at"])
    except (KeyError, TypeError, ValueError):
        return None
    return when if when.tzinfo is not None else None


def entry_problem(
    entry: dict[str, Any] | None,
    *,
    repository_id: str,
    key: str | None,
    accept_unsigned: bool = False,
) -> str | None:
    """Why `entry` may not be replayed into the catalog of `repository_id`, or None.

    With a backup `key`, an entry must carry a valid seal (one without any seal passes
    only with `accept_unsigned`: entries written before the key was set).
    """
    if entry is None:
        return "not a JSON object"
    if entry.get("repository_id") != repository_id:
        return "written for another repository, or for none"
    if key is not None:
        verdict = check_seal(entry, key, PURPOSE)
        if verdict == "bad" or (verdict == "missing" and not accept_unsigned):
            return f"its seal is {verdict} (backup_key)"
    if committed_at(entry) is None:
        return "no valid committed_at"
    try:
        for doc in _list(entry, "files"):
            _check_file_doc(doc)
        for doc in _list(entry, "paths"):
            if not isinstance(doc, dict):
                raise ValueError("a path is not an object")
            validate_path(doc.get("path"))
            validate_tags(_list(doc, "tags"))
        for doc in _list(entry, "copies"):  # `catalog.replay.copies_entry`
            if not isinstance(doc, dict) or not _is_id(doc.get("file_id")):
                raise ValueError("a copy is not an object with a valid file_id")
            _check_replica_doc(doc["file_id"], {k: v for k, v in doc.items() if k != "file_id"})
        if not all(_is_id(i) for i in _list(entry, "purged")):
            raise ValueError("purged holds something that is no file id")
    except (RepoError, ValueError) as exc:
        return f"malformed: {exc}"
    return None


def _list(doc: dict[str, Any], name: str) -> list[Any]:
    value = doc.get(name, [])
    if not isinstance(value, list):
        raise ValueError(f"{name!r} is not a list")
    return value


def _is_id(value: object) -> bool:
    return type(value) is int and value > 0


_FILE_FIELDS = ("file_id", "path", "bucket", "key", "state", "md5", "size", "origin", *_TIMES)


def _check_file_doc(doc: object) -> None:
    """Raise ValueError (or a RepoError) unless `doc` is a version as `_row_doc` writes it."""
    if not isinstance(doc, dict):
        raise ValueError("a file is not an object")
    missing = [name for name in _FILE_FIELDS if name not in doc]
    if missing:
        raise ValueError(f"a file has no {missing[0]}")
    if not _is_id(doc.get("file_id")):
        raise ValueError("a file has no valid file_id")
    validate_path(doc.get("path"))
    validate_tags(_list(doc, "tags"))
    if not isinstance(doc.get("bucket"), str) or not isinstance(doc.get("key"), str):
        raise ValueError("a file has no bucket or key")
    if doc.get("state") not in _STATES:
        raise ValueError(f"a file has state {str(doc.get('state'))[:20]!r}")
    md5, size = doc.get("md5"), doc.get("size")
    if md5 is not None and not (
        isinstance(md5, str) and len(md5) == 32 and all(c in "0123456789abcdef" for c in md5)
    ):
        raise ValueError("a file has an md5 that is not 32 hex digits")
    if size is not None and not (type(size) is int and size >= 0):
        raise ValueError("a file has a size that is no count of bytes")
    if doc.get("verified_with") not in (None, *VERIFIED_WITH):
        raise ValueError("a file has an unknown verified_with")
    mode = doc.get("mode")
    if mode is not None and not (type(mode) is int and 0 <= mode <= MODE_BITS):
        raise ValueError("a file has a mode that is not permission bits (0o000 to 0o777)")
    if doc.get("storage_class") not in (None, *ARCHIVE_CLASSES):
        raise ValueError("a file has an unknown storage_class")
    if not isinstance(doc.get("origin"), str):
        raise ValueError("a file has no origin")
    for name in (*_TIMES, *_LATER_TIMES):
        value = doc.get(name)
        if value is not None and (
            not isinstance(value, str) or datetime.fromisoformat(value).tzinfo is None
        ):
            raise ValueError(f"a file's {name} is not a time with its zone")
    if doc["state"] == "published" and (md5 is None or size is None):
        raise ValueError("a published file has no md5 or size")
    for copy in _list(doc, "replicas"):
        _check_replica_doc(doc["file_id"], copy)


_REPLICA_KEYS = (
    "store", "key", "state", "size", "md5", "verified_with", "written_at", "verified_at", "lost_at"
)  # fmt: skip


def _check_replica_doc(file_id: int, doc: object) -> None:
    """Raise ValueError (or a RepoError) unless `doc` is a copy as the journal writes it."""
    if not isinstance(doc, dict) or set(doc) != set(_REPLICA_KEYS):
        raise ValueError("a file's copy is not an object with the fields of a copy")
    times: dict[str, datetime | None] = {}
    for name in ("written_at", "verified_at", "lost_at"):
        value = doc[name]
        if value is None and name != "written_at":
            times[name] = None
            continue
        when = datetime.fromisoformat(value) if isinstance(value, str) else None
        if when is None or when.tzinfo is None:
            raise ValueError(f"a copy's {name} is not a time with its zone")
        times[name] = when
    check_replica(
        Replica(
            file_id=file_id,
            store=doc["store"],
            key=doc["key"],
            state=doc["state"],
            size=doc["size"],
            md5=doc["md5"],
            verified_with=doc["verified_with"],
            written_at=times["written_at"],  # type: ignore[arg-type]
            verified_at=times["verified_at"],
            lost_at=times["lost_at"],
        )
    )


def safe_write(place: BackupPlace, entry: dict[str, Any], scratch: Path) -> None:
    """`write_entry`, logging instead of raising: the commit has happened already."""
    try:
        key = write_entry(place, entry, scratch)
    except (RepoError, OSError) as exc:
        logger.error(
            "committed, but could not write the change journal (%s); this commit is only "
            "recoverable from the next backup",
            exc,
        )
    else:
        logger.info("change journal entry %s", key)
