"""`repo store list` and `repo store decommission`: what the catalog records in each
store, and forgetting a store that is gone (docs/replicas.md).

A store taken out of the configuration leaves its ``replicas`` rows behind: they are
never read or counted (store names from the catalog are checked against the
configuration), but garbage collection leaves their versions alone, since it cannot
delete what they name. Decommissioning forgets them; only a name the configuration no
longer has can be decommissioned, and nothing in any store is touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from .session import Session

__all__ = ["StoreSummary", "decommission_store", "list_stores"]


@dataclass(frozen=True, slots=True)
class StoreSummary:
    """One store: configured (with its URL) or only named by the catalog."""

    name: str
    #: The store's URL, None when the configuration does not have it.
    url: str | None
    #: Uploaded versions whose own object is in this store, and their bytes.
    versions: int
    version_bytes: int
    #: Copies of versions made here by replication: verified (and bytes), writing, lost.
    copies: int
    copy_bytes: int
    writing: int
    lost: int

    @property
    def configured(self) -> bool:
        return self.url is not None


def list_stores(session: Session) -> list[StoreSummary]:
    """Every configured store, in the configuration's order, then every store name the
    catalog records copies in that the configuration does not have."""
    config = session.config
    own = session.catalog.own_objects_by_bucket()
    copies = session.catalog.copies_by_store()
    found = []
    for name in config.store_names:
        store = session.stores.named(name)  # opened, not contacted
        versions, size = own.get(store.bucket, (0, 0))
        found.append(_summary(name, config.for_store(name).store_url, versions, size, copies))
    for name in sorted(set(copies) - set(config.store_names)):
        found.append(_summary(name, None, 0, 0, copies))
    return found


def _summary(
    name: str,
    url: str | None,
    versions: int,
    size: int,
    copies: dict[str, dict[str, tuple[int, int]]],
) -> StoreSummary:
    states = copies.get(name, {})
    verified, verified_bytes = states.get("verified", (0, 0))
    return StoreSummary(
        name=name,
        url=url,
        versions=versions,
        version_bytes=size,
        copies=verified,
        copy_bytes=verified_bytes,
        writing=states.get("writing", (0, 0))[0],
        lost=states.get("lost", (0, 0))[0],
    )


def decommission_store(session: Session, name: str) -> int:
    """Forget every copy the catalog records in store `name`, which the configuration
    must no longer have; returns how many. Nothing in any store is touched."""
    config = session.config
    if name in config.store_names:
        where = "store_name" if name == config.store_name else f"stores.{name}"
        raise UsageError(
            f"store {name!r} is configured ({where}); its copies are counted and read",
            hint=f"take it out of {config.source} first, then decommission it",
        )
    session.require_clean("decommissioning a store")
    forgotten = session.catalog.forget_store(name)
    if not forgotten:
        session.rollback()
        raise NotFoundError(
            f"the catalog records no copies in store {name[:40]!r}",
            hint="`repo store list` names the stores it knows",
        )
    session.commit()
    return forgotten
