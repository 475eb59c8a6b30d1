"""Repo: the facade over the catalog, the store and this host's cache."""

from __future__ import annotations

import builtins
import logging
import os
import shutil
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from .backup import BackupReport, list_backups, make_backup
from .cache import LocalCache
from .catalog import Catalog, FileRecord, HostSummary
from .config import Config, load_config
from .errors import (
    CatalogError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RepoError,
    UsageError,
)
from .fetch import FetchReport, fetch_many
from .file import RepoFile
from .gc import GcReport, collect_garbage
from .hosts import (
    CacheReport,
    CacheStatus,
    cache_status,
    clear_cache,
    decommission_host,
    list_hosts,
    prune_cache,
)
from .ingest import AddReport, ProgressListener, add_one, add_tree
from .integrity import check_download
from .journal import backup_place, safe_write
from .paths import TOKEN_LENGTH, make_key, new_version_token, unique_path, validate_path
from .stores import Store, open_store
from .stores.base import Progress, PutResult
from .tags import validate_tags
from .verify import (
    CacheVerifyReport,
    RecoverReport,
    VerifyReport,
    recover_from_cache,
    verify_cache,
    verify_store,
)

__all__ = ["Repo"]

logger = logging.getLogger(__name__)

#: Cache hits are remembered in memory and written to the catalog in one batch at commit,
#: close, or when this many seconds have passed since the last write.
ACCESS_FLUSH_SECONDS = 60.0
MAX_PENDING = 10_000
#: Parallel uploads of `Repo.add_tree`.
DEFAULT_WORKERS = 16
STATES = ("unpublished", "published", "expired")


def _now() -> datetime:
    return datetime.now(UTC)


