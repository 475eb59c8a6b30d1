"""Catalog backups into the backup store.

A backup is a directory of immutable objects under ``<prefix>backups/<name>/``: one
gzipped JSON-lines file per table, all read from one snapshot, then ``manifest.json``
(format, times, repository id, schema version, and per table the row count and the
SHA-256 of its uncompressed lines). The manifest is written last and read back: a backup
without a manifest that verifies does not exist, for restore and for retention alike.
Names sort by snapshot time.

A backup killed before its manifest leaves a *partial* backup: table objects and no
``manifest.json``. Retention deletes one only when all of these hold, so a backup another
host is still writing is never touched: its name is ours (a snapshot time and a short
token), it sorts before the newest complete backup (it started earlier), and every
object under it was last modified more than ``orphan_grace_seconds`` ago (by the
store's clock). A directory whose manifest exists but does not read (a network error,
a damaged object) is never deleted by this rule.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .backup_place import place_in
from .catalog import SCHEMA_VERSION
from .catalog.dump import copy_columns
from .errors import StoreError, VerificationError
from .paths import new_version_token
from .seal import check_seal, seal

if TYPE_CHECKING:
    from .backup_place import BackupPlace
    from .session import Session
    from .stores.base import ObjectInfo

__all__ = [
    "MANIFEST_FORMAT",
    "BackupReport",
    "backups_anywhere",
    "distrust",
    "list_backups",
    "make_backup",
    "read_manifest",
    "table_file",
]

logger = logging.getLogger(__name__)

MANIFEST_FORMAT = 1
MANIFEST = "manifest.json"
#: Journal entries are kept this long before the oldest kept backup (clock skew margin).
JOURNAL_MARGIN = timedelta(hours=1)
#: What `_name` makes: snapshot time, then 8 token characters.
_NAME = re.compile(r"\d{8}T\d{12}Z-[0-9a-z]{8}")
#: What a manifest's seal is for (`repo.seal`).
PURPOSE = "manifest"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_TABLE_FORMATS = ("jsonl", "pg-copy-text")


@dataclass
class BackupReport:
    """A completed backup, and what retention removed."""

    name: str
    taken_at: datetime
    completed_at: datetime
    rows: dict[str, int]
    bytes: int
    location: str
    deleted_backups: list[str] = field(default_factory=list)
    deleted_journal_entries: int = 0
    #: Partial backups (killed before their manifest) that retention removed.
    deleted_partial_backups: list[str] = field(default_factory=list)


def _name(taken_at: datetime) -> str:
    return f"{taken_at:%Y%m%dT%H%M%S%fZ}-{new_version_token()[-8:]}"


def make_backup(session: Session) -> BackupReport:
    """Back the catalog up into the backup place (one snapshot, manifest last), then
    apply retention (``backup_keep``). Needs a session without uncommitted changes."""
    session.require_clean("a backup")
    place = session.backups
    taken_at = datetime.now(UTC)  # before the snapshot: never later than what it holds
    name = _name(taken_at)
    prefix = f"{place.backups_prefix}{name}/"
    tables: dict[str, dict[str, Any]] = {}
    scratch = Path(tempfile.mkdtemp(dir=session.scratch_dir(), prefix="backup-"))
    total = 0
    try:
        for table, fmt, content in session.catalog.dump_tables():
            suffix = "jsonl" if fmt == "jsonl" else "copy"
            path = scratch / f"{table.name}.{suffix}.gz"
            digest = hashlib.sha256()
            count = 0
            with gzip.open(path, "wb", compresslevel=1) as out:
                for chunk in content:  # whole lines, one per row
                    digest.update(chunk)
                    count += chunk.count(b"\n")
                    out.write(chunk)
            key = f"{prefix}{path.name}"
            put = place.store.put_file(key, path)
            total += put.size
            tables[table.name] = {
                "key": key,
                "format": fmt,
                "columns": copy_columns(table),
                "rows": count,
                "sha256": digest.hexdigest(),
                "object_md5": put.md5,
                "object_size": put.size,
            }
        completed_at = datetime.now(UTC)
        manifest = {
            "format": MANIFEST_FORMAT,
            "name": name,
            "taken_at": taken_at.isoformat(),
            "completed_at": completed_at.isoformat(),
            "repository_id": session.repository_id,
            "schema_version": SCHEMA_VERSION,
            "host": session.host,
            "tables": tables,
        }
        manifest = seal(manifest, place.key, PURPOSE)
        manifest_path = scratch / MANIFEST
        manifest_path.write_text(json.dumps(manifest, indent=1))
        place.store.put_file(prefix + MANIFEST, manifest_path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if read_manifest(place, name) != manifest:
        raise VerificationError(
            f"backup {name}: the manifest read back differs from the one written"
        )
    location = place.location(prefix)
    session.catalog.record_backup(
        name, taken_at=taken_at, completed_at=completed_at, location=location
    )
    session.catalog.commit()
    report = BackupReport(
        name=name,
        taken_at=taken_at,
        completed_at=completed_at,
        rows={t: d["rows"] for t, d in tables.items()},
        bytes=total,
        location=location,
    )
    logger.info("backup %s: %d bytes of %d tables at %s", name, total, len(tables), location)
    _retain(session, report)
    return report


def read_manifest(place: BackupPlace, name: str) -> dict[str, Any] | None:
    """The manifest of backup `name` if it exists, parses and is well formed, else None
    (logged). Whether it is trusted is `distrust`'s business."""
    key = f"{place.backups_prefix}{name}/{MANIFEST}"
    try:
        data = b"".join(place.store.iter_bytes(key))
        doc = json.loads(data)
    except Exception:
        return None
    problem = _malformed(place, name, doc)
    if problem is not None:
        logger.warning("backup %s: its manifest is malformed (%s); skipping it", name[:80], problem)
        return None
    return doc  # type: ignore[no-any-return]


