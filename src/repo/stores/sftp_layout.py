"""Where the ``sftp://`` store keeps things under its root directory, and the limits of
its transfers (no SSH here: the rules that keys and server paths follow)."""

from __future__ import annotations

import secrets

from ..errors import InvalidPathError

__all__ = [
    "ATTEMPTS",
    "CAT_THRESHOLD",
    "CHUNK",
    "DELETE_BATCH",
    "IN_FLIGHT",
    "META_DIR",
    "OBJECT_MODE",
    "TMP_PREFIX",
    "md5sum_timeout",
    "meta_path",
    "new_temp_name",
    "remote_path",
]

CHUNK = 8 * 1024 * 1024
#: Uploads from this size on go by ``cat`` where the account runs commands; smaller ones
#: by SFTP, whose requests cost less than starting a command on the server.
CAT_THRESHOLD = CHUNK
#: Chunks on the wire at once, besides the one being read or hashed.
IN_FLIGHT = 2
#: Tries of an operation the connection broke off (idempotent ones, and whole puts).
ATTEMPTS = 3
DELETE_BATCH = 64
META_DIR = ".repo-meta"
TMP_PREFIX = ".tmp-"
OBJECT_MODE = 0o440


def remote_path(root: str, key: str) -> str:
    """The server path of object `key` under `root`; keys that would leave the root, or
    name the store's own files, are refused."""
    segments = key.split("/")
    bad = (
        not key
        or "\0" in key
        or "\n" in key
        or key.startswith("/")
        or any(s in ("", ".", "..") for s in segments)
        or any(s.startswith(TMP_PREFIX) for s in segments)
        or segments[0] == META_DIR
    )
    if bad:
        raise InvalidPathError(
            f"invalid object key {key!r}: keys are relative paths without empty, '.', '..' "
            f"or '{TMP_PREFIX}*' parts, NUL or newlines, outside '{META_DIR}/'"
        )
    return f"{root}/{key}"


def meta_path(root: str, key: str) -> str:
    """The server path of the sidecar holding `key`'s md5 and user metadata."""
    return f"{root}/{META_DIR}/{key}.json"


def new_temp_name(directory: str) -> str:
    return f"{directory}/{TMP_PREFIX}{secrets.token_hex(8)}"


def md5sum_timeout(size: int) -> float:
    """How long md5sum on the server may take: a minute, and a second per 50 MB."""
    return 60.0 + size / 50e6
