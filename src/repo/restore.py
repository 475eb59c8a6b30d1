"""Blind restore of the catalog: from the configuration and the backup store alone.

1. Find backups by listing the backup store; newest first (or the one asked for).
2. Download every table of the candidate and check each against the manifest (row count
   and SHA-256); with ``verify``, also check that each published file it lists is in the
   store with its size and checksum. A candidate that fails is reported and the next
   older one is tried.
3. Load it into an empty catalog (a catalog with data is refused unless ``force``).
   The old tables are dropped and the new ones created in one commit, with a
   ``restore_incomplete`` row in ``repo_meta``; on PostgreSQL the rows are then copied
   in and every key, index and foreign key built afterwards, on two connections
   (`repo.catalog.loading`).
4. Replay the change journal from the backup's snapshot on, so commits made after the
   backup are back too.
5. Adopt objects still unknown to the catalog that carry our metadata (a commit whose
   journal entry was lost) as unpublished versions, so garbage collection or a person
   can decide about them.
6. Record the backups found, for garbage collection's rule, and delete the
   ``restore_incomplete`` row in the same commit; optionally purge orphans.

A restore killed or failing anywhere between that first commit and its last leaves the
marker: opening a `Repo` on that catalog fails (it lacks every commit since the backup,
or more), and running the restore again, without ``force``, starts over. Before the
first commit, the catalog is what it was.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .adopting import adopt_unrecorded
from .backup import backups_anywhere, distrust, download_table, iter_chunks
from .catalog import SCHEMA_VERSION, Catalog
from .catalog.content import TableContent, content_rows
from .catalog.dump import BACKUP_TABLES
from .errors import (
    ArchivedError,
    CatalogError,
    NotFoundError,
    RepoError,
    UntrustedDataError,
    UsageError,
    VerificationError,
    at_boundary,
)
from .gc import purge_orphans_only
from .integrity import looks_like_md5, normalize_etag
from .journal import committed_at, entry_problem, read_entries
from .paths import check_key
from .session import ConfigSource, Session
from .storage_classes import is_archive_class
from .stores.base import hash_only

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .backup_place import BackupPlace
    from .stores import Store

__all__ = ["RestoreReport", "restorable_backups", "restore_catalog"]

logger = logging.getLogger(__name__)

#: Tables downloaded and checked at once.
FETCH_THREADS = 2


@dataclass
class RestoreReport:
    """What a restore did."""

    backup: str | None = None
    taken_at: datetime | None = None
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (backup, why)
    #: Journal entries not replayed: (key, why), e.g. unsigned, another repository's.
    skipped_entries: list[tuple[str, str]] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    journal_entries: int = 0
    adopted: list[str] = field(default_factory=list)
    #: Unrecorded objects found to be copies of known versions, recorded as such.
    copies_found: list[str] = field(default_factory=list)
    orphans_purged: int = 0


@at_boundary("restoring the catalog")
def restore_catalog(
    config: ConfigSource = None,
    *,
    backup: str | None = None,
    verify: bool = False,
    deep: bool = False,
    force: bool = False,
    purge_orphans: bool = False,
    terminate_others: bool = False,
    accept_unsigned: bool = False,
) -> RestoreReport:
    """Rebuild the catalog "blind", from the newest usable backup (or `backup`) and the
    change journal after it, knowing only the configuration. See the module docstring.

    Waits a bounded time for sessions holding the catalog, then fails naming them; with
    `terminate_others`, ends them instead (where the database role may). With
    ``backup_key``, only backups and journal entries it sealed are used; `accept_unsigned`
    also takes ones with no seal at all (written before the key was set), never one
    with a wrong seal."""
    session = Session(config)
    try:
        report = session.exclusively(
            "restoring the catalog",
            lambda: _restore(session, backup, verify, deep, force, accept_unsigned),
            terminate_others=terminate_others,
        )
    finally:
        session.close(discard=True)
    if purge_orphans:
        with Session.open(session.config) as whole:
            report.orphans_purged = purge_orphans_only(whole)
    return report


@at_boundary("listing backups")
def restorable_backups(config: ConfigSource = None) -> list[dict[str, Any]]:
    """Manifests of the complete backups a restore could use, newest first (no catalog
    needed: this works when the catalog is gone)."""
    session = Session(config)
    try:
        return backups_anywhere(session)[1]
    finally:
        session.close(discard=True)


def _restore(
    session: Session,
    wanted: str | None,
    verify: bool,
    deep: bool,
    force: bool,
    accept_unsigned: bool,
) -> RestoreReport:
    place, catalog = session.backups, session.catalog
    report = RestoreReport()
    if catalog.schema_version() is not None and not force:
        unfinished = catalog.unfinished_restore()
        if unfinished is not None:
            logger.info(
                "an earlier restore (of backup %s) did not finish: starting over", unfinished
            )
        elif catalog.has_data():
            raise CatalogError(
                "the catalog is not empty; restore replaces it",
                hint="restore into an empty database, or run `repo restore --force` to replace it",
            )
    place, found = backups_anywhere(session)
    trusted = []
    for candidate in found:
        why = distrust(place, candidate, accept_unsigned=accept_unsigned)
        if why is None:
            trusted.append(candidate)
        else:
            logger.info("backup %s rejected: %s", candidate["name"], why)  # in the report
            report.rejected.append((candidate["name"], why))
    manifests = trusted
    if wanted is not None:
        manifests = [m for m in manifests if m["name"] == wanted]
        if not manifests:
            raise NotFoundError(
                f"no complete backup named {wanted!r}", hint="see `repo restore --list`"
            )
    if not manifests:
        raise NotFoundError(
            f"no complete backup in {place.location(place.backups_prefix)}",
            hint="take one with `repo backup` while the catalog is there; if there should be "
            "some, check 'backup_s3_bucket' and the store settings",
        )
    scratch = Path(tempfile.mkdtemp(prefix="repo-restore-"))
    try:
        chosen: tuple[dict[str, Any], dict[str, Path]] | None = None
        for manifest in manifests:
            try:
                files = _fetch_checked(place, manifest, scratch / manifest["name"])
                if verify:
                    _check_published(
                        session.stores.by_bucket(),
                        _table_rows(manifest, files, "files"),
                        _table_rows(manifest, files, "paths"),
                        deep,
                    )
            except (RepoError, ValueError, KeyError, OSError) as exc:
                reason = getattr(exc, "message", None) or str(exc)
                logger.info("backup %s rejected: %s", manifest["name"], reason)
                report.rejected.append((manifest["name"], reason))
                continue
            chosen = (manifest, files)
            break
        if chosen is None:
            raise VerificationError(
                "no usable backup: " + "; ".join(f"{n}: {why}" for n, why in report.rejected)
            )
        manifest, files = chosen
        _load(catalog, manifest, files, report)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report.backup = manifest["name"]
    report.taken_at = datetime.fromisoformat(manifest["taken_at"])
    for key, entry in read_entries(place, report.taken_at):
        why = entry_problem(
            entry,
            repository_id=manifest["repository_id"],
            key=place.key,
            accept_unsigned=accept_unsigned,
        )
        if why is not None:
            logger.info("journal entry %s skipped: %s", key, why)  # in the report
            report.skipped_entries.append((key, why))
            continue
        assert entry is not None  # noqa: S101 - entry_problem says so (for mypy)
        when = committed_at(entry)
        if when is None or when <= report.taken_at:
            continue  # in the backup already
        catalog.apply_entry(entry)
        report.journal_entries += 1
    catalog.reset_sequences()  # replayed versions have ids above the backup's
    catalog.commit()
    adopt_unrecorded(session, catalog, report.adopted, report.copies_found)
    for other in trusted:  # listed once, above: each manifest is one GET
        if other["name"] not in _recorded_backups(catalog):
            catalog.record_backup(
                other["name"],
                taken_at=datetime.fromisoformat(other["taken_at"]),
                completed_at=datetime.fromisoformat(other["completed_at"]),
                location=place.location(f"{place.backups_prefix}{other['name']}/"),
            )
    catalog.mark_restore_finished()
    catalog.commit()
    return report


def _recorded_backups(catalog: Catalog) -> set[str]:
    return {b.name for b in catalog.completed_backups()}


def _fetch_checked(place: BackupPlace, manifest: dict[str, Any], into: Path) -> dict[str, Path]:
    if manifest.get("schema_version", 0) > SCHEMA_VERSION:
        raise UsageError(
            f"made by a newer repo (schema version {manifest['schema_version']})",
            hint="upgrade the repo package first",
        )
    into.mkdir(parents=True)
    tables = manifest.get("tables", {})
    # Backups made before schema versions 2 and 7 lack these (none recorded, none copied).
    optional = ("backups", "replicas")
    missing = [t.name for t in BACKUP_TABLES if t.name not in tables and t.name not in optional]
    if missing:
        raise VerificationError(f"manifest lacks table(s) {', '.join(missing)}")
    # Checking a table is decompressing and hashing it, which release the GIL: the
    # largest tables side by side, one per core the load will use.
    names = sorted(tables, key=lambda n: -int(tables[n].get("object_size") or 0))
    with ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="repo-restore") as pool:
        paths = pool.map(
            lambda name: download_table(place, tables[name], manifest["name"], into), names
        )
        return dict(zip(names, paths, strict=True))


def _table_rows(
    manifest: dict[str, Any], files: dict[str, Path], name: str
) -> Iterator[dict[str, Any]]:
    return content_rows(_content(manifest, files, name))


def _check_published(
    stores: dict[str, Store],
    file_rows: Iterator[dict[str, Any]],
    path_rows: Iterator[dict[str, Any]],
    deep: bool,
) -> None:
    """Every published file the backup lists is in its store (`stores`, by bucket), whole."""
    names = {row["path_id"]: row["path"] for row in path_rows}
    for row in file_rows:
        if row["state"] != "published":
            continue
        key, size, md5 = row["key"], row["size"], row["md5"]
        path = names.get(row["path_id"], key)
        bucket_store = stores.get(row["bucket"])
        if bucket_store is None:
            raise UntrustedDataError(
                f"published file {path} is recorded outside this repository's stores"
            )
        check_key(key, key_prefix=bucket_store.key_prefix, path=path)
        try:
            info = bucket_store.head(key)
        except NotFoundError:
            raise VerificationError(f"published file {path} is missing ({key})") from None
        if info.size != size:
            raise VerificationError(f"published file {path} has {info.size} bytes, not {size}")
        if _wrong_etag(bucket_store, key, info.etag, md5):
            raise VerificationError(f"published file {path} has the wrong checksum")
        if deep and is_archive_class(row.get("storage_class")):
            # Reading it is a billed retrieval, and most archival classes refuse it
            # without a restore: the HEAD above is its check (docs/archiving.md).
            logger.info("published file %s is archived: checked by HEAD only", path)
        elif deep:
            try:
                got = hash_only(bucket_store.iter_bytes(key))
            except ArchivedError:
                # Archived after this backup was taken: the HEAD above is its check.
                logger.info("published file %s is archived: checked by HEAD only", path)
                continue
            if got.md5 != md5 or got.size != size:
                raise VerificationError(f"published file {path} has the wrong content")


def _wrong_etag(store: Store, key: str, etag: str | None, md5: str) -> bool:
    """Does the single-part ETag of `key` prove its content is not `md5`?

    Only where the server says its ETags are md5s: with SSE-KMS one looks like an md5
    and is not. A multipart ETag, or none, proves nothing either way.
    """
    tag = normalize_etag(etag)
    if tag is None or "-" in tag or not looks_like_md5(tag) or tag == md5:
        return False
    return store.etag_is_md5(key)


def _load(
    catalog: Catalog, manifest: dict[str, Any], files: dict[str, Path], report: RestoreReport
) -> None:
    contents = [_content(manifest, files, t.name) for t in BACKUP_TABLES if t.name in files]
    report.rows = catalog.load_backup(manifest["name"], contents)
    catalog.reset_sequences()
    catalog.commit()


def _content(manifest: dict[str, Any], files: dict[str, Path], name: str) -> TableContent:
    spec, path = manifest["tables"][name], files[name]
    table = next(t for t in BACKUP_TABLES if t.name == name)
    return TableContent(
        table=table,
        format=spec.get("format", "jsonl"),
        columns=list(spec.get("columns", [])),
        rows=int(spec.get("rows") or 0),
        chunks=lambda: iter_chunks(path),
    )