def _malformed(place: BackupPlace, name: str, doc: object) -> str | None:
    """Why `doc` is not a manifest this code writes for backup `name`, or None."""
    if not isinstance(doc, dict):
        return "not a JSON object"
    if doc.get("format") != MANIFEST_FORMAT or doc.get("name") != name:
        return "another format or another backup's name"
    for stamp in ("taken_at", "completed_at"):
        try:
            if datetime.fromisoformat(doc[stamp]).tzinfo is None:
                return f"{stamp} has no time zone"
        except (KeyError, TypeError, ValueError):
            return f"no valid {stamp}"
    if not isinstance(doc.get("repository_id"), str):
        return "no repository id"
    tables = doc.get("tables")
    if not isinstance(tables, dict) or "files" not in tables:
        return "no tables"
    for table, spec in tables.items():
        if not isinstance(spec, dict):
            return f"table {str(table)[:40]!r} is not described"
        key = spec.get("key")
        if not isinstance(key, str) or table_file(key, name) is None:
            return f"table {str(table)[:40]!r} is stored outside the backup"
        rows, digest = spec.get("rows"), spec.get("sha256")
        if type(rows) is not int or rows < 0 or not isinstance(digest, str):
            return f"table {str(table)[:40]!r} has no row count or checksum"
        if not _SHA256.fullmatch(digest) or spec.get("format", "jsonl") not in _TABLE_FORMATS:
            return f"table {str(table)[:40]!r} has a malformed checksum or format"
        columns = spec.get("columns", [])
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            return f"table {str(table)[:40]!r} has malformed columns"
    return None


def distrust(
    place: BackupPlace, manifest: dict[str, Any], *, accept_unsigned: bool = False
) -> str | None:
    """Why a restore or retention may not act on `manifest`, or None.

    Never one dated in the future (no backup can be). Without ``backup_key`` every other
    well-formed manifest is taken. With it, only those it sealed, and with
    `accept_unsigned` also those with no seal (backups taken before the key was set); a
    wrong seal never.
    """
    if datetime.fromisoformat(manifest["taken_at"]) > datetime.now(UTC) + JOURNAL_MARGIN:
        return "dated in the future"
    if place.key is None:
        return None
    verdict = check_seal(manifest, place.key, PURPOSE)
    if verdict == "ok" or (verdict == "missing" and accept_unsigned):
        return None
    if verdict == "missing":
        return (
            "not signed with the backup key (taken before backup_key was set? "
            "see --accept-unsigned)"
        )
    return "its signature does not verify with the backup key: not written by this repository"


def _listing(place: BackupPlace) -> dict[str, list[ObjectInfo]]:
    """Backup name -> the objects under ``backups/<name>/``, from one listing."""
    found: dict[str, list[ObjectInfo]] = {}
    for info in place.store.list(place.backups_prefix):
        rest = info.key[len(place.backups_prefix) :]
        if "/" in rest:
            found.setdefault(rest.split("/", 1)[0], []).append(info)
    return found


def list_backups(
    place: BackupPlace, listing: dict[str, list[ObjectInfo]] | None = None
) -> list[dict[str, Any]]:
    """Manifests of every complete backup in the backup store, newest first.

    Found by listing the store (no catalog needed), unless `listing` (`_listing`) is
    given. Directories without a readable manifest are skipped, with a warning.
    """
    names = set(_listing(place) if listing is None else listing)
    found = []
    for name in sorted(names, reverse=True):
        manifest = read_manifest(place, name)
        if manifest is None:
            logger.warning("backup %s has no valid manifest; skipping it", name)
            continue
        found.append(manifest)
    return found


