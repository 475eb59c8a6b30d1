"""Where each version's copies are: one line per store, for `repo show` with several
stores (docs/replicas.md).

A version's own copy (``files.bucket``, ``files.key``) counts as verified when it was
uploaded, unless a ``replicas`` row for its store says otherwise (a read or `verify`
found it lost); the other copies are the ``replicas`` rows. Store names come from the
catalog: a name the configuration does not have is listed as it is recorded (checked
by the catalog to be a store name), marked unconfigured; nothing is opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from .catalog import FileRecord
    from .session import Session

__all__ = ["StoreCopy", "copies_of"]


@dataclass(frozen=True, slots=True)
class StoreCopy:
    """One version's copy in one named store, as the catalog records it."""

    store: str
    key: str
    #: ``verified`` (counted and read), ``writing`` (claimed, not yet checked) or ``lost``.
    state: str
    verified_with: str | None
    #: When it was last checked (the own copy: its upload), or found lost.
    when: datetime | None
    #: The version's own object (``files.key``), not a ``replicas`` row.
    own: bool
    #: False when the configuration has no store of this name.
    configured: bool = True


def copies_of(session: Session, recs: Sequence[FileRecord]) -> dict[int, list[StoreCopy]]:
    """The copies of each uploaded version in `recs`, by file id, in the
    configuration's store order (unconfigured names last)."""
    uploaded = [r for r in recs if r.md5 is not None]
    try:
        rows = session.catalog.replicas_of([r.file_id for r in uploaded])
    finally:
        session.catalog.end_read()
    names = session.config.store_names
    order = {name: i for i, name in enumerate(names)}
    found: dict[int, list[StoreCopy]] = {r.file_id: [] for r in recs}
    for rec in uploaded:
        listed = {c.store: c for c in rows.get(rec.file_id, [])}
        home = session.stores.home_name(rec)
        copies = found[rec.file_id]
        if home is not None and home not in listed:
            copies.append(
                StoreCopy(home, rec.key, "verified", rec.verified_with, rec.uploaded_at, True)
            )
        for name, row in listed.items():
            copies.append(
                StoreCopy(
                    name,
                    row.key,
                    row.state,
                    row.verified_with,
                    row.lost_at if row.state == "lost" else row.verified_at or row.written_at,
                    own=name == home and row.key == rec.key,
                    configured=name in order,
                )
            )
        copies.sort(key=lambda c: (order.get(c.store, len(order)), c.store))
    return found
