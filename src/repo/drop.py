"""Dropping one copy of a version from one store, never below `mincopies`.

The catalog takes the copy out of the counted ones first, under a lock on the version's
row (`Catalog.claim_drop`: concurrent drops take turns and each counts without the
others' copies), that is committed, and only then is the object deleted and, for a copy
in another store than the version's own, its row forgotten. A kill after the commit
leaves a ``lost`` row naming the object: GC deletes it with the version, `repo
replicate` writes it again if the policy wants it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .session import Session

__all__ = ["drop_copy"]

logger = logging.getLogger(__name__)


def drop_copy(session: Session, file_id: int, store_name: str) -> int:
    """Delete version `file_id`'s copy in store `store_name`; returns the verified copies
    left. `StateError` if that would go below ``mincopies``."""
    session.require_clean("dropping a copy")
    catalog = session.catalog
    try:
        rec = catalog.get(file_id)
        rows = {c.store: c for c in catalog.replicas_of([file_id]).get(file_id, [])}
    finally:
        catalog.end_read()
    home = session.stores.home_name(rec)
    copy = rows.get(store_name)
    if copy is not None:
        store, key = session.locate_copy(rec, copy), copy.key
    elif store_name == home:
        store, key = session.locate(rec), rec.key
    else:
        store, key = session.stores.named(store_name), session.stores.copy_key(rec, store_name)
    left = catalog.claim_drop(
        file_id,
        store_name,
        key,
        home=home,
        mincopies=session.config.mincopies,
        when=datetime.now(UTC),
    )
    session.commit()  # no longer counted nor read, before the object goes
    store.delete_many([key])
    if store_name != home:
        catalog.forget_replica(file_id, store_name, key)
        session.commit()
    logger.info("dropped the copy of file %s in store %s; %d left", file_id, store_name, left)
    return left
