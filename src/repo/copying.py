"""Writing one version's copy into a named store, read from a verified copy
(docs/replicas.md): claimed in the catalog before a byte is sent, checked on the way in
(md5 of the source) and at the destination, then recorded verified. `repo replicate`
makes missing copies with `write_copy` (the bytes only: safe in worker threads; it
claims and records in batches), `repo recover` repairs damaged ones with `copy_one`.
Sources found missing or corrupt on the way are recorded lost (`failover.note_lost`).
Between two buckets of one S3 server the server copies (`stores.base.ServerCopy`)."""

from __future__ import annotations

import io
import logging
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from .errors import (
    ConflictError,
    NotFoundError,
    RepoError,
    StoreError,
    UntrustedDataError,
    VerificationError,
)
from .failover import note_lost
from .integrity import READ_BACK, check_download
from .stores.base import SMALL_OBJECT_MAX, hash_only, server_copy
from .transfers import copy_metadata, put_copy

if TYPE_CHECKING:
    from .backup_place import BackupPlace
    from .catalog import FileRecord, Replica
    from .failover import LostCopy
    from .session import Session
    from .stores import Store
    from .stores.base import Progress, ServerCopy

__all__ = [
    "CopySource",
    "copy_backups",
    "copy_one",
    "copy_sources",
    "write_copy",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CopySource:
    """A verified copy a version can be read from: its store's name, the store, the key."""

    name: str
    store: Store
    key: str


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


def copy_one(session: Session, rec: FileRecord, sources: list[CopySource], name: str) -> None:
    """Write and verify `rec`'s copy in store `name`, reading from the first good source."""
    catalog = session.catalog
    key = session.stores.copy_key(rec, name)
    store = session.stores.named(name)
    if not catalog.claim_replica(rec.file_id, name, key, when=datetime.now(UTC)):
        session.rollback()
        raise ConflictError(f"file {rec.file_id} was purged or claimed by GC meanwhile")
    session.commit()  # the row names the object before it exists
    lost: list[LostCopy] = []
    try:
        with_what = write_copy(store, rec, sources, key, scratch=session.scratch_dir(), lost=lost)
    finally:
        note_lost(session, lost)
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


def write_copy(
    store: Store,
    rec: FileRecord,
    sources: list[CopySource],
    key: str,
    *,
    scratch: Path,
    lost: list[LostCopy],
    resumed: bool = True,
    progress: Progress | None = None,
) -> str:
    """Write `rec`'s bytes at `key` in `store` (claimed by the caller), read from the
    first good source, and check them there; returns what vouched (`VERIFIED_WITH`).

    No catalog work (safe in worker threads): sources found missing or corrupt are added
    to `lost` for the caller to record. A leftover at `key` (a run killed after its put)
    is kept if it holds the version's bytes, else deleted and written again; `resumed`:
    whether the claim found a row already (else nothing can be at `key`: nothing is ever
    written without a row naming it first). `progress` hears of the bytes moved, half
    on the way in and half on the way out, so that it adds up to the version's size
    (none for a copy the server makes).

    Where a source is on the same S3 server as `store` (`stores.base.ServerCopy`), the
    server copies it; a copy it refuses, or that fails its check (deleted then), is
    streamed instead, through this host, from the first source that reads right.
    """
    size = rec.size or 0
    half = _halved(progress)
    for source in sources:
        copier = server_copy(store, source.store, size)
        if copier is not None:
            done = _copy_on_server(copier, store, source, rec, key, resumed=resumed)
            if done is not None:
                return done
            break
    if size <= SMALL_OBJECT_MAX:
        buffer = io.BytesIO()
        _read_one(rec, sources, buffer, lost, half)
        return _put_checked(store, rec, key, buffer.getvalue(), half)
    with tempfile.TemporaryDirectory(dir=scratch, prefix="replicate-") as tmp:
        local = Path(tmp) / "copy"
        with local.open("wb") as out:
            _read_one(rec, sources, out, lost, half)
        return _put_checked(store, rec, key, local, half)


def _copy_on_server(
    copier: ServerCopy,
    store: Store,
    source: CopySource,
    rec: FileRecord,
    key: str,
    *,
    resumed: bool,
) -> str | None:
    """`rec` copied by the server from `source` to `key`, checked; what vouched, or None
    when it is to be streamed instead."""
    if resumed:
        if _holds(store, key, rec):
            return READ_BACK
        store.delete_many([key])  # a leftover our row names (missing is no error)
    try:
        result = copier.copy_from(
            source.store,
            source.key,
            key,
            md5=rec.md5 or "",
            size=rec.size or 0,
            metadata=copy_metadata(rec),
        )
    except ConflictError:
        if _holds(store, key, rec):
            return READ_BACK
        store.delete_many([key])
        return None
    except RepoError as exc:  # refused (access, not implemented), missing, or bad
        logger.warning(
            "file %s: the server did not copy it from store %s (%s); streaming it",
            rec.file_id,
            source.name,
            exc,
        )
        return None
    return result.verified_with


def _put_checked(
    store: Store, rec: FileRecord, key: str, body: Path | bytes, progress: Progress | None
) -> str:
    try:
        result = put_copy(store, rec, key, body, progress)
    except ConflictError:
        # A run killed after its put left the object: keep it if it is the version's
        # bytes, else delete it (our row names it) and write it again.
        if _holds(store, key, rec):
            return READ_BACK
        store.delete_many([key])
        result = put_copy(store, rec, key, body)
    if result.md5 != rec.md5 or result.size != rec.size:
        raise VerificationError(f"the copy of file {rec.file_id} at {key} differs")
    return result.verified_with


def _halved(progress: Progress | None) -> Progress | None:
    """`progress` told half of every byte (a copy's bytes are moved twice: in, out)."""
    if progress is None:
        return None
    moved = told = 0

    def half(nbytes: int) -> None:
        nonlocal moved, told
        moved += nbytes
        if moved // 2 > told:
            progress(moved // 2 - told)
            told = moved // 2

    return half


def _read_one(
    rec: FileRecord,
    sources: list[CopySource],
    into: BinaryIO,
    lost: list[LostCopy],
    progress: Progress | None = None,
) -> None:
    """Download `rec` into `into` from the first source that gives its exact bytes; a
    source found missing or corrupt is added to `lost`."""
    problems = []
    for source in sources:
        into.seek(0)
        into.truncate()
        try:
            got = source.store.get_into(source.key, into, progress=progress)
            check_download(source.key, got.md5, got.size, md5=rec.md5 or "", size=rec.size or 0)
        except (NotFoundError, VerificationError) as exc:
            problems.append(f"{source.name}: {exc}")
            lost.append((rec.file_id, source.name, source.key))
            continue
        except StoreError as exc:
            problems.append(f"{source.name}: {exc}")
            continue
        return
    raise StoreError(f"no copy of file {rec.file_id} could be read: {'; '.join(problems)}")


def _holds(store: Store, key: str, rec: FileRecord) -> bool:
    """Does `key` in `store` hold exactly `rec`'s bytes (read back and hashed)?"""
    try:
        got = hash_only(store.iter_bytes(key))
    except NotFoundError:
        return False
    return got.md5 == rec.md5 and got.size == rec.size


def copy_backups(
    source: BackupPlace, dest: BackupPlace, scratch: Path, *, dry_run: bool
) -> tuple[int, int]:
    """Copy the catalog backups and journal entries `dest` lacks from `source`, byte for
    byte (seals stay valid), each checked by md5 at both ends; a backup's manifest goes
    last, so `dest` never shows a backup whose tables are not all there. Returns the
    objects and bytes copied (with `dry_run`, to be)."""
    have = {
        info.key[len(dest.store.key_prefix) :]
        for prefix in (dest.backups_prefix, dest.journal_prefix)
        for info in dest.store.list(prefix)
    }
    wanted = [
        info
        for prefix in (source.backups_prefix, source.journal_prefix)
        for info in source.store.list(prefix)
        if info.key[len(source.store.key_prefix) :] not in have
    ]
    wanted.sort(key=lambda i: (i.key.rsplit("/", 1)[0], i.key.endswith("/manifest.json"), i.key))
    copied = size = 0
    for info in wanted:
        relative = info.key[len(source.store.key_prefix) :]
        if not dry_run:
            with tempfile.TemporaryDirectory(dir=scratch, prefix="replicate-") as tmp:
                local = Path(tmp) / "object"
                with local.open("wb") as out:
                    got = source.store.get_into(info.key, out)
                result = dest.store.put_file(dest.store.key_prefix + relative, local)
            if (result.md5, result.size) != (got.md5, got.size):
                raise VerificationError(f"the copy of {relative} differs from its source")
        copied += 1
        size += info.size or 0
    return copied, size
