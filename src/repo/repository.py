"""Repo: the facade. Each method makes one call into the module that owns the work.

The method imports that module when it is called: a command that reads one file loads
neither garbage collection nor backup nor ingest (start-up time, bench/startup.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, BinaryIO

from . import lookup
from .errors import at_boundary
from .session import ConfigSource, Session
from .transfers import DEFAULT_WORKERS

if TYPE_CHECKING:
    import builtins
    import os
    from collections.abc import Iterable, Iterator
    from datetime import date, datetime, timedelta
    from types import TracebackType

    from .archive import ArchiveReport
    from .backup import BackupReport
    from .backup_place import BackupPlace
    from .cache import LocalCache
    from .cache_admin import CacheReport, CacheStatus
    from .cache_check import CacheVerifyReport
    from .catalog import Catalog, HostSummary
    from .config import Config
    from .copy_list import StoreCopy
    from .erase import PurgeReport
    from .expiring import ScheduleReport
    from .fetch import FetchReport
    from .file import RepoFile
    from .gc import GcReport
    from .ingest import AddReport
    from .progress import ProgressListener
    from .recover import RecoverReport
    from .replicate import ReplicateReport
    from .store_admin import StoreSummary
    from .stores import Store
    from .stores.base import Progress
    from .thaw import ThawReport, ThawStatus
    from .verify import VerifyReport

__all__ = ["Repo"]


class Repo:
    """A file repository: a catalog (PostgreSQL or SQLite) plus an object store, as seen
    from this host.

    Not thread-safe: use one `Repo` per thread. Catalog changes become visible to other
    hosts on `commit()`; ``with Repo() as r:`` commits on success and rolls back on an
    exception.
    """

    @at_boundary("opening the repository")
    def __init__(self, config: ConfigSource = None) -> None:
        self.session: Session = Session.open(config)
        self.session.after_commit = _replicate_published
        """The repository's parts and open transaction (for operations of your own)."""

    def __repr__(self) -> str:
        return f"<Repo store={self.store.url!r} catalog={self.config.masked_database_url()!r}>"

    # -- the parts (supported: for tools and tests that need a lower layer) -------------

    @property
    def config(self) -> Config:
        return self.session.config

    @property
    def host(self) -> str:
        """This host's name, as the catalog knows it (``host_name``)."""
        return self.session.host

    @property
    def catalog(self) -> Catalog:
        return self.session.catalog

    @property
    def store(self) -> Store:
        """The store new versions go to."""
        return self.session.store

    @property
    def cache(self) -> LocalCache:
        """This host's verified cache."""
        return self.session.cache

    @property
    def backups(self) -> BackupPlace:
        """Where catalog backups and the change journal are kept."""
        return self.session.backups

    # -- transactions --------------------------------------------------------------------

    @at_boundary("committing")
    def commit(self) -> None:
        """Make this session's catalog changes visible to everyone."""
        self.session.commit()

    @at_boundary("rolling back")
    def rollback(self) -> None:
        """Discard this session's uncommitted catalog changes.

        Objects already uploaded stay in the store unreferenced; garbage collection
        removes them.
        """
        self.session.rollback()

    @at_boundary("closing the repository")
    def close(self) -> None:
        """Roll back anything uncommitted and release connections."""
        self.session.close()

    def __enter__(self) -> Repo:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.session.__exit__(exc_type, exc, tb)

    # -- naming versions -----------------------------------------------------------------

    @at_boundary("adding a version")
    def add_file(self, path: str | None = None) -> RepoFile:
        """A new, unpublished version of `path` (a unique path is made when omitted)."""
        return lookup.new_version(self.session, path)

    def get_file(self, path: str) -> RepoFile | None:
        """The current (published) version of `path`, or None."""
        return lookup.published(self.session, path)

    def file(self, file_id: int) -> RepoFile:
        """A version by its id; `NotFoundError` if there is none."""
        return lookup.by_id(self.session, file_id)

    def find(
        self,
        *,
        any: Iterable[str] | None = None,
        all: Iterable[str] | None = None,
        exclude: Iterable[str] | None = None,
        published: bool = True,
        pattern: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[RepoFile]:
        """Files with every tag in `all`, at least one in `any` and none in `exclude`
        (and, given a glob `pattern`, a path matching it), ordered by path.

        Tags on a file's path count as the file's own. With no tags, every current
        file. ``published=False`` searches versions in every state. ``limit=N``: only
        the first N files (the catalog stops there). For an answer to read as it
        goes, see `iter_find`; for how many, `count`.
        """
        return lookup.find(
            self.session,
            any=any or (),
            all=all or (),
            exclude=exclude or (),
            pattern=pattern,
            published=published,
            limit=limit,
        )

    def iter_find(
        self,
        *,
        any: Iterable[str] | None = None,
        all: Iterable[str] | None = None,
        exclude: Iterable[str] | None = None,
        published: bool = True,
        pattern: str | None = None,
    ) -> Iterator[RepoFile]:
        """`find`'s files in the same order, read from the catalog a page at a time as
        the loop goes on: a loop that stops early reads little.

        Each page is a read of its own, so a file published meanwhile may show up
        (if its path sorts after the page being read) where `find` would not have it.
        """
        return lookup.iter_find(
            self.session,
            any=any or (),
            all=all or (),
            exclude=exclude or (),
            pattern=pattern,
            published=published,
        )

    def count(
        self,
        *,
        any: Iterable[str] | None = None,
        all: Iterable[str] | None = None,
        exclude: Iterable[str] | None = None,
        published: bool = True,
        pattern: str | None = None,
    ) -> int:
        """How many files `find` would return, counted in the catalog without reading
        them (a `pattern` needs their paths, so it reads them)."""
        return lookup.count(
            self.session,
            any=any or (),
            all=all or (),
            exclude=exclude or (),
            pattern=pattern,
            published=published,
        )

    def wait(
        self,
        *,
        any: Iterable[str] | None = None,
        all: Iterable[str] | None = None,
        exclude: Iterable[str] | None = None,
        path: str | None = None,
        pattern: str | None = None,
        timeout: float | timedelta,
        limit: int | None = None,
    ) -> builtins.list[RepoFile]:
        """Wait until a current file matches: the files `find` gives for the query (and,
        given a `path`, only the current version of that path) as soon as there is one
        (at once if there is one already), or an empty list after `timeout` (seconds or
        a timedelta; 0 asks once).

        PostgreSQL wakes on each commit that publishes or tags (LISTEN/NOTIFY) and also
        looks every few seconds; SQLite looks with growing pauses (0.1 s to 5 s). Commit
        or roll back first: a wait longer than 0 refuses uncommitted changes.
        """
        from . import waiting

        return waiting.wait(
            self.session,
            any=any or (),
            all=all or (),
            exclude=exclude or (),
            path=path,
            pattern=pattern,
            timeout=timeout,
            limit=limit,
        )

    def list(self, pattern: str = "*", *, state: str = "published") -> builtins.list[RepoFile]:
        """Files whose path matches the glob `pattern`, in `state`.

        `state` is ``published`` (the current versions, the default), ``unpublished``,
        ``expired`` or ``all``. ``*`` and ``?`` match any character including ``/``;
        ``[abc]`` a set.
        """
        return lookup.matching(self.session, pattern, state)

    def history(self, path: str) -> builtins.list[RepoFile]:
        """Every version of `path`, newest first."""
        return lookup.history(self.session, path)

    def newest(self, path: str) -> RepoFile:
        """The most recently added version of `path`, in any state."""
        return lookup.newest(self.session, path)

    def current(self, path: str) -> RepoFile:
        """The published version of `path`; `NotFoundError` (saying why) if there is none."""
        return lookup.current(self.session, path)

    def tags_of(self, files: Iterable[RepoFile]) -> dict[int, builtins.list[str]]:
        """Every tag (own and the path's) of each file, by file id, in one query per batch."""
        return lookup.tags_of(self.session, files)

    def copies(self, files: Iterable[RepoFile]) -> dict[int, builtins.list[StoreCopy]]:
        """Each file's copies in the repository's named stores, by file id: its own
        object and the ``replicas`` the catalog records (docs/replicas.md)."""
        from .copy_list import copies_of

        return copies_of(self.session, [f.record for f in files])

    def status(self) -> dict[str, tuple[int, int]]:
        """Number of files and bytes per state."""
        return self.session.catalog.counts()

    # -- moving content ------------------------------------------------------------------

    @at_boundary("adding a file")
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
        mode: int | None = None,
    ) -> RepoFile:
        """A new version of `path` with the content of a local file or a binary stream.

        Uploaded and verified, then tagged (and date-tagged when `when` or `period` is
        given), then published if asked. Nothing is recorded if the input is bad.

        A local file is sent from where it is, read once, and no copy of it is kept in
        this host's cache (it is on this host already) unless `keep_cached` is true. A
        stream is taken into a private file first, and that copy is kept in the cache
        unless `keep_cached` is false.

        The version records `mode` (permission bits such as ``0o640``), or else a local
        file's own; copies written out (`RepoFile.save_as`, `fetch`) get them, less the
        reader's umask.
        """
        from . import ingest

        return ingest.add_one(
            self.session,
            path,
            source,
            tags=tags,
            when=when,
            period=period,
            publish=publish,
            progress=progress,
            keep_cached=keep_cached,
            mode=mode,
        )

    @at_boundary("adding a tree")
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
        follow_symlinks: bool = False,
        mode: int | None = None,
    ) -> AddReport:
        """Add every file under `directory` (paths relative to it, under `prefix`).

        Uploads run in `workers` threads; catalog work stays in this thread. All or
        nothing: on any failure the error is raised and the caller's rollback undoes the
        catalog side (uploaded objects become orphans for garbage collection). The files
        are on this host already, so no copy is kept in its cache (a later read here
        downloads it) unless `keep_cached` is true: a second copy of every file would
        cost a write each and, for a tree larger than the cache, evict what this host
        reads. Symbolic links under `directory` are skipped and reported
        (`AddReport.skipped`) unless `follow_symlinks`. Each version records its file's
        permission bits, or `mode` for all of them.
        """
        from . import ingest

        return ingest.add_tree(
            self.session,
            directory,
            prefix=prefix,
            tags=tags,
            when=when,
            period=period,
            publish=publish,
            workers=workers,
            progress=progress,
            keep_cached=keep_cached,
            follow_symlinks=follow_symlinks,
            mode=mode,
        )

    @at_boundary("fetching files")
    def fetch(
        self,
        files: Iterable[RepoFile],
        *,
        dest: str | os.PathLike[str] | None = None,
        overwrite: bool = False,
        workers: int = DEFAULT_WORKERS,
        progress: ProgressListener | None = None,
    ) -> FetchReport:
        """Bring `files` into this host's cache, verified, downloading in parallel what
        is not there yet; with `dest`, also copy each to ``dest/<path>``."""
        from .fetch import fetch_many

        return fetch_many(
            self.session, files, dest=dest, overwrite=overwrite, workers=workers, progress=progress
        )

    # -- archival ------------------------------------------------------------------------

    @at_boundary("archiving")
    def archive(
        self,
        files: Iterable[RepoFile],
        *,
        storage_class: str | None = None,
        older_than: timedelta | None = None,
        dry_run: bool = False,
        now: datetime | None = None,
    ) -> ArchiveReport:
        """Move the objects of `files` (published or expired; uploaded more than
        `older_than` ago) to an archival `storage_class` (``archive_class`` by default):
        same key and content, verified, then recorded. Commits each version; needs a
        session without uncommitted changes. S3 stores only (docs/archiving.md)."""
        from . import archive

        return archive.archive(
            self.session,
            files,
            storage_class=storage_class,
            older_than=older_than,
            dry_run=dry_run,
            now=now,
        )

    @at_boundary("thawing")
    def thaw(
        self,
        files: Iterable[RepoFile],
        *,
        days: int = 7,
        tier: str = "Standard",
        wait: float | None = None,
    ) -> ThawReport:
        """Ask S3 to restore a readable copy of each archived version in `files` for
        `days` days (`tier`: Expedited, Standard or Bulk); with `wait` seconds, poll
        with backoff until all are readable."""
        from . import thaw

        return thaw.thaw(self.session, files, days=days, tier=tier, wait=wait)

    def thaw_status(self, files: Iterable[RepoFile]) -> builtins.list[ThawStatus]:
        """Where each version's restore stands (a HEAD each: never a retrieval)."""
        from . import thaw

        return thaw.thaw_status(self.session, files)

    # -- housekeeping --------------------------------------------------------------------

    @at_boundary("garbage collection")
    def gc(
        self, *, dry_run: bool = False, orphans: bool = False, now: datetime | None = None
    ) -> GcReport:
        """Purge unpublished versions past ``unpublished_ttl_seconds``, expired ones past
        ``expired_ttl_seconds`` that ``backups_before_purge`` backups have seen, and with
        `orphans` unreferenced objects past ``orphan_grace_seconds``. Never a published
        version. Commits as it goes; needs a session without uncommitted changes."""
        from .gc import collect_garbage

        return collect_garbage(self.session, dry_run=dry_run, orphans=orphans, now=now)

    @at_boundary("expiring by schedule")
    def expire_by_schedule(
        self,
        *,
        keep_hourly: int = 0,
        keep_daily: int = 0,
        keep_weekly: int = 0,
        keep_monthly: int = 0,
        keep_within: timedelta | str | None = None,
        tags: Iterable[str] = (),
        pattern: str | None = None,
        all_paths: bool = False,
        timezone: str | None = None,
        dry_run: bool = False,
    ) -> ScheduleReport:
        """Expire the published versions selected by `tags` (every one), a glob `pattern`
        or `all_paths` that a grandfather-father-son schedule does not keep: the newest
        version of each of the last N hours, days, ISO weeks and months that have one,
        and every version within `keep_within` (``7d``) of the newest. A version's time
        is its finest date tag, else its publish time; periods count in `timezone`
        (``retention_timezone``). The report says which rules kept each version. Not
        committed: the caller's commit (or ``with Repo()``) makes it one transaction."""
        from . import expiring

        return expiring.expire_by_schedule(
            self.session,
            keep_hourly=keep_hourly,
            keep_daily=keep_daily,
            keep_weekly=keep_weekly,
            keep_monthly=keep_monthly,
            keep_within=keep_within,
            tags=tags,
            pattern=pattern,
            all_paths=all_paths,
            timezone=timezone,
            dry_run=dry_run,
        )

    @at_boundary("purging")
    def purge(
        self, target: int | str, *, all_versions: bool = False, dry_run: bool = False
    ) -> PurgeReport:
        """Delete a version now, whatever its state: `target` is a file id, or a path with
        one version (every version with `all_versions`). Its object, catalog rows and this
        host's copies go, and the journal records it; backups taken before keep it
        (docs/deleting.md). Commits; needs a session without uncommitted changes."""
        from . import erase

        return erase.purge(self.session, target, all_versions=all_versions, dry_run=dry_run)

    @at_boundary("backing up the catalog")
    def backup(self) -> BackupReport:
        """Back the catalog up into the backup store (one snapshot, manifest last), then
        apply retention (``backup_keep``). Needs a session without uncommitted changes."""
        from .backup import make_backup

        return make_backup(self.session)

    def list_backups(self) -> builtins.list[dict[str, Any]]:
        """Manifests of the complete backups in the backup store, newest first."""
        from .backup import list_backups

        return list_backups(self.session.backups)

    @at_boundary("verifying the store")
    def verify(self, *, deep: bool = False, include_archived: bool = False) -> VerifyReport:
        """Check that every published (and unpurged expired) version's object is in the
        store with the catalog's size and checksum; `deep` downloads and re-hashes,
        archived versions only with `include_archived` (a billed retrieval)."""
        from . import verify

        return verify.verify_store(self.session, deep=deep, include_archived=include_archived)

    @at_boundary("verifying the cache")
    def verify_cache(self, *, repair: bool = True) -> CacheVerifyReport:
        """Re-hash this host's cached copies against the catalog; with `repair`, evict
        damaged ones and download them again (verified). Reads every cached byte."""
        from . import cache_check

        return cache_check.verify_cache(self.session, repair=repair)

    @at_boundary("dropping a copy")
    def drop_copy(self, file_id: int, store: str) -> int:
        """Delete version `file_id`'s copy in the named `store`, never going below
        ``mincopies`` verified copies, whatever runs at the same time; returns the
        verified copies left (docs/replicas.md). Commits."""
        from . import drop

        return drop.drop_copy(self.session, file_id, store)

    @at_boundary("replicating")
    def replicate(
        self, *, dry_run: bool = False, progress: ProgressListener | None = None
    ) -> ReplicateReport:
        """Bring every live version up to ``numcopies`` verified copies in distinct stores
        (docs/replicas.md). Commits as it goes; needs a session without uncommitted changes.
        `progress` hears of each copy made."""
        from . import replicate

        return replicate.replicate(self.session, dry_run=dry_run, progress=progress)

    @at_boundary("recovering from the cache")
    def recover(self, *, deep: bool = False, dry_run: bool = False) -> RecoverReport:
        """Re-upload, from this host's verified cache, published versions whose objects
        are missing or corrupt in the store."""
        from . import recover

        return recover.recover_from_cache(self.session, deep=deep, dry_run=dry_run)

    @at_boundary("reading the cache")
    def cache_status(self) -> CacheStatus:
        """This host's cache use and limit."""
        from . import cache_admin

        return cache_admin.cache_status(self.session)

    @at_boundary("pruning the cache")
    def prune_cache(self) -> CacheReport:
        """Drop cached copies of expired or purged versions, then evict down to the limit."""
        from . import cache_admin

        return cache_admin.prune_cache(self.session)

    @at_boundary("clearing the cache")
    def clear_cache(self) -> CacheReport:
        """Evict every cached copy on this host."""
        from . import cache_admin

        return cache_admin.clear_cache(self.session)

    def hosts(self) -> builtins.list[HostSummary]:
        """Hosts known to the catalog, with what their caches hold."""
        from . import cache_admin

        return cache_admin.list_hosts(self.session)

    def stores(self) -> builtins.list[StoreSummary]:
        """Every configured store and what the catalog records in it, then the store
        names the catalog has copies in that the configuration lacks (docs/replicas.md)."""
        from .store_admin import list_stores

        return list_stores(self.session)

    def decommission_store(self, name: str) -> int:
        """Forget every copy recorded in store `name`, which the configuration must no
        longer have; returns how many. Nothing in any store is touched. Commits."""
        from .store_admin import decommission_store

        return decommission_store(self.session, name)

    def decommission_host(self, name: str) -> int:
        """Forget a host and its cached copies in the catalog (its files are not touched)."""
        from . import cache_admin

        return cache_admin.decommission_host(self.session, name)


def _replicate_published(session: Session, file_ids: list[int]) -> None:
    """With ``replicate_on_publish: now``: the versions a commit published, copied."""
    from .replicate import replicate_published

    replicate_published(session, file_ids)
