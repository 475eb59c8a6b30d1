"""A store in a directory on an SSH server: ``sftp://user@host[:port]/abs/path``.

The layout is the directory store's (`repo.stores.local`), over SFTP: objects are files
at ``<root>/<key>``, and their md5 and user metadata live in a sidecar JSON document under
``<root>/.repo-meta/``. An object appears under its final name only when complete and
verified: it is written to ``.tmp-<token>`` in the same directory, flushed to the
server's disk (``fsync@openssh.com``), checked, and then renamed with plain SFTP rename,
which OpenSSH refuses when the target exists: create-only, like S3's
``If-None-Match: *`` (posix-rename, which replaces, is used only for sidecars). A put cut
off midway leaves its ``.tmp-`` file; `clean_temporaries` removes those older than the
grace period.

Verification. Downloads are hashed as they arrive, as on every store. An upload is
checked before it is renamed into place: by ``md5sum`` run on the server when the account
may run commands (``verified_with: etag``: the server's md5 of the bytes it stored, the
guarantee an md5 ETag gives), else by reading it back over SFTP and hashing it
(``verified_with: read-back``). Never neither.

Uploads of `CAT_THRESHOLD` bytes and more go through ``cat`` on the server where the
account runs commands (`repo.stores.sftp_exec`); other uploads, and every download, by
pipelined SFTP requests. Either way the next chunk is read and hashed while the last one
is on the wire.
docs/sftp-store.md says why, with measurements.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import asyncssh

from ..errors import (
    ConflictError,
    InvalidPathError,
    NotFoundError,
    StoreError,
    VerificationError,
)
from ..urls import parse_sftp_url
from .base import (
    DownloadResult,
    ObjectInfo,
    Progress,
    PutResult,
    Writable,
    check_small,
    copy_hashing,
    hash_only,
)
from .sftp_exec import server_md5
from .sftp_layout import (
    ATTEMPTS,
    CHUNK,
    DELETE_BATCH,
    md5sum_timeout,
    meta_path,
    remote_path,
)
from .sftp_put import Upload
from .sftp_read import chunks_from, walk
from .sftp_session import Session, SshTarget, is_transient, translate

if TYPE_CHECKING:
    import builtins
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

__all__ = ["SftpStore"]

_MD5 = re.compile(r"[0-9a-f]{32}")


class SftpStore:
    """Objects as files under a directory on an SSH server."""

    def __init__(
        self,
        url: str,
        *,
        key_file: str | Path | None = None,
        known_hosts: str | Path | None = None,
        _session: Session | None = None,
    ) -> None:
        user, host, port, root = parse_sftp_url(url)
        self.root = root
        self.url = url
        self.bucket = root
        self.key_prefix = ""
        if _session is None:
            target = SshTarget(
                user=user,
                host=host,
                port=port,
                key_file=Path(key_file).expanduser() if key_file else None,
                known_hosts=Path(known_hosts).expanduser() if known_hosts else None,
            )
            _session = Session(target)
            self._owns_session = True
        else:
            self._owns_session = False
        self._session = _session
        self.target = _session.target

    def __repr__(self) -> str:
        return f"SftpStore({self.url!r})"

    # -- helpers -------------------------------------------------------------------------

    def _path(self, key: str) -> str:
        return remote_path(self.root, key)

    def _meta_path(self, key: str) -> str:
        return meta_path(self.root, key)

    def _retrying(self, what: str, fn: Callable[[asyncssh.SFTPClient], Any]) -> Any:
        """`fn` with a pooled channel, tried again on a new connection if the connection
        broke (only for operations that may be repeated)."""
        for attempt in range(ATTEMPTS):
            try:
                return self._session.call(fn)
            except Exception as exc:
                if is_transient(exc) and attempt + 1 < ATTEMPTS:
                    continue
                raise translate(exc, what, self.target) from exc
        raise AssertionError("unreachable")

    # -- writing -------------------------------------------------------------------------

    def put_file(
        self,
        key: str,
        source: Path,
        *,
        metadata: Mapping[str, str] | None = None,
        progress: Progress | None = None,
    ) -> PutResult:
        try:
            with open(source, "rb") as src:
                size = os.fstat(src.fileno()).st_size
        except FileNotFoundError:
            raise NotFoundError(f"local file {source} not found") from None
        except OSError as exc:
            raise StoreError(f"cannot read {source}: {exc.strerror}") from exc
        return self._put(key, lambda: _read_chunks(source), size, metadata, progress)

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        progress: Progress | None = None,
    ) -> PutResult:
        check_small(data)
        return self._put(key, lambda: iter([data] if data else []), len(data), metadata, progress)

    def _put(
        self,
        key: str,
        chunks: Callable[[], Iterator[bytes]],
        size: int,
        metadata: Mapping[str, str] | None,
        progress: Progress | None,
    ) -> PutResult:
        path = self._path(key)
        upload = Upload(
            self._session,
            self.root,
            key,
            path,
            dict(metadata or {}),
            progress,
            head=self.head,
            stored_md5=self.server_md5_of,
        )
        for attempt in range(ATTEMPTS):
            try:
                return upload.run(chunks(), size)
            except (ConflictError, VerificationError, NotFoundError, InvalidPathError):
                raise
            except Exception as exc:
                if is_transient(exc) and attempt + 1 < ATTEMPTS:
                    self._session.drop()
                    continue
                raise translate(exc, f"write of {key!r}", self.target) from exc
        raise AssertionError("unreachable")

    # -- reading -------------------------------------------------------------------------

    def get_into(
        self, key: str, out: Writable, *, progress: Progress | None = None
    ) -> DownloadResult:
        return copy_hashing(self.iter_bytes(key), out, progress)

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        path = self._path(key)
        size = self._regular_file(key, path).size or 0  # NotFoundError now, not later
        return self._chunks(key, path, size)

    def _chunks(self, key: str, path: str, size: int) -> Iterator[bytes]:
        """The object in order, by pipelined SFTP reads (``cat`` measured no faster this
        way: docs/sftp-store.md); a broken connection is resumed where it broke off."""
        offset = 0
        for attempt in range(ATTEMPTS):
            try:
                for chunk in chunks_from(self._session, path, offset, size):
                    offset += len(chunk)
                    yield chunk
                return
            except Exception as exc:
                if is_transient(exc) and attempt + 1 < ATTEMPTS:
                    self._session.drop()
                    continue
                raise translate(exc, f"read of {key!r}", self.target) from exc

    def _regular_file(self, key: str, path: str) -> asyncssh.SFTPAttrs:
        attrs: asyncssh.SFTPAttrs = self._retrying(f"stat of {key!r}", lambda s: s.lstat(path))
        if attrs.type != asyncssh.FILEXFER_TYPE_REGULAR:
            raise NotFoundError(f"object {key!r} not found in {self.url} (not a regular file)")
        return attrs

    def head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            attrs = self._regular_file(key, path)
        except NotFoundError:
            raise NotFoundError(f"object {key!r} not found in {self.url}") from None
        meta = self._read_meta(key)
        md5 = meta.get("md5")
        user = meta.get("metadata")
        size = attrs.size or 0
        return ObjectInfo(
            key=key,
            size=size,
            etag=md5
            if isinstance(md5, str) and _MD5.fullmatch(md5) and meta.get("size") == size
            else None,
            last_modified=datetime.fromtimestamp(attrs.mtime or 0, UTC),
            metadata=_string_map(user),
        )

    def _read_meta(self, key: str) -> dict[str, object]:
        async def read(sftp: asyncssh.SFTPClient) -> bytes:
            async with sftp.open(self._meta_path(key), "rb") as f:
                data: bytes = await f.read(64 * 1024 + 1)
                return data

        try:
            raw = self._retrying(f"read of {key!r}'s metadata", read)
            doc = json.loads(raw) if len(raw) <= 64 * 1024 else None
        except (NotFoundError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def etag_is_md5(self, key: str) -> bool:
        return True  # the sidecar's md5 was checked against the stored bytes

    def server_md5_of(self, key: str) -> str | None:
        """md5 of an existing object, by md5sum on the server or read back; None if gone."""
        path = self._path(key)
        size = self._regular_file(key, path).size or 0
        md5 = self._session.run(server_md5(self._session, path, md5sum_timeout(size)))
        return md5 if md5 is not None else hash_only(self.iter_bytes(key)).md5

    # -- listing and deleting ------------------------------------------------------------

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for key, attrs in walk(self._readdir, self.root, prefix, objects=True):
            yield ObjectInfo(
                key=key,
                size=attrs.size or 0,
                last_modified=datetime.fromtimestamp(attrs.mtime or 0, UTC),
            )

    def _readdir(self, here: str) -> Sequence[asyncssh.SFTPName]:
        async def read(sftp: asyncssh.SFTPClient) -> Sequence[asyncssh.SFTPName]:
            return await sftp.readdir(here)

        names: Sequence[asyncssh.SFTPName] = self._retrying(f"listing of {here}", read)
        return names

    def _remove_one(self, path: str) -> None:
        async def remove(sftp: asyncssh.SFTPClient) -> None:
            await sftp.remove(path)

        self._retrying(f"removal of {path}", remove)

    def delete_many(self, keys: Iterable[str]) -> int:
        count = 0
        batch: builtins.list[str] = []
        for key in keys:
            batch += [self._path(key), self._meta_path(key)]
            count += 1
            if len(batch) >= DELETE_BATCH:
                self._remove(batch)
                batch = []
        if batch:
            self._remove(batch)
        return count

    def _remove(self, paths: builtins.list[str]) -> None:
        async def remove_all(sftp: asyncssh.SFTPClient) -> None:
            done = await asyncio_gather(*(sftp.remove(p) for p in paths))
            for result in done:
                if isinstance(result, asyncssh.SFTPError):
                    if result.code != asyncssh.FX_NO_SUCH_FILE:
                        raise result
                elif isinstance(result, BaseException):
                    raise result

        self._retrying("delete", remove_all)

    def clean_temporaries(self, prefix: str, older_than: datetime, *, dry_run: bool = False) -> int:
        # Every write moves its temp file's modification time on, so one in progress is
        # young; a put killed midway leaves one that only ages. As for the directory
        # store, the prefix does not apply: the whole tree is swept.
        limit = older_than.timestamp()
        old = [
            key
            for key, attrs in walk(self._readdir, self.root, "", objects=False)
            if (attrs.mtime or 0) < limit
        ]
        if not dry_run:
            for key in old:
                with contextlib.suppress(NotFoundError):
                    self._remove_one(f"{self.root}/{key}")
        return len(old)

    def for_bucket(self, bucket: str) -> SftpStore:
        if bucket == self.bucket:
            return self
        base = urlsplit(self.url)
        return SftpStore(base._replace(path=bucket).geturl(), _session=self._session)

    def close(self) -> None:
        if self._owns_session:
            self._session.close()


async def asyncio_gather(*aws: Any) -> builtins.list[Any]:
    """Every result or exception of `aws`, run at once (one round trip for a batch)."""
    return list(await asyncio.gather(*aws, return_exceptions=True))


def _string_map(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def _read_chunks(source: Path) -> Iterator[bytes]:
    with open(source, "rb") as src:
        while chunk := src.read(CHUNK):
            yield chunk
