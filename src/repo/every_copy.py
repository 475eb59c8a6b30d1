"""Every copy of versions about to be deleted, by store, each checked: what garbage
collection and `repo purge` delete (docs/replicas.md, "GC and purge")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import UntrustedDataError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .catalog import FileRecord
    from .session import Session
    from .stores import Store

__all__ = ["every_copy"]


def every_copy(
    session: Session, records: Sequence[FileRecord]
) -> tuple[list[FileRecord], list[tuple[Store, list[str]]], list[str]]:
    """The records whose every copy is in a configured store at this repository's key;
    those copies' keys by store; and why each other record is not ours to delete.

    With several stores, a version's own copy in a bucket no configured store has (its
    store replaced) is in no store: nothing to delete there. A copy in a store no longer
    configured holds its version back: forgetting it would leave its object unrecorded.
    """
    several = bool(session.config.stores)
    replicas = session.catalog.replicas_of(r.file_id for r in records) if several else {}
    if several:
        session.catalog.end_read()
    kept: list[FileRecord] = []
    refused: list[str] = []
    by_store: dict[str, tuple[Store, list[str]]] = {}
    for rec in records:
        found: list[tuple[str, Store, str]] = []
        try:
            home = session.stores.home_name(rec) if several else session.config.store_name
            if home is not None:
                found.append((home, session.locate(rec), rec.key))
            for copy in replicas.get(rec.file_id, []):
                found.append((copy.store, session.locate_copy(rec, copy), copy.key))
        except UntrustedDataError as exc:
            refused.append(exc.message)
            continue
        kept.append(rec)
        for name, store, key in found:
            by_store.setdefault(name, (store, []))[1].append(key)
    return kept, list(by_store.values()), refused
