"""Which repository a `local_root` belongs to: one store's, for good.

Two repositories sharing a host's cache would each take the other's copies for strays
(`repo cache prune` drops what its catalog does not know and its store does not have),
and after a restore such a copy can be the last one. So the first repository to use a
`local_root` writes its store and identity there (``.repository``), and a repository of
any other store is refused. A catalog recreated over the same store (destroy, then
create) takes the marker over: cached copies are named by object key, and objects are
never overwritten, so a copy is right for whichever catalog of that store reads it.

The marker is read as untrusted input: what does not parse as ours is refused, never
taken for ours. A directory that has no marker yet (made by an older version) is claimed
only if its cached copies are this repository's, judged on a sample.

Before any of that, `local_root` and its directories (cache, staging area, scratch) must
be this user's alone: owned by them, writable by nobody else, no symbolic links (another
user's directory is refused in one line, never used). They are made private (0700) if
missing, and made so if an older version left them readable by others.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import stat
import tempfile
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .cache import PLANTED_HINT, own_directory
from .errors import ConfigError, RepoError, UntrustedDataError
from .stores.local import PRIVATE_DIRECTORY, file_problem, make_directories

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from .cache import LocalCache
    from .catalog import Catalog
    from .stores import Store

__all__ = ["MARKER", "claim_local_root"]

logger = logging.getLogger(__name__)

MARKER = ".repository"
#: Cached copies looked up in the catalog to decide whether an unmarked root is ours.
SAMPLE = 200
#: Of those, how many are looked up in the store when the catalog knows none.
STORE_SAMPLE = 5
_MAX_MARKER_BYTES = 4096


def claim_local_root(
    root: Path,
    *,
    repository_id: str,
    store_url: str,
    catalog: Catalog,
    cache: LocalCache,
    store: Store,
    directories: Iterable[Path] = (),
) -> None:
    """Make sure `root`, and its `directories`, are this user's alone (`LocalDiskError`
    if not) and `root` is this repository's, marking it so if it is nobody's yet;
    `ConfigError` (saying whose it is) if it belongs to another."""
    secure_local_root(root, directories)
    if not repository_id:
        return  # no identity to claim with (a catalog mid-restore is refused elsewhere)
    marker = root / MARKER
    owner = _read(marker)
    if owner is not None:
        if owner.get("store") != store_url and owner.get("repository_id") == repository_id:
            # The same catalog, its default store replaced (a lost bucket, docs/replicas.md):
            # the cache is still this repository's.
            logger.info("%s: this repository's store is now %s", root, store_url)
            _write(marker, {"repository_id": repository_id, "store": store_url})
            return
        if owner.get("store") != store_url:
            theirs = owner.get("store")
            raise ConfigError(
                f"local_root {root} belongs to another repository"
                + (f" (store {theirs})" if isinstance(theirs, str) else "")
                + "; two repositories must not share a cache",
                hint="give this repository a 'local_root' of its own (or $REPO_LOCAL_ROOT)",
            )
        if owner.get("repository_id") == repository_id:
            return
        logger.info("%s: the catalog of %s was recreated; taking the cache over", root, store_url)
        marker.unlink(missing_ok=True)
    elif not _copies_are_ours(catalog, cache, store):
        raise ConfigError(
            f"local_root {root} holds cached copies that neither this repository's "
            "catalog nor its store has: it looks like another repository's cache",
            hint="give this repository a 'local_root' of its own (or $REPO_LOCAL_ROOT)",
        )
    _write(marker, {"repository_id": repository_id, "store": store_url})


def secure_local_root(root: Path, directories: Iterable[Path] = ()) -> None:
    """Refuse `root` or one of its `directories` unless it is ours alone; make missing
    ones (private), and take from an old one what an older version gave others."""
    own_directory(str(root), "local_root", create=True, follow=True)
    for directory in directories:
        try:
            if not own_directory(str(directory), "local_root's directory", create=False):
                make_directories(directory)
            elif (mode := stat.S_IMODE(os.stat(directory).st_mode)) & 0o077:
                os.chmod(directory, PRIVATE_DIRECTORY)
                logger.info("%s: made private (it was %o)", directory, mode)
        except OSError as exc:
            # A read-only or full local_root: reads may still work; writes will say why.
            logger.warning("could not make %s private: %s", directory, exc)


def _read(marker: Path) -> dict[str, Any] | None:
    """The marker's content; None if there is none; `ConfigError` if it is not one."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(marker, flags)  # never through a link, never hanging on a FIFO
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            problem: str | None = "is a symbolic link"
        else:
            raise ConfigError(
                f"cannot read {marker}: {exc.strerror}",
                hint="check the permissions of 'local_root'",
            ) from exc
    else:
        with os.fdopen(fd, "rb") as fp:
            problem = file_problem(os.fstat(fd))
            data = b"" if problem else fp.read(_MAX_MARKER_BYTES + 1)
    if problem:
        raise UntrustedDataError(f"{marker} {problem}: not used", hint=PLANTED_HINT)
    try:
        doc = json.loads(data) if len(data) <= _MAX_MARKER_BYTES else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("repository_id"), str):
        raise ConfigError(
            f"{marker} does not say which repository owns this local_root",
            hint="if the directory is this repository's cache, remove the file; otherwise "
            "give this repository a 'local_root' of its own",
        )
    return doc


def _copies_are_ours(catalog: Catalog, cache: LocalCache, store: Store) -> bool:
    """Does a sample of the cached copies belong to this repository: listed in its
    catalog, or (a catalog restored from an older backup) objects in its store?"""
    keys = []
    for root, _dirs, names in os.walk(cache.cache_dir):
        for name in names:
            if not name.startswith("."):
                rel = os.path.relpath(os.path.join(root, name), cache.cache_dir)
                keys.append(rel.replace(os.sep, "/"))
        if len(keys) >= SAMPLE:
            break
    if not keys:
        return True
    try:
        if catalog.files_by_key(keys[:SAMPLE]):
            return True
    finally:
        catalog.end_read()
    for key in keys[:STORE_SAMPLE]:
        try:
            store.head(key)
        except RepoError:
            continue
        return True
    return False


def _write(marker: Path, owner: dict[str, str]) -> None:
    doc = {**owner, "claimed_at": datetime.now(UTC).isoformat()}
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=marker.parent, prefix=".repository-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:  # 0600, as mkstemp makes it
                json.dump(doc, out)
            # Not over another's: a concurrent first claim by another repository wins.
            os.link(tmp, marker)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    except FileExistsError:
        # Someone claimed it first, between our look and our write: judge their claim.
        current = _read(marker)
        if current is not None and current.get("repository_id") != owner["repository_id"]:
            raise ConfigError(
                f"local_root {marker.parent} was just claimed by another repository",
                hint="give this repository a 'local_root' of its own",
            ) from None
    except OSError as exc:
        # A read-only or full local_root: reads may still work; the claim waits.
        logger.warning("could not mark %s as this repository's: %s", marker.parent, exc)
