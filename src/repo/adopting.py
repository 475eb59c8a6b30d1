"""A blind restore's last step: objects of ours that no catalog row names, found in every
store (docs/disaster-recovery.md, docs/replicas.md).

They are what commits whose journal entries were lost wrote. An object whose key is a
copy of a version the catalog has (its path and token, at the key this repository makes
for that version in this store) is recorded as that version's copy, ``writing``: not yet
counted, and checked by the next `repo replicate`, which keeps it if it holds the
version's bytes. Any other object whose metadata names a path this repository makes
that key for becomes an unpublished version, hashed (never taken from its ETag), for a
person to publish. Nothing is deleted; what is not adopted is left for `gc --orphans`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .errors import RepoError, StoreError
from .integrity import READ_BACK
from .paths import DATA_PREFIX, check_key
from .stores.base import hash_only

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .catalog import Catalog, FileRecord
    from .session import Session
    from .stores import Store

__all__ = ["adopt_unrecorded"]

logger = logging.getLogger(__name__)


def adopt_unrecorded(
    session: Session, catalog: Catalog, adopted: list[str], copies: list[str]
) -> None:
    """Adopt the unrecorded objects of every store: their keys go to `adopted` (new
    unpublished versions) or `copies` (copies of known versions). A store that cannot
    be listed is passed over (logged) when there are others; alone, its error is the
    restore's."""
    several = bool(session.config.stores)
    for name in session.config.store_names:
        try:
            _adopt_in(session, catalog, name, adopted, copies)
        except StoreError as exc:
            if not several:
                raise
            logger.warning("restore: objects in store %s not looked at: %s", name, exc)


def _adopt_in(
    session: Session, catalog: Catalog, name: str, adopted: list[str], copies: list[str]
) -> None:
    store = session.stores.named(name)
    batch = list(store.list(store.key_prefix + DATA_PREFIX))
    keys = [i.key for i in batch]
    # Stores may share key prefixes (directories): a key is known here only as a version
    # whose own object is in this store's bucket, or as a copy recorded in this store.
    own = {k for k, rec in catalog.files_by_key(keys).items() if rec.bucket == store.bucket}
    known = own | catalog.known_copy_keys(name, keys)
    catalog.end_read()
    for info in batch:
        if info.key in known:
            continue
        try:
            info = store.head(info.key)
        except RepoError:
            continue
        path = info.metadata.get("repo-path") or ""
        try:
            check_key(info.key, key_prefix=store.key_prefix, path=path)
        except RepoError as exc:
            logger.warning("object %s not adopted: %s", info.key[:200], exc)
            continue
        version = _copy_of(session, catalog, name, info.key)
        if version is not None:
            if catalog.claim_replica(version.file_id, name, info.key, when=datetime.now(UTC)):
                copies.append(info.key)
            continue
        _adopt_version(catalog, store, info.key, info.size, path, info.metadata, adopted)
    catalog.commit()


def _copy_of(session: Session, catalog: Catalog, name: str, key: str) -> FileRecord | None:
    """The version whose copy in store `name` is at `key` (same path and token, its own
    object in another store), if the catalog has it."""
    relative = key[len(session.stores.named(name).key_prefix) :]
    own_keys = [
        session.stores.named(other).key_prefix + relative
        for other in session.config.store_names
        if other != name
    ]
    try:
        found = catalog.files_by_key(own_keys)
    finally:
        catalog.end_read()
    for rec in found.values():
        try:
            if session.stores.copy_key(rec, name) == key:
                return rec
        except RepoError:
            continue
    return None


def _adopt_version(
    catalog: Catalog,
    store: Store,
    key: str,
    size: int | None,
    path: str,
    meta: Mapping[str, str],
    adopted: list[str],
) -> None:
    # Hashed, never taken from the ETag: an ETag that looks like an md5 may be none
    # (SSE-KMS), and a version recorded with a wrong md5 could never be read.
    got = hash_only(store.iter_bytes(key))
    if got.size != size:
        return  # changed under us: not adopted on a guess
    # Created "now": an adopted version waits `unpublished_ttl_seconds` from its
    # adoption for a person to publish it, whatever its object's metadata says.
    now = datetime.now(UTC)
    origin = meta.get("repo-origin", "")
    rec = catalog.add_file(
        path=path,
        bucket=store.bucket,
        key=key,
        origin=origin if 0 < len(origin) <= 200 and origin.isprintable() else "unknown",
        created_at=now,
    )
    catalog.mark_uploaded(
        rec.file_id, md5=got.md5, size=got.size, when=now, verified_with=READ_BACK
    )
    adopted.append(key)
