"""Reads that fail over: when a version's own copy is missing, unreadable or fails
verification, the next verified copy in another store is read (docs/replicas.md).

With one store nothing changes: the own copy is read and its error is the read's. With
several, the own copy is tried first (no catalog query on the usual path), then the
verified copies the catalog lists, in the configuration's order, each checked by
`Session.locate_copy` before it is touched. Copies found missing or corrupt are recorded
lost (in a side transaction, or by the caller for reads in worker threads).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from .errors import NotFoundError, RepoError, StoreError, UntrustedDataError, VerificationError

if TYPE_CHECKING:
    from collections.abc import Callable

    from .catalog import FileRecord, Replica
    from .session import Session
    from .stores import Store

__all__ = ["LostCopy", "note_lost", "read_any"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
#: A copy a read found missing or corrupt: (file id, store name, key).
LostCopy = tuple[int, str, str]


def read_any(
    session: Session,
    rec: FileRecord,
    read: Callable[[Store, str], _T],
    *,
    copies: list[Replica] | None = None,
    lost: list[LostCopy] | None = None,
    can_retry: Callable[[], bool] | None = None,
) -> _T:
    """`read(store, key)` of the first copy of `rec` that reads.

    `copies`: the version's ``replicas`` rows, read beforehand (worker threads must not
    query the catalog); None: queried if the own copy fails. `lost`: where to put copies
    found lost (worker threads), else they are recorded at once. `can_retry`: for a
    `read` that streams to a reader, whether nothing has reached the reader yet (bytes
    written cannot be taken back, so then the failure is the read's); None: `read`
    leaves nothing visible unless it succeeds (a download into a temp file).
    """
    several = bool(session.config.stores)
    failing = (NotFoundError, VerificationError, StoreError)
    found: list[LostCopy] = []
    problems: list[str] = []
    home = session.stores.home_name(rec) if several else session.config.store_name
    try:
        try:
            store = session.locate(rec)
        except UntrustedDataError as exc:
            if not several:
                raise
            problems.append(str(exc))
        else:
            try:
                return read(store, rec.key)
            except failing as exc:
                if not several or (can_retry is not None and not can_retry()):
                    raise
                problems.append(f"{home}: {exc}")
                if isinstance(exc, NotFoundError | VerificationError) and home is not None:
                    found.append((rec.file_id, home, rec.key))
                logger.warning(
                    "file %s (%s): its copy in %s failed: %s", rec.file_id, rec.path, home, exc
                )
        if copies is None:
            copies = session.catalog.replicas_of([rec.file_id]).get(rec.file_id, [])
        order = {name: i for i, name in enumerate(session.config.store_names)}
        for copy in sorted(copies, key=lambda c: order.get(c.store, len(order))):
            if not copy.verified or copy.md5 != rec.md5 or copy.size != rec.size:
                continue
            if copy.store == home and copy.key == rec.key:
                continue  # the copy just tried
            try:
                store = session.locate_copy(rec, copy)
                result = read(store, copy.key)
            except UntrustedDataError as exc:
                problems.append(str(exc))
                continue
            except failing as exc:
                if can_retry is not None and not can_retry():
                    raise
                problems.append(f"{copy.store}: {exc}")
                if isinstance(exc, NotFoundError | VerificationError):
                    found.append((rec.file_id, copy.store, copy.key))
                logger.warning(
                    "file %s (%s): its copy in %s failed: %s",
                    rec.file_id,
                    rec.path,
                    copy.store,
                    exc,
                )
                continue
            logger.info(
                "file %s (%s): read from its copy in store %s", rec.file_id, rec.path, copy.store
            )
            return result
        raise StoreError(
            f"no copy of file {rec.file_id} ({rec.path}) could be read: " + "; ".join(problems),
            hint="run `repo verify` to see every copy, and `repo recover` to repair them",
        )
    finally:
        if found:
            if lost is not None:
                lost.extend(found)
            else:
                note_lost(session, found)


def note_lost(session: Session, found: list[LostCopy]) -> None:
    """Record copies found lost; never fails the read that found them."""
    try:
        session.catalog.note_lost_copies(found, when=datetime.now(UTC))
    except RepoError as exc:
        logger.warning("could not record %d lost copies: %s", len(found), exc)
