"""`repo replicate`: bring every live version up to `numcopies` verified copies.

For each uploaded version that garbage collection has not claimed (published, or expired
and kept for backups), the stores without a verified copy are filled in configuration
order until the version has `numcopies` (docs/replicas.md). Each copy is claimed in the
catalog (``writing``, committed) before a byte is sent, streamed from a verified copy
through a local file (the source checked by md5 on the way), written create-only and
checked at the destination (ETag or read-back), then recorded ``verified``. A run killed
anywhere leaves rows that name every object it may have written; the next run finishes
them. Idempotent: everything starts from the catalog.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import (
    ConflictError,
    NotFoundError,
    RepoError,
    StoreError,
    UntrustedDataError,
    VerificationError,
)
from .integrity import check_download
from .transfers import put_copy

if TYPE_CHECKING:
    from .catalog import FileRecord, Replica
    from .session import Session
    from .stores import Store

__all__ = ["CopySource", "ReplicateReport", "copy_sources", "replicate"]

logger = logging.getLogger(__name__)

#: Versions read from the catalog at a time.
PAGE = 500


@dataclass(frozen=True, slots=True)
class CopySource:
    """A verified copy a version can be read from: its store's name, the store, the key."""

    name: str
    store: Store
    key: str


@dataclass(slots=True)
class ReplicateReport:
    """What a `replicate` run did (or, with `dry_run`, would do)."""

    dry_run: bool
    numcopies: int
    #: Versions looked at, and those found below `numcopies`.
    checked: int = 0
    under: int = 0
    #: Copies made (or to be made), and their bytes.
    copied: int = 0
    bytes: int = 0
    #: Versions still below `numcopies` after the run, by file id, with why.
    still_under: dict[int, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.still_under

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "numcopies": self.numcopies,
            "checked": self.checked,
            "under": self.under,
            "copied": self.copied,
            "bytes": self.bytes,
            "still_under": [{"id": k, "why": v} for k, v in sorted(self.still_under.items())],
            "ok": self.ok,
        }


def copy_sources(session: Session, rec: FileRecord, copies: list[Replica]) -> list[CopySource]:
    """The verified copies of `rec`, its own object first, then the others in the
    configuration's order; copies naming no configured store, or a foreign key, are left
    out (logged) and never touched."""
    rows = {c.store: c for c in copies}
    found: list[CopySource] = []
    home = session.stores.home_name(rec)
    if home is not None and home not in rows:
        try:
            found.append(CopySource(home, session.locate(rec), rec.key))
        except UntrustedDataError as exc:
            logger.warning("%s", exc)
    for name in session.config.store_names:
        copy = rows.get(name)
        if copy is None or not copy.verified or copy.md5 != rec.md5 or copy.size != rec.size:
            continue
        try:
            found.append(CopySource(name, session.locate_copy(rec, copy), copy.key))
        except UntrustedDataError as exc:
            logger.warning("%s", exc)
    return found


def replicate(session: Session, *, dry_run: bool = False) -> ReplicateReport:
    """Bring every live version up to `numcopies` verified copies (see the module)."""
    session.require_clean("replicating")
    config = session.config
    report = ReplicateReport(dry_run=dry_run, numcopies=config.numcopies)
    catalog = session.catalog
    after = 0
    while page := catalog.versions_to_copy(after_id=after, limit=PAGE):
        after = page[-1].file_id
        copies = catalog.replicas_of([rec.file_id for rec in page])
        for rec in page:
            report.checked += 1
            sources = copy_sources(session, rec, copies.get(rec.file_id, []))
            need = config.numcopies - len(sources)
            if need <= 0:
                continue
            report.under += 1
            held = {s.name for s in sources}
            targets = [n for n in config.store_names if n not in held][:need]
            if not sources:
                report.still_under[rec.file_id] = "no verified copy to copy from"
                continue
            for name in targets:
                if dry_run:
                    report.copied += 1
                    report.bytes += rec.size or 0
                    continue
                try:
                    _copy_one(session, rec, sources, name)
                except RepoError as exc:
                    session.rollback()
                    logger.warning("file %s: no copy in store %s: %s", rec.file_id, name, exc)
                    report.still_under[rec.file_id] = f"store {name}: {exc}"
                    continue
                report.copied += 1
                report.bytes += rec.size or 0
    return report


def _copy_one(session: Session, rec: FileRecord, sources: list[CopySource], name: str) -> None:
    """Write and verify `rec`'s copy in store `name`, reading from the first good source."""
    catalog = session.catalog
    key = session.stores.copy_key(rec, name)
    store = session.stores.named(name)
    if not catalog.claim_replica(rec.file_id, name, key, when=datetime.now(UTC)):
        session.rollback()
        raise ConflictError(f"file {rec.file_id} was purged or claimed by GC meanwhile")
    session.commit()  # the row names the object before it exists
    with tempfile.TemporaryDirectory(dir=session.scratch_dir(), prefix="replicate-") as tmp:
        local = _read_one(session, rec, sources, Path(tmp) / "copy")
        try:
            result = put_copy(store, rec, key, local)
        except ConflictError:
            # A run killed after its put left the object: keep it if it is the version's
            # bytes, else delete it (our row names it) and write it again.
            if _holds(store, key, rec):
                result = None
            else:
                store.delete_many([key])
                result = put_copy(store, rec, key, local)
    if result is not None and (result.md5 != rec.md5 or result.size != rec.size):
        raise VerificationError(f"the copy of file {rec.file_id} in store {name} differs")
    with_what = result.verified_with if result is not None else "read-back"
    if not catalog.replica_verified(
        rec.file_id,
        name,
        key,
        md5=rec.md5 or "",
        size=rec.size or 0,
        verified_with=with_what,
        when=datetime.now(UTC),
    ):
        # GC took the version meanwhile: its delete may have run before our put.
        session.rollback()
        store.delete_many([key])
        raise ConflictError(f"file {rec.file_id} was purged meanwhile; its new copy deleted")
    session.commit()
    logger.info("file %s (%s): copied to store %s at %s", rec.file_id, rec.path, name, key)


def _read_one(session: Session, rec: FileRecord, sources: list[CopySource], into: Path) -> Path:
    """Download `rec` from the first source that gives its exact bytes; a source found
    missing or corrupt is recorded lost."""
    problems = []
    for source in sources:
        try:
            with into.open("wb") as out:
                got = source.store.get_into(source.key, out)
            check_download(source.key, got.md5, got.size, md5=rec.md5 or "", size=rec.size or 0)
        except (NotFoundError, VerificationError) as exc:
            problems.append(f"{source.name}: {exc}")
            session.catalog.replica_lost(
                rec.file_id, source.name, source.key, when=datetime.now(UTC)
            )
            session.commit()
            continue
        except StoreError as exc:
            problems.append(f"{source.name}: {exc}")
            continue
        return into
    raise StoreError(f"no copy of file {rec.file_id} could be read: {'; '.join(problems)}")


def _holds(store: Store, key: str, rec: FileRecord) -> bool:
    """Does `key` in `store` hold exactly `rec`'s bytes (read back and hashed)?"""
    from .stores.base import hash_only

    try:
        got = hash_only(store.iter_bytes(key))
    except NotFoundError:
        return False
    return got.md5 == rec.md5 and got.size == rec.size
