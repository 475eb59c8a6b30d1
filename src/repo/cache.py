"""This host's local files: staging copies being written, and the verified cache.

Layout under ``local_root``::

    staging/<version token>/<file name>   a new version being written (private, mutable)
    cache/<object key>                    verified copies, read-only, one per version

A cached file only ever appears under its final name complete and verified: downloads
go to a temporary file in the same directory, are hashed while streaming, and are
renamed into place (``os.replace``) only when md5 and size match. A cached file is
immutable like the object it copies, so a hit needs no hashing and no catalog access;
its size is checked as a cheap guard against truncation.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from .errors import StoreError, VerificationError
from .paths import TOKEN_LENGTH, safe_join
from .stores.base import Progress, Store

__all__ = ["LocalCache"]


class LocalCache:
    """Staging and cache directories of one host."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.staging_dir = self.root / "staging"
        self.cache_dir = self.root / "cache"

    def staging_path(self, key: str) -> Path:
        token = key[-TOKEN_LENGTH:]
        name = key.rsplit("/", 1)[-1][: -(TOKEN_LENGTH + 1)] or "file"
        return self.staging_dir / token / name

    def cache_path(self, key: str) -> Path:
        return Path(safe_join(self.cache_dir, key))

    def lookup(self, key: str, size: int | None) -> Path | None:
        """The cached copy of `key` if present (and of the expected size)."""
        path = self.cache_path(key)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        if size is not None and st.st_size != size:
            # Truncated or damaged: never serve it; the next download replaces it.
            with contextlib.suppress(OSError):
                os.unlink(path)
            return None
        return path

    def evict(self, key: str) -> bool:
        """Remove the cached copy of `key` (open readers keep theirs); True if it was there."""
        try:
            os.unlink(self.cache_path(key))
        except FileNotFoundError:
            return False
        return True

    def usage(self) -> tuple[int, int]:
        """(files, bytes) held in the cache."""
        count = total = 0
        for root, _dirs, names in os.walk(self.cache_dir):
            for name in names:
                if name.startswith(".part-"):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    total += os.stat(os.path.join(root, name)).st_size
                    count += 1
        return count, total

    def download(
        self, store: Store, key: str, *, md5: str, size: int, progress: Progress | None = None
    ) -> Path:
        """Fetch `key` into the cache, verified; nothing is left behind on failure."""
        final = self.cache_path(key)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".part-")
        except OSError as exc:
            raise StoreError(
                f"cannot write to the local cache at {self.cache_dir}: {exc.strerror}",
                hint="check 'local_root' and its free space and permissions",
            ) from exc
        try:
            with os.fdopen(fd, "wb") as out:
                got = store.get_into(key, out, progress=progress)
                if got.size != size or got.md5 != md5:
                    raise VerificationError(
                        f"download of {key!r} failed verification: got {got.size} bytes with "
                        f"md5 {got.md5}, the catalog says {size} bytes with md5 {md5}",
                        hint="the stored object may be damaged; run a verify, or retry",
                    )
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o444)
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return final

    def adopt(self, source: Path, key: str) -> Path:
        """Move a just-uploaded (and so verified) staging copy into the cache."""
        final = self.cache_path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(source, 0o444)
        os.replace(source, final)
        with contextlib.suppress(OSError):
            source.parent.rmdir()
        return final
