"""A session: one open repository's parts, its transaction and this host's bookkeeping.

Every operation takes a `Session`. It owns the configuration, the catalog connection,
the store of each bucket, this host's cache and staging area, the backup place, and what
must happen at commit and rollback (the change journal, the cached-copy bookkeeping,
staging copies a rollback must give back). Parts are opened when first used, so a
command that needs only the store (listing backups) never connects to the catalog.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import weakref
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .backup_place import BackupPlace, open_backup_place
from .cache import LocalCache, own_directory
from .cached_copies import CachedCopies
from .catalog import Catalog
from .catalog.activity import CatalogUser, lock_holders, terminate
from .config import Config, load_config
from .errors import (
    CatalogBusyError,
    CatalogError,
    RepoError,
    UsageError,
)
from .journal import safe_write
from .local_owner import claim_local_root, secure_local_root
from .staging import StagingArea
from .store_set import StoreSet
from .stores.local import PRIVATE_FILE, make_directories
from .urls import mask_url

if TYPE_CHECKING:
    from types import TracebackType

    from .catalog.records import FileRecord
    from .catalog.replicas import Replica
    from .stores import Store

__all__ = ["ConfigSource", "Session"]

logger = logging.getLogger(__name__)

#: What a configuration may be given as: a path to a JSON file, a mapping of settings,
#: a loaded `Config`, or None for the environment and the default file.
ConfigSource = str | os.PathLike[str] | Mapping[str, Any] | Config | None

#: This host's scratch directory under ``local_root`` (journal entries, backups).
SCRATCH = "tmp"

#: How long destroy, restore and migrations wait for a lock on the catalog.
EXCLUSIVE_WAIT_SECONDS = 30.0

_T = TypeVar("_T")


class Session:
    """The parts of one repository as seen from this host, and its open transaction.

    Not thread-safe, except `locate` once the store is open. Close it when done.
    """

    def __init__(self, config: ConfigSource = None) -> None:
        self.config: Config = load_config(config)
        self.host: str = self.config.host_name
        # Uploads in the open transaction whose verified copy moved from staging into the
        # cache: a rollback puts a staging copy back, so the version stays uploadable.
        self._uploaded: list[str] = []
        self._created: list[tuple[str, Store]] = []
        #: The configured stores by name (docs/replicas.md), opened on first use.
        self.stores = StoreSet(self.config)
        #: Versions published in the open transaction, to copy once it commits
        #: (``replicate_on_publish: now``), and what copies them (set by `Repo`).
        self.published: list[int] = []
        self.after_commit: Callable[[Session, list[int]], object] | None = None

    @classmethod
    def open(cls, config: ConfigSource = None) -> Session:
        """A session ready for work: the catalog's schema up to date, the store opened,
        and the catalog checked to be whole (not half restored)."""
        session = cls(config)
        try:
            session.exclusively(
                "upgrading the catalog", session.catalog.ensure_schema, announce=False
            )
            session.store  # noqa: B018 - opened now: a wrong store fails here, not later
            session.backups  # noqa: B018
            repository_id, unfinished = session.catalog.identity()
            if unfinished is not None:
                raise CatalogError(
                    f"the catalog is half restored: a restore of backup {unfinished} "
                    "did not finish, so it lacks the commits made after that backup",
                    hint="run `repo restore` again to finish it",
                )
            session.repository_id = repository_id
            claim_local_root(
                Path(session.config.local_root),
                repository_id=repository_id,
                store_url=session.config.store_url,
                catalog=session.catalog,
                cache=session.cache,
                store=session.store,
                directories=(
                    session.cache.cache_dir,
                    session.staging.directory,
                    Path(session.config.local_root) / SCRATCH,
                ),
            )
            # A function of plain values, not a bound method: the catalog must not keep
            # the session alive (see `_release`).
            session.catalog.on_commit = functools.partial(
                _write_journal,
                session.backups,
                repository_id=repository_id,
                host=session.host,
                scratch=Path(session.config.local_root) / SCRATCH,
            )
        except BaseException:
            session.close(discard=True)
            raise
        return session

    # -- parts, opened when first used ---------------------------------------------------

    @cached_property
    def catalog(self) -> Catalog:
        """The catalog, and the open transaction on it."""
        catalog = Catalog(self.config.database_url)
        logger.info("catalog %s", self.config.masked_database_url())
        # A session dropped without `close()` (a service making one per request) gives
        # its connection back when it is collected, rather than at the process's end.
        weakref.finalize(self, _release, catalog)
        return catalog

    @cached_property
    def store(self) -> Store:
        """The store new versions go to (the configured ``store``)."""
        store = self.stores.default
        logger.info("store %s; this host is %s", mask_url(store.url), self.host)
        return store

    @cached_property
    def cache(self) -> LocalCache:
        """This host's verified copies."""
        return LocalCache(self.config.local_root)

    @cached_property
    def staging(self) -> StagingArea:
        """This host's copies of versions being written or uploaded."""
        return StagingArea(self.config.local_root)

    @cached_property
    def copies(self) -> CachedCopies:
        """This host's cache together with the catalog's record of what it holds."""
        return CachedCopies(
            self.catalog, self.cache, host=self.host, limit=self.config.cache_max_bytes
        )

    @cached_property
    def backups(self) -> BackupPlace:
        """Where catalog backups and the change journal live."""
        return open_backup_place(self.config, self.store)

    @cached_property
    def repository_id(self) -> str:
        """The catalog's identity, stamped on backups and journal entries."""
        repository_id, _unfinished = self.catalog.identity()
        return repository_id

    def scratch_dir(self) -> Path:
        """A directory for this host's temporary files (journal entries, backups): ours
        alone (see `repo.local_owner`), made private if missing."""
        path = Path(self.config.local_root) / SCRATCH
        secure_local_root(path.parent, [path])
        own_directory(str(path), "local_root's directory", create=True)  # or say why not
        return path

    def use_store(self, store: Store) -> None:
        """Make `store` this session's store (for tools and tests that tune one); the
        one it replaces is closed."""
        self.__dict__["store"] = store
        old = self.stores.use_default(store)
        if old is not None and old is not store:
            old.close()

    def locate(self, rec: FileRecord) -> Store:
        """The store holding `rec`'s own object, once the catalog's word for where it is
        has been checked (`StoreSet.locate`): a catalog row must not choose what a host
        reads, writes or deletes."""
        return self.stores.locate(rec)

    def check_readable(self, rec: FileRecord) -> None:
        """Check `rec`'s key before its cached copy is read or any copy fetched: with one
        store, `locate`; with several, only that the key is this repository's (its own
        store may have been replaced, and other stores hold copies)."""
        if self.config.stores:
            self.stores.check_own_key(rec)
        else:
            self.locate(rec)

    def locate_copy(self, rec: FileRecord, copy: Replica) -> Store:
        """The store holding `copy` of `rec`, once checked (`StoreSet.locate_copy`)."""
        return self.stores.locate_copy(rec, copy)

    # -- the transaction -----------------------------------------------------------------

    def uploaded_in_transaction(self, key: str) -> None:
        """Note an upload whose staging copy moved into the cache (see `rollback`)."""
        self._uploaded.append(key)

    def created_object(self, key: str, store: Store | None = None) -> None:
        """Note an object this transaction wrote to `store` (the default one unless given):
        on a rollback, the ones no uploaded version names are deleted rather than left for
        ``gc --orphans``. Safe in worker threads (a list's append is atomic)."""
        self._created.append((key, self.store if store is None else store))

    def require_clean(self, what: str) -> None:
        """Refuse `what` while this session has uncommitted catalog changes."""
        if "catalog" in self.__dict__ and self.catalog.db.in_write:
            raise UsageError(
                f"{what} needs a clean session: there are uncommitted changes",
                hint="commit() or rollback() first",
            )

    def exclusively(
        self,
        what: str,
        work: Callable[[], _T],
        *,
        terminate_others: bool = False,
        wait_seconds: float | None = None,
        announce: bool = True,
    ) -> _T:
        """Run `work`, which needs the catalog to itself (destroy, restore, a migration),
        waiting at most `wait_seconds` for each lock it takes. If another session holds
        one that long, fail naming it; or, with `terminate_others`, end those sessions
        (their open transactions roll back) and try once more.

        With `announce`, sessions holding the catalog beforehand are named at once (a
        warning), so a wait is never silent; opening a repository, which rarely migrates,
        skips that look."""
        if wait_seconds is None:
            wait_seconds = EXCLUSIVE_WAIT_SECONDS
        db = self.catalog.db
        if announce and (holders := lock_holders(db)):
            logger.warning(
                "%s: waiting up to %g s for %s",
                what,
                wait_seconds,
                "; ".join(h.describe() for h in holders[:5]),
            )
        db.lock_wait_seconds = wait_seconds
        try:
            try:
                return work()
            except CatalogBusyError as exc:
                self.catalog.rollback()
                holders = lock_holders(db)
                if not (terminate_others and holders):
                    raise _in_use(what, holders, wait_seconds) from exc
                logger.warning("%s: ending %s", what, "; ".join(h.describe() for h in holders))
                terminate(db, holders)
            return work()
        finally:
            db.lock_wait_seconds = None

    def commit(self) -> None:
        self.catalog.commit()
        self._uploaded.clear()
        self._created.clear()
        self.copies.flush()
        published, self.published = self.published, []
        if published and self.after_commit is not None:
            self.after_commit(self, published)

    def rollback(self) -> None:
        self.published = []
        self.catalog.rollback()
        self._restore_staging()
        self._remove_unrecorded()
        self.copies.flush()  # after the rollback, so the bookkeeping is kept

    def close(self, *, discard: bool = False) -> None:
        """Roll back anything uncommitted and release connections and stores."""
        opened = self.__dict__
        try:
            if "catalog" in opened and not discard:
                self.rollback()
        finally:
            if "catalog" in opened:
                self.catalog.close()
            if "backups" in opened:
                self.backups.close()
            for store in self.stores.opened():
                store.close()

    def __enter__(self) -> Session:
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
            staging = self.staging.path_of(key)
            cached = self.cache.cache_path(key)
            if staging.exists() or not cached.exists():
                continue
            try:
                make_directories(staging.parent)
                shutil.copyfile(cached, staging)  # a copy: the staging one stays writable
                os.chmod(staging, PRIVATE_FILE)
            except OSError as exc:
                logger.warning("could not restore the staging copy of %s: %s", key, exc)

    def _remove_unrecorded(self) -> None:
        """Delete the objects the rolled-back transaction wrote that no uploaded version
        names now: a version recorded as uploaded (by a commit before) keeps its object."""
        created, self._created = self._created, []
        if not created:
            return
        try:
            still = self.catalog.files_by_key([k for k, _ in created])
            self.catalog.end_read()
            gone = [(k, s) for k, s in created if k not in still or still[k].md5 is None]
            stores = {id(s): s for _, s in gone}.values()  # the default one, or placed ones
            removed = sum(s.delete_many([k for k, t in gone if t is s]) for s in stores)
        except RepoError as exc:
            logger.warning(
                "could not delete the %d objects the rolled-back work uploaded (%s); "
                "`repo gc --orphans` deletes them once orphan_grace_seconds have passed",
                len(created),
                exc,
            )
            return
        logger.info("deleted %d objects the rolled-back work had uploaded", removed)

    def __repr__(self) -> str:
        return f"<Session store={self.config.store_url!r} host={self.host!r}>"


def _write_journal(
    place: BackupPlace, entry: dict[str, Any], *, repository_id: str, host: str, scratch: Path
) -> None:
    entry.update(repository_id=repository_id, host=host)
    safe_write(place, entry, scratch)


def _release(catalog: Catalog) -> None:
    """Roll back and give back the connection of a session nobody holds any more."""
    try:
        catalog.close()
    except Exception:  # a finalizer must not raise, and nothing is lost here
        logger.debug("could not release the catalog connection", exc_info=True)


def _in_use(what: str, holders: list[CatalogUser], waited: float) -> CatalogError:
    if not holders:  # they let go between the time-out and the look
        return CatalogError(
            f"{what}: the catalog was busy for {waited:g} s", hint="run the command again"
        )
    named = "; ".join(h.describe() for h in holders[:5])
    more = f" and {len(holders) - 5} more" if len(holders) > 5 else ""
    return CatalogError(
        f"{what}: waited {waited:g} s; the catalog is in use by {named}{more}",
        hint="let those finish, commit or close them (a program holding a `Repo` with "
        "uncommitted changes, a psql session), or run again with --terminate-others",
    )