class Repo:
    """A file repository: a catalog (PostgreSQL or SQLite) plus an object store.

    Not thread-safe: use one `Repo` per thread. Catalog changes become visible to other
    hosts on `commit()`; ``with Repo() as r:`` commits on success and rolls back on an
    exception.
    """

    def __init__(
        self, config: str | os.PathLike[str] | Mapping[str, Any] | Config | None = None
    ) -> None:
        self.config: Config = load_config(config)
        self.host = self.config.host_name
        self.catalog = Catalog(self.config.database_url)
        try:
            self.catalog.ensure_schema()
            self.store: Store = open_store(self.config.store_url, self.config)
        except BaseException:
            self.catalog.close()
            raise
        self.cache = LocalCache(self.config.local_root)
        self._stores: dict[str, Store] = {self.store.bucket: self.store}
        try:
            self.backups = backup_place(self.config, self.store)
            self.repository_id, unfinished = self.catalog.identity()
            if unfinished is not None:
                raise CatalogError(
                    f"the catalog is half restored: a restore of backup {unfinished} "
                    "did not finish, so it lacks the commits made after that backup",
                    hint="run `repo restore` again to finish it",
                )
        except BaseException:
            self.catalog.close()
            self.store.close()
            raise
        self.catalog.on_commit = self._write_journal
        # Cache bookkeeping waiting to be written: (file id, when, downloaded?, key) of
        # copies used, keys of copies evicted.
        self._pending: list[tuple[int, datetime, bool, str]] = []
        self._evicted: list[str] = []
        # Uploads in the open transaction, whose verified copy moved from staging into
        # the cache: a rollback puts a staging copy back, so the version stays uploadable.
        self._uploaded: list[str] = []
        self._last_flush = time.monotonic()
        # False once the catalog refused the bookkeeping to this database user (a
        # read-only role): reads go on without it.
        self._bookkeeping = True

    def __repr__(self) -> str:
        return f"<Repo store={self.store.url!r} catalog={self.config.masked_database_url()!r}>"

    # -- transactions --------------------------------------------------------------------

    def commit(self) -> None:
        """Make this session's catalog changes visible to everyone."""
        self.catalog.commit()
        self._uploaded.clear()
        self._flush_access()

    def rollback(self) -> None:
        """Discard this session's uncommitted catalog changes.

        Objects already uploaded stay in the store unreferenced; garbage collection
        removes them.
        """
        self.catalog.rollback()
        self._restore_staging()
        self._flush_access()  # after the rollback, so the bookkeeping is kept

    def close(self) -> None:
        """Roll back anything uncommitted and release connections."""
        try:
            self.catalog.rollback()
            self._restore_staging()
            self._flush_access()  # after the rollback, so the bookkeeping is kept
        finally:
            self.catalog.close()
            for store in self._stores.values():
                store.close()
            self.backups.close()

    def __enter__(self) -> Repo:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self.commit()
            else:
                self.rollback()
        finally:
            self.close()

    # -- finding files -------------------------------------------------------------------

    def add_file(self, path: str | None = None) -> RepoFile:
        """A new, unpublished version of `path` (a unique path is made when omitted)."""
        clean = validate_path(
            path if path is not None else unique_path(), key_prefix=self.store.key_prefix
        )
        key = make_key(self.store.key_prefix, clean, new_version_token())
        record = self.catalog.add_file(
            path=clean, bucket=self.store.bucket, key=key, origin=self.host, created_at=_now()
        )
        return RepoFile(self, record)

    def get_file(self, path: str) -> RepoFile | None:
        """The current (published) version of `path`, or None."""
        record = self.catalog.current(validate_path(path))
        return RepoFile(self, record) if record is not None else None

    def file(self, file_id: int) -> RepoFile:
        """A version by its id; `NotFoundError` if there is none."""
        if isinstance(file_id, bool) or not isinstance(file_id, int):
            raise UsageError(f"file id must be an integer, got {file_id!r}")
        return RepoFile(self, self.catalog.get(file_id))

    def find(
        self,
        any: Iterable[str] | None = None,
        all: Iterable[str] | None = None,
        exclude: Iterable[str] | None = None,
        published: bool = True,
    ) -> list[RepoFile]:
        """Files with every tag in `all`, at least one in `any` and none in `exclude`.

        Tags on a file's path count as the file's own. With no tags, every current
        file. ``published=False`` searches versions in every state.
        """
        records = self.catalog.find(
            any_tags=validate_tags(any or ()),
            all_tags=validate_tags(all or ()),
            exclude=validate_tags(exclude or ()),
            published=published,
        )
        return [RepoFile(self, r) for r in records]

    def list(self, pattern: str = "*", state: str = "published") -> list[RepoFile]:
        """Files whose path matches the glob `pattern`, in `state`.

        `state` is ``published`` (the current versions, the default), ``unpublished``,
        ``expired`` or ``all``. ``*`` and ``?`` match any character including ``/``;
        ``[abc]`` a set.
        """
        if not isinstance(pattern, str) or not pattern:
            raise UsageError("pattern must be a non-empty string such as 'reports/*'")
        states = STATES if state == "all" else (state,)
        if state != "all" and state not in STATES:
            raise UsageError(
                f"unknown state {state!r}", hint="use unpublished, published, expired or all"
            )
        return [RepoFile(self, r) for r in self.catalog.list_current(pattern, states=states)]

    def history(self, path: str) -> builtins.list[RepoFile]:
        """Every version of `path`, newest first."""
        return [RepoFile(self, r) for r in self.catalog.history(validate_path(path))]

    def newest(self, path: str) -> RepoFile:
        """The most recently added version of `path`, in any state."""
        versions = self.catalog.history(validate_path(path))
        if not versions:
            raise NotFoundError(f"no file at path {path!r}", hint="see `repo list --state all`")
        return RepoFile(self, versions[0])

    def current(self, path: str) -> RepoFile:
        """The published version of `path`; `NotFoundError` (saying why) if there is none."""
        found = self.get_file(path)
        if found is not None:
            return found
        versions = self.catalog.history(validate_path(path))
        if not versions:
            raise NotFoundError(f"no file at path {path!r}", hint="see `repo list --state all`")
        raise NotFoundError(
            f"{path!r} has no published version (newest is file {versions[0].file_id}, "
            f"{versions[0].state})",
            hint=f"publish it with `repo publish {versions[0].file_id}`"
            if versions[0].state == "unpublished"
            else f"see `repo show {path}`",
        )

    def tags_of(self, files: Iterable[RepoFile]) -> dict[int, builtins.list[str]]:
        """Every tag (own and the path's) of each file, by file id, in one query per batch."""
        return self.catalog.tags_of_many([f.file_id for f in files])

    def add(
        self,
        path: str,
        source: str | os.PathLike[str] | BinaryIO,
        *,
        tags: Iterable[str] = (),
        when: datetime | date | None = None,
        period: str | None = None,
        publish: bool = False,
        progress: Progress | None = None,
        keep_cached: bool | None = None,
    ) -> RepoFile:
        """A new version of `path` with the content of a local file or a binary stream.

        Uploaded and verified, then tagged (and date-tagged when `when` or `period` is
        given), then published if asked. Nothing is recorded if the input is bad.

        A local file is sent from where it is, read once, and no copy of it is kept in
        this host's cache (it is on this host already) unless `keep_cached` is true. A
        stream is taken into a private file first, and that copy is kept in the cache
        unless `keep_cached` is false.
        """
        return add_one(
            self,
            path,
            source,
            tags=tags,
            when=when,
            period=period,
            publish=publish,
            progress=progress,
            keep_cached=keep_cached,
        )

    def add_tree(
        self,
        directory: str | os.PathLike[str],
        *,
        prefix: str = "",
        tags: Iterable[str] = (),
        when: datetime | date | None = None,
        period: str | None = None,
        publish: bool = False,
        workers: int = DEFAULT_WORKERS,
        progress: ProgressListener | None = None,
        keep_cached: bool = False,
    ) -> AddReport:
        """Add every file under `directory` (paths relative to it, under `prefix`).

        Uploads run in `workers` threads; catalog work stays in this thread. All or
        nothing: on any failure the error is raised and the caller's rollback undoes the
        catalog side (uploaded objects become orphans for garbage collection). The files
        are on this host already, so no copy is kept in its cache (a later read here
        downloads it) unless `keep_cached` is true: a second copy of every file would
        cost a write each and, for a tree larger than the cache, evict what this host
        reads.
        """
        return add_tree(
            self,
            directory,
            prefix=prefix,
            tags=tags,
            when=when,
            period=period,
            publish=publish,
            workers=workers,
            progress=progress,
            keep_cached=keep_cached,
        )

    def fetch(
        self,
        files: Iterable[RepoFile],
        *,
        dest: str | os.PathLike[str] | None = None,
        overwrite: bool = False,
        workers: int = 16,
        progress: ProgressListener | None = None,
    ) -> FetchReport:
        """Bring `files` into this host's cache, verified, downloading in parallel what
        is not there yet; with `dest`, also copy each to ``dest/<path>``."""
        return fetch_many(
            self, files, dest=dest, overwrite=overwrite, workers=workers, progress=progress
        )

    def status(self) -> dict[str, tuple[int, int]]:
        """Number of files and bytes per state."""
        return self.catalog.counts()

    # -- housekeeping --------------------------------------------------------------------

    def gc(
        self, dry_run: bool = False, orphans: bool = False, *, now: datetime | None = None
    ) -> GcReport:
        """Purge unpublished versions past ``unpublished_ttl_seconds``, expired ones past
        ``expired_ttl_seconds`` that ``backups_before_purge`` backups have seen, and with
        `orphans` unreferenced objects past ``orphan_grace_seconds``. Never a published
        version. Commits as it goes; needs a session without uncommitted changes."""
        return collect_garbage(self, dry_run=dry_run, orphans=orphans, now=now)

    def backup(self) -> BackupReport:
        """Back the catalog up into the backup store (one snapshot, manifest last), then
        apply retention (``backup_keep``). Needs a session without uncommitted changes."""
        if self.catalog.db.in_write:
            raise UsageError(
                "a backup needs a clean session: there are uncommitted changes",
                hint="commit() or rollback() first",
            )
        return make_backup(self)

    def backups_available(self) -> builtins.list[dict[str, Any]]:
        """Manifests of the complete backups in the backup store, newest first."""
        return list_backups(self.backups)

    def verify(self, deep: bool = False) -> VerifyReport:
        """Check that every published (and unpurged expired) version's object is in the
        store with the catalog's size and checksum; `deep` downloads and re-hashes."""
        return verify_store(self, deep=deep)

    def verify_cache(self, repair: bool = True) -> CacheVerifyReport:
        """Re-hash this host's cached copies against the catalog; with `repair`, evict
        damaged ones and download them again (verified). Reads every cached byte."""
        return verify_cache(self, repair=repair)

    def recover(self, deep: bool = False, dry_run: bool = False) -> RecoverReport:
        """Re-upload, from this host's verified cache, published versions whose objects
        are missing or corrupt in the store."""
        return recover_from_cache(self, deep=deep, dry_run=dry_run)

    def cache_status(self) -> CacheStatus:
        """This host's cache use and limit."""
        return cache_status(self)

    def prune_cache(self) -> CacheReport:
        """Drop cached copies of expired or purged versions, then evict down to the limit."""
        return prune_cache(self)

    def clear_cache(self) -> CacheReport:
        """Evict every cached copy on this host."""
        return clear_cache(self)

    def hosts(self) -> builtins.list[HostSummary]:
        """Hosts known to the catalog, with what their caches hold."""
        return list_hosts(self)

    def decommission_host(self, name: str) -> int:
        """Forget a host and its cached copies in the catalog (its files are not touched)."""
        return decommission_host(self, name)

    # -- the data path (used by RepoFile) ------------------------------------------------

    def _store_for(self, bucket: str) -> Store:
        store = self._stores.get(bucket)
        if store is None:
            store = self._stores[bucket] = self.store.for_bucket(bucket)
        return store

    def _upload(self, record: FileRecord, progress: Progress | None = None) -> FileRecord:
        source = self._upload_source(record)
        try:
            result = self._put(record, source, progress)
        except ConflictError:
            # Something that is not ours sits at this version's key: the leftover of an
            # attempt that failed verification and could not be removed. Objects are
            # never overwritten, so the version moves to a fresh key (the leftover is an
            # orphan for garbage collection) and the upload is tried once more.
            record, source = self._rekey(record, source)
            result = self._put(record, source, progress)
        return self._finish_upload(record, source, result)

    def _upload_source(self, record: FileRecord) -> Path:
        source = self.cache.staging_path(record.key)
        if not source.exists():
            # Uploaded before, but that transaction was rolled back: the verified copy
            # moved into the cache then, and holds the same bytes.
            cached = self.cache.cache_path(record.key)
            if not cached.exists():
                raise NotFoundError(
                    f"{record.path} (file {record.file_id}) has no content to upload",
                    hint="write it first with touch() or open('w')",
                )
            source = cached
        return source

    def _put(self, record: FileRecord, source: Path, progress: Progress | None) -> PutResult:
        """Send one version's bytes to the store (no catalog work: safe in worker threads)."""
        metadata = {
            "repo-path": record.path,
            "repo-origin": record.origin,
            "repo-created": record.created_at.isoformat(),
        }
        store = self._store_for(record.bucket)
        return store.put_file(record.key, source, metadata=metadata, progress=progress)

    def _put_object(
        self,
        path: str,
        key: str,
        source: Path | bytes,
        created_at: datetime,
        progress: Progress | None,
    ) -> PutResult:
        """Send a new version's bytes to this repository's store before its row exists
        (`add_tree`); the object's metadata is what a blind restore adopts it by."""
        metadata = {
            "repo-path": path,
            "repo-origin": self.host,
            "repo-created": created_at.isoformat(),
        }
        if isinstance(source, bytes):
            return self.store.put_bytes(key, source, metadata=metadata, progress=progress)
        return self.store.put_file(key, source, metadata=metadata, progress=progress)

    def _keep_uploaded(self, record: FileRecord, source: Path | None) -> None:
        """Move the verified staging copy of an uploaded version into the cache (None:
        the copy is there already, `LocalCache.store_bytes`)."""
        assert record.size is not None
        self._make_room(record.size)
        if source is not None:
            self.cache.adopt(source, record.key)
        # Recorded after commit: until then other sessions cannot see the file's row.
        self._note_copy(record.file_id, fresh=True, flush=False, key=record.key)

    def _finish_upload(self, record: FileRecord, source: Path, result: PutResult) -> FileRecord:
        updated = self.catalog.mark_uploaded(
            record.file_id, md5=result.md5, size=result.size, when=_now()
        )
        if source != self.cache.cache_path(record.key):
            self._make_room(result.size)
            self.cache.adopt(source, record.key)
            self._uploaded.append(record.key)
        # Recorded after commit: until then other sessions cannot see the file's row.
        self._note_copy(record.file_id, fresh=True, flush=False, key=record.key)
        return updated

    def _write_journal(self, entry: dict[str, Any]) -> None:
        entry.update(repository_id=self.repository_id, host=self.host)
        safe_write(self.backups, entry, self.cache.root / "tmp")

    def _restore_staging(self) -> None:
        uploaded, self._uploaded = self._uploaded, []
        if not uploaded:
            return
        try:
            # Only versions that outlive the rollback, still waiting for their upload.
            still = self.catalog.files_by_key(uploaded)
            self.catalog.end_read()
        except RepoError as exc:
            logger.warning("could not check rolled-back uploads: %s", exc)
            return
        for key in uploaded:
            rec = still.get(key)
            if rec is None or rec.md5 is not None:
                continue
            staging = self.cache.staging_path(key)
            cached = self.cache.cache_path(key)
            if staging.exists() or not cached.exists():
                continue
            try:
                staging.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(cached, staging)  # a copy: the staging one stays writable
            except OSError as exc:
                logger.warning("could not restore the staging copy of %s: %s", key, exc)

    def _rekey(self, record: FileRecord, source: Path) -> tuple[FileRecord, Path]:
        new_key = record.key[:-TOKEN_LENGTH] + new_version_token()
        logger.warning("object %s is taken by a leftover; uploading to %s", record.key, new_key)
        updated = self.catalog.rekey(record.file_id, old_key=record.key, new_key=new_key)
        staging = self.cache.staging_path(new_key)
        staging.parent.mkdir(parents=True, exist_ok=True)
        # A link, not a move: a rollback restores the old key, whose staging copy stays.
        os.link(source, staging)
        return updated, staging

    def _publish(self, record: FileRecord) -> FileRecord:
        updated, superseded = self.catalog.publish(record.file_id, when=_now())
        if superseded:
            logger.info(
                "published %s (file %s); expired %s", updated.path, updated.file_id, superseded
            )
        return updated

    def _expire(self, record: FileRecord) -> FileRecord:
        return self.catalog.expire(record.file_id, when=_now())

    def _fetch(self, record: FileRecord, progress: Progress | None = None) -> Path:
        """The verified local copy of an uploaded file, downloading it if needed."""
        hit = self._hit(record)
        return hit if hit is not None else self._download(record, progress)

    def _fetch_into(
        self,
        record: FileRecord,
        out: BinaryIO,
        progress: Progress | None = None,
        *,
        keep_cached: bool = True,
    ) -> Path | None:
        """The cached copy of `record` if there is one (the caller reads it); otherwise
        download it into `out`, and into the cache in the same pass if `keep_cached`
        (verified at the end; on a mismatch `out` has had bad bytes and nothing is
        cached), and return None."""
        hit = self._hit(record)
        if hit is not None:
            return hit
        if not keep_cached:
            assert record.md5 is not None and record.size is not None
            got = self._store_for(record.bucket).get_into(record.key, out, progress=progress)
            check_download(record.key, got.md5, got.size, md5=record.md5, size=record.size)
            return None
        # The reader's output is what must be durable, not this copy.
        self._download(record, progress, sync=False, tee=out)
        return None

    def _hit(self, record: FileRecord) -> Path | None:
        hit, news = self.cache.use(record.key, record.size)
        if hit is None:
            return None
        if news:  # else the catalog's last access is less than a minute old too
            self._note_copy(record.file_id, fresh=False, key=record.key)
        return Path(hit)

    def _download(
        self,
        record: FileRecord,
        progress: Progress | None,
        *,
        sync: bool = True,
        tee: BinaryIO | None = None,
    ) -> Path:
        assert record.md5 is not None and record.size is not None
        self._make_room(record.size)
        path = self.cache.download(
            self._store_for(record.bucket),
            record.key,
            md5=record.md5,
            size=record.size,
            progress=progress,
            sync=sync,
            tee=tee,
        )
        self._note_copy(record.file_id, fresh=True, key=record.key)
        return path

    def _make_room(self, size: int) -> None:
        evicted = self.cache.make_room(size, self.config.cache_max_bytes)
        if evicted:
            self._forget_copies([e.key for e in evicted])

    def _forget_copies(self, keys: builtins.list[str]) -> None:
        self._evicted += keys
        self._flush_access()

    def _note_copy(
        self,
        file_id: int,
        *,
        fresh: bool,
        key: str,
        flush: bool = True,
        when: datetime | None = None,
    ) -> None:
        self._pending.append((file_id, when or _now(), fresh, key))
        due = time.monotonic() - self._last_flush > ACCESS_FLUSH_SECONDS
        if flush and (fresh or due or len(self._pending) >= MAX_PENDING):
            self._flush_access()

    def _flush_access(self) -> None:
        """Write the cache bookkeeping, in side transactions of its own.

        On SQLite, while this session holds the write lock, a side transaction would wait
        on ourselves, and the bookkeeping would otherwise ride in (and be undone with) the
        user's transaction: it waits for the commit or rollback instead.
        """
        if not self._bookkeeping:
            self._pending.clear()
            self._evicted.clear()
            return
        if not (self._pending or self._evicted):
            return
        if self.catalog.db.is_sqlite and self.catalog.db.in_write:
            return
        pending, self._pending = self._pending, []
        evicted, self._evicted = self._evicted, []
        # A copy evicted since it was used must not be recorded again.
        used = [
            (f, when, fresh)
            for f, when, fresh, key in pending
            if os.path.exists(self.cache.cache_file(key))
        ]
        try:
            self.catalog.record_copies(self.host, used, cache_max_bytes=self.config.cache_max_bytes)
            self.catalog.forget_copies(self.host, evicted)
        except PermissionDeniedError as exc:
            # A read-only database user: the list of copies is advisory, so reads carry
            # on without it for the rest of this session.
            logger.info("not recording this host's cached copies: %s", exc)
            self._bookkeeping = False
        except RepoError as exc:
            # Bookkeeping must never fail a read or a commit, and the catalog's list of
            # copies is advisory (a stale entry is harmless); keep it for the next flush,
            # which re-checks which versions still exist (GC may have purged one).
            logger.warning("could not record cache use yet: %s", exc)
            self._pending = pending + self._pending
            self._evicted = evicted + self._evicted
        self._last_flush = time.monotonic()
