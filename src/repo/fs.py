"""`repo://`: the repository as an fsspec filesystem (docs/fsspec.md).

``repo://reports/daily.csv`` is the current published version of that path, read from
this host's verified cache; ``...@12`` pins file 12 and ``...@release-3`` the version
tagged ``release-3`` (`parse_url_path`). A file opened for writing is spooled into the
staging area and becomes a new, published version when it is closed; one closed while
an exception is on its way out, or never closed, publishes nothing.

fsspec may call in from several threads (pyarrow does) and a `Repo` is not thread-safe:
each call borrows a `Repo` from a pool of idle ones (`RepoFileSystem.close_sessions`
closes them). This module imports fsspec: the CLI never imports it.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:
    from fsspec.spec import AbstractFileSystem
except ImportError as exc:  # an optional extra: say how to get it
    raise ImportError("repo:// needs fsspec: pip install 's3-file-repo[fsspec]'") from exc

from .errors import NotFoundError, StateError, UsageError
from .fs_files import CachedCopy, VersionWriter
from .fs_names import PROTOCOL, glob_escape, is_file_id, parse_url_path, url_path
from .permissions import current_umask
from .repository import Repo
from .staging import INCOMING_PREFIX

if TYPE_CHECKING:
    from collections.abc import Iterator
    from datetime import datetime

    from .file import RepoFile
    from .session import ConfigSource

__all__ = ["RepoFileSystem"]


# -- the filesystem --------------------------------------------------------------------


class RepoFileSystem(AbstractFileSystem):  # type: ignore[misc]  # fsspec has no types
    """fsspec's view of a repository: ``fsspec.filesystem("repo", config=...)``.

    `config` is what `Repo` takes (a path to a config file, or a dict of settings);
    None resolves as `Repo()` does ($REPO_CFG, ~/.repo_cfg, the embedded default).
    """

    protocol = PROTOCOL
    root_marker = ""

    def __init__(self, config: ConfigSource = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._config = config
        self._idle: list[Repo] = []
        self._idle_where: tuple[str | None, ...] = self._where()
        self._lock = threading.Lock()

    # -- sessions ----------------------------------------------------------------------

    def _where(self) -> tuple[str | None, ...]:
        """What the default configuration resolves from now: fsspec reuses a filesystem
        made without options, so its sessions must follow $REPO_CFG, $REPO_HOME, $HOME."""
        if self._config is not None:
            return ()
        env = os.environ
        return (env.get("REPO_CFG"), env.get("REPO_HOME"), os.path.expanduser("~"))

    @contextlib.contextmanager
    def _repo(self) -> Iterator[Repo]:
        """A `Repo` for this thread's call, its transaction ended when the call ends."""
        where = self._where()
        stale: list[Repo] = []
        with self._lock:
            if where != self._idle_where:
                stale, self._idle, self._idle_where = self._idle, [], where
            repo = self._idle.pop() if self._idle else None
        for old in stale:
            old.close()
        if repo is None:
            repo = Repo(self._config)
        try:
            yield repo
        finally:
            # The call's transaction ends (a read's too: the next call sees new commits).
            # A session that cannot even roll back is closed, not pooled.
            try:
                repo.rollback()
            except Exception:
                with contextlib.suppress(Exception):
                    repo.close()
            else:
                with self._lock:
                    keep = where == self._idle_where
                    if keep:
                        self._idle.append(repo)
                if not keep:
                    repo.close()

    def close_sessions(self) -> None:
        """Close the idle `Repo` sessions (the next call opens a new one)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for repo in idle:
            repo.close()

    # -- names -------------------------------------------------------------------------

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        text = str(path)
        if text.startswith(f"{PROTOCOL}://"):
            text = text[len(PROTOCOL) + 3 :]
        elif text.startswith(f"{PROTOCOL}::"):
            text = text[len(PROTOCOL) + 2 :]
        return text.strip("/")

    def unstrip_protocol(self, name: str) -> str:
        return f"{PROTOCOL}://{self._strip_protocol(name)}"

    # -- reading the catalog -----------------------------------------------------------

    def _version(self, repo: Repo, path: str, pin: str | None) -> RepoFile:
        """The version `path` names: current, a file id or the newest tagged version."""
        if pin is None:
            return repo.current(path)
        if is_file_id(pin):
            found = repo.file(int(pin))
            if found.path != path:
                raise NotFoundError(
                    f"file {pin} is a version of {found.path!r}, not of {path!r}",
                    hint=f"open {PROTOCOL}://{url_path(found.path, pin)}",
                )
            return found
        tagged = self._tagged(repo, glob_escape(path), pin)
        if path not in tagged:
            raise NotFoundError(f"no published or expired version of {path!r} is tagged {pin!r}")
        return tagged[path]

    @staticmethod
    def _tagged(repo: Repo, pattern: str, tag: str) -> dict[str, RepoFile]:
        """The newest published or expired version tagged `tag` of each path matching."""
        best: dict[str, RepoFile] = {}
        for f in repo.iter_find(all=[tag], published=False, pattern=pattern):
            usable = f.state != "unpublished" and f.uploaded
            if usable and (f.path not in best or f.file_id > best[f.path].file_id):
                best[f.path] = f
        return best

    def _under(self, repo: Repo, prefix: str, pin: str | None) -> list[RepoFile]:
        """The versions (current, or tagged `pin`) of every path below `prefix`."""
        if pin is not None and is_file_id(pin):
            return []  # a file id names one file, never a directory
        pattern = f"{glob_escape(prefix)}/*" if prefix else "*"
        if pin is None:
            return repo.list(pattern)
        tagged = self._tagged(repo, pattern, pin)
        return [tagged[p] for p in sorted(tagged)]

    @staticmethod
    def _file_info(f: RepoFile, pin: str | None, at: int) -> dict[str, Any]:
        return {
            "name": url_path(f.path, pin, at),
            "size": f.size,
            "type": "file",
            "md5": f.md5,
            "state": f.state,
            "file_id": f.file_id,
            "created": f.created_at,
            "published": f.published_at,
        }

    @staticmethod
    def _dir_info(path: str, pin: str | None, at: int) -> dict[str, Any]:
        return {"name": url_path(path, pin, at), "size": 0, "type": "directory"}

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        repo_path, pin, at = parse_url_path(self._strip_protocol(path))
        with self._repo() as repo:
            if repo_path:
                try:
                    return self._file_info(self._version(repo, repo_path, pin), pin, at)
                except NotFoundError as exc:
                    if not self._under(repo, repo_path, pin):
                        raise FileNotFoundError(f"{PROTOCOL}://{path}: {exc}") from exc
            return self._dir_info(repo_path, pin, at)

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        repo_path, pin, at = parse_url_path(self._strip_protocol(path))
        entries = self._entries(repo_path, pin, at, maxdepth=1, withdirs=True)
        if not entries and repo_path:
            entries = [self.info(path)]  # a file lists as itself; a missing path raises
        return entries if detail else [e["name"] for e in entries]

    def find(
        self,
        path: str,
        maxdepth: int | None = None,
        withdirs: bool = False,
        detail: bool = False,
        **kwargs: Any,
    ) -> Any:
        repo_path, pin, at = parse_url_path(self._strip_protocol(path))
        entries = self._entries(repo_path, pin, at, maxdepth=maxdepth, withdirs=withdirs)
        if not entries and repo_path:
            with contextlib.suppress(FileNotFoundError):
                found = self.info(path)
                if found["type"] == "file":
                    entries = [found]
        found_by_name = {e["name"]: e for e in entries}
        return found_by_name if detail else sorted(found_by_name)

    def _entries(
        self, prefix: str, pin: str | None, at: int, *, maxdepth: int | None, withdirs: bool
    ) -> list[dict[str, Any]]:
        """Files below `prefix` (at most `maxdepth` levels down), and the directories
        their paths imply if `withdirs`."""
        with self._repo() as repo:
            files = [(f.path, self._file_info(f, pin, at)) for f in self._under(repo, prefix, pin)]
        start = len(prefix) + 1 if prefix else 0
        out: dict[str, dict[str, Any]] = {}
        for path, info in files:
            parts = path[start:].split("/")
            if maxdepth is None or len(parts) <= maxdepth:
                out[path] = info
            if withdirs:
                depth = len(parts) - 1 if maxdepth is None else min(len(parts) - 1, maxdepth)
                for n in range(1, depth + 1):
                    directory = path[:start] + "/".join(parts[:n])
                    out.setdefault(directory, self._dir_info(directory, pin, at))
        return [out[k] for k in sorted(out)]

    def modified(self, path: str) -> datetime:
        found = self.info(path)
        if found["type"] != "file":
            raise IsADirectoryError(path)
        when: datetime = found["published"] or found["created"]
        return when

    def created(self, path: str) -> datetime:
        when: datetime = self.info(path)["created"]
        return when

    def checksum(self, path: str) -> int:
        """The md5 of the content, as a number (fsspec's checksum)."""
        return int(self.info(path)["md5"], 16)

    # -- content -----------------------------------------------------------------------

    def _open(self, path: str, mode: str = "rb", autocommit: bool = True, **kwargs: Any) -> Any:
        repo_path, pin, _ = parse_url_path(self._strip_protocol(path))
        if mode == "rb":
            with self._repo() as repo:
                try:
                    found = self._version(repo, repo_path, pin)
                except NotFoundError as exc:
                    raise FileNotFoundError(f"{PROTOCOL}://{path}: {exc}") from exc
                try:
                    return CachedCopy(io.FileIO(repo_version_path(found), "rb"))
                except FileNotFoundError:  # evicted by another process meanwhile: once more
                    return CachedCopy(io.FileIO(repo_version_path(found), "rb"))
        if mode not in ("wb", "xb"):
            raise UsageError(
                f"{PROTOCOL}:// cannot open {path!r} in mode {mode!r}",
                hint="versions are immutable: read with 'rb', write a new version with 'wb'",
            )
        self._check_writable(repo_path, pin)
        if mode == "xb" and self.exists(repo_path):
            raise FileExistsError(f"{PROTOCOL}://{path} has a published version")
        fd, spool = self._spool()
        return VersionWriter(
            fd, spool, functools.partial(self._publish, repo_path), autocommit=autocommit
        )

    @staticmethod
    def _check_writable(path: str, pin: str | None) -> None:
        if pin is not None:
            raise UsageError(
                f"{PROTOCOL}://{url_path(path, pin)} is a pinned version; it cannot change",
                hint=f"write {PROTOCOL}://{url_path(path)} for a new version ('@@' for an '@')",
            )

    def _publish(self, path: str, source: Path) -> None:
        """Add `source` as a new version of `path`, publish it and commit."""
        with self._repo() as repo:
            repo.add(path, source, publish=True, mode=_new_file_mode())
            repo.commit()

    def _spool(self) -> tuple[int, Path]:
        with self._repo() as repo:
            staging = repo.session.staging.prepare()
        fd, name = tempfile.mkstemp(dir=staging, prefix=INCOMING_PREFIX)
        return fd, Path(name)

    def put_file(self, lpath: str, rpath: str, callback: Any = None, **kwargs: Any) -> None:
        if os.path.isdir(lpath):
            return  # directories are implied by the paths below them
        repo_path, pin, _ = parse_url_path(self._strip_protocol(rpath))
        self._check_writable(repo_path, pin)
        if kwargs.get("mode") == "create" and self.exists(repo_path):
            raise FileExistsError(f"{PROTOCOL}://{rpath} has a published version")
        with self._repo() as repo:
            repo.add(repo_path, lpath, publish=True)
            repo.commit()

    def get_file(
        self, rpath: str, lpath: str | None, callback: Any = None, outfile: Any = None, **kw: Any
    ) -> None:
        """Copy the verified content to `lpath` (complete or untouched) or into `outfile`."""
        if outfile is None and lpath is not None and self.isdir(rpath):
            os.makedirs(lpath, exist_ok=True)
            return
        repo_path, pin, _ = parse_url_path(self._strip_protocol(rpath))
        with self._repo() as repo:
            try:
                found = self._version(repo, repo_path, pin)
            except NotFoundError as exc:
                raise FileNotFoundError(f"{PROTOCOL}://{rpath}: {exc}") from exc
            if outfile is not None:
                found.write_to(outfile)
                return
            if lpath is None:
                raise UsageError("get_file needs a local path or an outfile")
            os.makedirs(os.path.dirname(os.path.abspath(lpath)), exist_ok=True)
            found.save_as(lpath, overwrite=True, exact=True)

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        source, pin, _ = parse_url_path(self._strip_protocol(path1))
        target, target_pin, _ = parse_url_path(self._strip_protocol(path2))
        self._check_writable(target, target_pin)
        with self._repo() as repo:
            try:
                found = self._version(repo, source, pin)
            except NotFoundError as exc:
                if self._under(repo, source, pin):
                    return  # a directory: implied by the files copied below it
                raise FileNotFoundError(f"{PROTOCOL}://{path1}: {exc}") from exc
            mode = found.mode if found.mode is not None else _new_file_mode()
            repo.add(target, repo_version_path(found), publish=True, mode=mode)
            repo.commit()

    # -- the tree ----------------------------------------------------------------------

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Nothing to do: a directory exists while a path below it does."""

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        """Nothing to do: a directory exists while a path below it does."""

    def rmdir(self, path: str) -> None:
        """Nothing to do: a directory goes with the last path below it."""

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        """Expire the current version of each file named (below each directory named, if
        `recursive`); garbage collection purges them later, and pinned reads of them work
        until then. Directories go with their last file."""
        for name in reversed(self.expand_path(path, recursive=recursive, maxdepth=maxdepth)):
            self._rm(name, directory_ok=True)

    def _rm(self, path: str, directory_ok: bool = False) -> None:
        repo_path, pin, _ = parse_url_path(self._strip_protocol(path))
        self._check_writable(repo_path, pin)
        with self._repo() as repo:
            found = repo.get_file(repo_path)
            if found is not None:
                found.expire()
                repo.commit()
            elif not directory_ok:
                raise FileNotFoundError(f"{PROTOCOL}://{path}: no published version")

    def rm_file(self, path: str) -> None:
        self._rm(path)


def _new_file_mode() -> int:
    """The permission bits an ordinary new file gets here (a spool or a cached copy is
    private: its own bits say nothing about the content)."""
    return 0o666 & ~current_umask()


def repo_version_path(found: RepoFile) -> Path:
    """The verified local copy of `found`; a `StateError` for one not uploaded."""
    if not found.uploaded:
        raise StateError(f"{found.path} (file {found.file_id}) has no uploaded content")
    return found.local_path
