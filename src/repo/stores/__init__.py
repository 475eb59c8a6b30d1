"""Object stores, one module per backend, chosen by URL scheme."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from ..errors import ConfigError
from .base import DownloadResult, ObjectInfo, PutResult, Store
from .local import LocalStore

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..config import Config

__all__ = ["DownloadResult", "LocalStore", "ObjectInfo", "PutResult", "Store", "open_store"]


def _open_file(url: str, config: Config | None) -> Store:
    return LocalStore(unquote(urlsplit(url).path))


def _open_s3(url: str, config: Config | None) -> Store:
    from .s3 import S3Store

    if config is None:
        return S3Store(url)
    return S3Store(
        url,
        endpoint_url=config.s3_endpoint_url,
        region=config.s3_region,
        access_key=config.s3_access_key,
        secret_key=config.s3_secret_key,
        timeout=config.s3_timeout_seconds,
        sse=config.s3_sse,
        sse_kms_key_id=config.s3_sse_kms_key_id,
        trust_server_checks=config.s3_upload_check == "server",
    )


def _open_sftp(url: str, config: Config | None) -> Store:
    try:
        import asyncssh  # noqa: F401 - an optional extra: say how to get it
    except ImportError:
        raise ConfigError(
            f"the store {url!r} needs the SSH library asyncssh, which is not installed",
            hint="pip install 's3-file-repo[sftp]'",
        ) from None
    from .sftp import SftpStore

    if config is None:
        return SftpStore(url)
    return SftpStore(url, key_file=config.ssh_key_file, known_hosts=config.ssh_known_hosts)


_BACKENDS: dict[str, Callable[[str, Config | None], Store]] = {
    "file": _open_file,
    "s3": _open_s3,
    "sftp": _open_sftp,
}


def open_store(url: str, config: Config | None = None) -> Store:
    """Open the store named by `url` (``s3://bucket/prefix``, ``file:///path`` or
    ``sftp://user@host[:port]/path``)."""
    scheme = urlsplit(url).scheme
    opener = _BACKENDS.get(scheme)
    if opener is None:
        raise ConfigError(
            f"unsupported store URL {url!r}",
            hint="use s3://bucket/prefix, file:///abs/path or sftp://user@host/abs/path",
        )
    return opener(url, config)
