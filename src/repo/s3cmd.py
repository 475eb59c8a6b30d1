"""An s3cmd configuration that reaches the same S3 store as the repo configuration.

`render_s3cmd_config` turns a `Config` into the text of an ``~/.s3cfg``; `write_s3cmd_config`
writes it with mode 0600 from the first byte, because the file holds the secret key.

A custom endpoint is addressed path-style (``host_bucket`` equal to ``host_base``), which
every S3-compatible server accepts; AWS keeps s3cmd's virtual-hosted default.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .errors import ConfigError, ConflictError, UsageError
from .urls import mask_url

if TYPE_CHECKING:
    from .config import Config

__all__ = ["DEFAULT_S3CMD_CONFIG_PATH", "render_s3cmd_config", "write_s3cmd_config"]

DEFAULT_S3CMD_CONFIG_PATH = "~/.s3cfg"
DEFAULT_REGION = "us-east-1"

_AWS_HOST_BASE = "s3.amazonaws.com"
_AWS_HOST_BUCKET = "%(bucket)s.s3.amazonaws.com"


def render_s3cmd_config(config: Config) -> str:
    """The s3cmd configuration (INI, ``[default]`` section) for the store of `config`."""
    if not config.store_url.startswith("s3://"):
        raise ConfigError(
            f"{config.source}: the store is not on S3 ({config.store_url}); "
            "s3cmd can only reach an S3 store",
            hint="set 'store' to s3://bucket/prefix or set 'default_s3_bucket'",
        )
    access, secret = config.s3_access_key, config.s3_secret_key
    if not access or not secret:
        missing = [k for k, v in (("s3_access_key", access), ("s3_secret_key", secret)) if not v]
        raise ConfigError(
            f"{config.source}: key(s) {', '.join(map(repr, missing))} not set; "
            "the s3cmd configuration needs both",
            hint="set 's3_access_key' and 's3_secret_key' in the repo configuration",
        )

    if config.s3_endpoint_url is None:
        host_base, host_bucket, use_https = _AWS_HOST_BASE, _AWS_HOST_BUCKET, True
    else:
        host_base, use_https = _endpoint_host(config.source, config.s3_endpoint_url)
        host_bucket = host_base  # no %(bucket)s: s3cmd then addresses buckets path-style

    lines = [
        f"# s3cmd configuration for the repo store {_printable(config.store_url)}",
        "# It holds the secret key: keep it private (mode 0600).",
        "[default]",
        f"access_key = {_ini_value(config, 's3_access_key', access)}",
        f"secret_key = {_ini_value(config, 's3_secret_key', secret)}",
        f"host_base = {host_base}",
        f"host_bucket = {host_bucket}",
        f"use_https = {use_https}",
        f"bucket_location = {_ini_value(config, 's3_region', config.s3_region or DEFAULT_REGION)}",
        "signature_v2 = False",
    ]
    return "\n".join(lines) + "\n"


def write_s3cmd_config(
    config: Config,
    path: str | os.PathLike[str] | None = None,
    *,
    force: bool = False,
) -> Path:
    """Write the s3cmd configuration to `path` (default ``~/.s3cfg``) with mode 0600.

    An existing file is kept unless `force`; then it is replaced atomically. Returns the
    path written.
    """
    text = render_s3cmd_config(config)  # fails before anything touches the disk
    target = Path(DEFAULT_S3CMD_CONFIG_PATH if path is None else path).expanduser()
    data = text.encode("utf-8")
    try:
        if force:
            _replace(target, data)
        else:
            _create(target, data)
    except FileExistsError:
        raise ConflictError(
            f"{target} already exists", hint="use --force to overwrite it"
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from exc
    return target


def _endpoint_host(source: str, url: str) -> tuple[str, bool]:
    """``host[:port]`` of the endpoint `url`, and whether it uses https."""
    parts = urlsplit(url)
    # s3cmd has no setting for a path, query or credentials in the endpoint.
    extra = parts.path not in ("", "/") or parts.query or parts.fragment or "@" in url
    if parts.scheme not in ("http", "https") or not parts.hostname or extra:
        shown = f", got {mask_url(url)!r}"  # credentials and secret parameters masked
        raise ConfigError(
            f"{source}: key 's3_endpoint_url' must be http(s)://host[:port] for s3cmd{shown}",
            hint="use the server's root URL, e.g. http://127.0.0.1:9000",
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(
            f"{source}: key 's3_endpoint_url' has an invalid port: {mask_url(url)!r}"
        ) from None
    return (f"{host}:{port}" if port is not None else host), parts.scheme == "https"


def _ini_value(config: Config, key: str, value: str) -> str:
    """`value` as s3cmd will read it back unchanged; errors never show the value."""
    # s3cmd reads a value as: strip one pair of surrounding double quotes, strip blanks,
    # and treat a leading "$" as the name of an environment variable to read instead.
    if any(not ch.isprintable() for ch in value):
        problem = "a control character"
    elif value != value.strip():
        problem = "leading or trailing blanks"
    elif value.startswith("$"):
        problem = "a leading '$' (s3cmd reads that as an environment variable)"
    else:
        if value.startswith('"') and value.endswith('"'):
            return f'"{value}"'
        return value
    raise ConfigError(
        f"{config.source}: key {key!r} has {problem}, which an s3cmd configuration cannot hold"
    )


def _printable(text: str) -> str:
    """`text` safe for one comment line (a store URL may hold any character)."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def _create(target: Path, data: bytes) -> None:
    """Create `target` with mode 0600 (never a wider mode, not even for a moment)."""
    fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        os.fchmod(fd, 0o600)  # exactly 0600 whatever the umask
        _write_all(fd, data)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(target)
        raise
    os.close(fd)


def _replace(target: Path, data: bytes) -> None:
    """Write a 0600 temp file next to `target`, fsync it and move it over `target`."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        try:
            os.fchmod(fd, 0o600)
            _write_all(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)
