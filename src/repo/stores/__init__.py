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


_BACKENDS: dict[str, Callable[[str, Config | None], Store]] = {
    "file": _open_file,
    "s3": _open_s3,
}


def open_store(url: str, config: Config | None = None) -> Store:
    """Open the store named by `url` (``s3://bucket/prefix`` or ``file:///path``)."""
    scheme = urlsplit(url).scheme
    opener = _BACKENDS.get(scheme)
    if opener is None:
        raise ConfigError(
            f"unsupported store URL {url!r}", hint="use s3://bucket/prefix or file:///abs/path"
        )
    return opener(url, config)