def _retain(session: Session, report: BackupReport) -> None:
    """Delete backups beyond the newest `backup_keep` (never fewer than GC relies on),
    partial backups (see the module's docstring), and journal entries older than the
    oldest backup kept.

    Only this repository's manifests count, only ones `distrust` finds nothing against,
    and none dated in the future: objects under the backup prefix are input, and forged
    ones must not push genuine backups out. The backup just taken is never deleted.
    """
    place = session.backups
    keep = max(session.config.backup_keep, session.config.backups_before_purge, 1)
    listing = _listing(place)
    manifests = [
        m
        for m in list_backups(place, listing)
        if m["repository_id"] == session.repository_id and distrust(place, m) is None
    ]
    if manifests:
        grace = timedelta(seconds=session.config.orphan_grace_seconds)
        for name in _partial_backups(listing, manifests[0]["name"], datetime.now(UTC) - grace):
            place.store.delete_many([i.key for i in listing[name]])
            report.deleted_partial_backups.append(name)
            logger.info("deleted partial backup %s (it has no manifest)", name)
    for old in manifests[keep:]:
        if old["name"] == report.name:
            continue
        keys = [i.key for i in listing.get(old["name"], [])]
        # The manifest first: from then on the backup no longer exists for anyone.
        keys.sort(key=lambda k: not k.endswith("/" + MANIFEST))
        place.store.delete_many(keys[:1])
        place.store.delete_many(keys[1:])
        session.catalog.forget_backup(old["name"])
        report.deleted_backups.append(old["name"])
    session.catalog.commit()
    kept = manifests[:keep]
    if not kept:
        return
    horizon = datetime.fromisoformat(kept[-1]["taken_at"]) - JOURNAL_MARGIN
    floor_ms = int(horizon.timestamp() * 1000)
    stale = []
    for info in place.store.list(place.journal_prefix):
        stamp = info.key[len(place.journal_prefix) :].split("-", 1)[0]
        if stamp.isdigit() and int(stamp) < floor_ms:
            stale.append(info.key)
    if stale:
        place.store.delete_many(stale)
    report.deleted_journal_entries = len(stale)


def _partial_backups(
    listing: dict[str, list[ObjectInfo]], newest: str, older_than: datetime
) -> list[str]:
    """Backups that have no manifest object, started before the newest complete one and
    have had no object written since `older_than`."""
    out = []
    for name, infos in sorted(listing.items()):
        if not _NAME.fullmatch(name) or name >= newest:
            continue
        if any(i.key.endswith("/" + MANIFEST) for i in infos):
            continue  # a manifest that did not read is not proof of anything
        if all(i.last_modified is not None and i.last_modified < older_than for i in infos):
            out.append(name)
    return out


def table_file(key: str, backup: str) -> str | None:
    """The file name in a table's key (``<prefix>backups/<backup>/<file>``), or None. Only
    it is used: a copy in another store has another prefix (docs/replicas.md)."""
    stem, slash, file = key.rpartition("/")
    if (
        not slash
        or not file
        or not (stem == f"backups/{backup}" or stem.endswith(f"/backups/{backup}"))
    ):
        return None
    return file


def download_table(place: BackupPlace, spec: dict[str, Any], backup: str, into: Path) -> Path:
    """Fetch one table's object of backup `backup` and check its row count and SHA-256;
    returns the file."""
    file = table_file(str(spec["key"]), backup)
    if file is None or file in (".", ".."):
        raise VerificationError(f"backup {backup}: a table is stored outside the backup")
    path: Path = into / file
    with open(path, "wb") as out:
        place.store.get_into(f"{place.backups_prefix}{backup}/{file}", out)
    digest = hashlib.sha256()
    count = 0
    with gzip.open(path, "rb") as src:
        for block in iter(lambda: src.read(1 << 20), b""):
            digest.update(block)
            count += block.count(b"\n")
    if count != spec["rows"] or digest.hexdigest() != spec["sha256"]:
        raise VerificationError(
            f"{spec['key']}: {count} rows with SHA-256 {digest.hexdigest()[:12]}..., the "
            f"manifest says {spec['rows']} rows with {spec['sha256'][:12]}..."
        )
    return path


def iter_rows(path: Path) -> Any:
    """Rows of a downloaded ``jsonl`` table."""
    with gzip.open(path, "rb") as src:
        for line in src:
            yield json.loads(line)


def iter_chunks(path: Path) -> Any:
    """The uncompressed content of a downloaded table, in blocks."""
    with gzip.open(path, "rb") as src:
        yield from iter(lambda: src.read(1 << 20), b"")


def backups_anywhere(session: Session) -> tuple[BackupPlace, list[dict[str, Any]]]:
    """The backup place to restore from and its backups: the default one, else (several
    stores) the first copy `repo replicate` keeps in another store that has some."""
    places = [session.backups]
    places += [place_in(session.config, session.stores.named(n)) for n in session.config.stores]
    for place in places:
        try:
            found = list_backups(place)
        except StoreError as exc:
            if len(places) == 1:
                raise
            logger.warning("no backups read from %s: %s", place.store.url, exc)
            continue
        if found or len(places) == 1:
            return place, found
    return session.backups, []
