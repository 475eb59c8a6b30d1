"""Repository paths and the object keys made from them.

A path is a relative POSIX path chosen by the user (``reports/daily.csv``). Every version
of a path is stored under its own key, never written twice::

    <store prefix>data/<path>~<version token>

The token is time-ordered and random (see `new_version_token`), so keys stay unique even
when a catalog restored from an old backup hands out file ids again. Keeping the path in
the key lets an operator, and the disaster-recovery code, read the store without the
catalog.
"""

from __future__ import annotations

import base64
import os
import random
import time
import unicodedata
from datetime import UTC, datetime

from .errors import InvalidPathError, RepoError, UntrustedDataError

__all__ = [
    "DATA_PREFIX",
    "MAX_KEY_BYTES",
    "check_key",
    "is_token",
    "make_key",
    "new_version_token",
    "validate_path",
    "without_dot_slash",
]

#: S3 limits keys to 1024 bytes of UTF-8.
MAX_KEY_BYTES = 1024
#: One path segment, in bytes: leaves room for the version suffix within the 255-byte
#: file-name limit of local filesystems, where the cache mirrors keys.
MAX_SEGMENT_BYTES = 200
DATA_PREFIX = "data/"
_TOKEN_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # noqa: S105 - Crockford base32, lower case
_FROM_STANDARD_BASE32 = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _TOKEN_ALPHABET.encode()
)

# Tokens need to be unique, not secret: a generator seeded from the OS once per process
# (and again in a forked child, which would otherwise repeat its parent's sequence) is as
# good for that as asking the kernel for 80 bits on every new version, and far cheaper.
_token_random = random.Random(os.urandom(32))  # noqa: S311 - unique, not secret (above)
os.register_at_fork(after_in_child=lambda: _token_random.seed(os.urandom(32)))
TOKEN_LENGTH = 26
_SUFFIX_BYTES = 1 + TOKEN_LENGTH  # "~" + token


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Cs") or ch in "\u2028\u2029"


def _ends_in_token(segment: str) -> bool:
    tail = segment[-TOKEN_LENGTH:]
    return (
        len(segment) > TOKEN_LENGTH
        and segment[-TOKEN_LENGTH - 1] == "~"
        and all(ch in _TOKEN_ALPHABET for ch in tail.lower())
    )


def without_dot_slash(name: str) -> str:
    """`name` without a leading ``./`` (a shell habit: ``./notes.txt`` names notes.txt);
    other "." segments are left for `validate_path` to refuse."""
    while name.startswith("./"):
        name = name[2:].lstrip("/")
    return name


def validate_path(path: object, *, key_prefix: str = "") -> str:
    """Return the NFC-normalised form of `path`, or raise `InvalidPathError`."""
    if not isinstance(path, str):
        raise InvalidPathError(f"path must be a string, got {type(path).__name__}")
    if not path:
        raise InvalidPathError(
            "path is empty", hint="give a relative path such as 'reports/daily.csv'"
        )
    norm = unicodedata.normalize("NFC", path)
    shown = repr(norm[:80] + ("..." if len(norm) > 80 else ""))
    # Printable ASCII (most paths) has no control characters: skip the per-character check.
    bad = (
        None
        if norm.isascii() and norm.isprintable()
        else next((ch for ch in norm if _is_control(ch)), None)
    )
    if bad is not None:
        raise InvalidPathError(f"path {shown} contains control character U+{ord(bad):04X}")
    if norm.startswith("/"):
        raise InvalidPathError(
            f"path {shown} is absolute", hint="repository paths are relative: drop the leading '/'"
        )
    segments = norm.split("/")
    for segment in segments[:-1]:
        if _ends_in_token(segment):
            # Keys end in "~<token>": such a directory would share its name with
            # another version's object in the directory store and the cache.
            raise InvalidPathError(
                f"path {shown} has a directory ending in '~' and a version token",
                hint="rename that directory: '~' plus 26 letters and digits is reserved",
            )
    for segment in segments:
        if segment == "":
            raise InvalidPathError(f"path {shown} has an empty segment ('//' or a trailing '/')")
        if segment in (".", ".."):
            raise InvalidPathError(
                f"path {shown} has a '{segment}' segment",
                hint="repository paths are plain names from the top, such as 'reports/a.csv'",
            )
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise InvalidPathError(
                f"path {shown} has a segment longer than {MAX_SEGMENT_BYTES} bytes"
            )
    total = len(key_prefix.encode()) + len(DATA_PREFIX) + len(norm.encode()) + _SUFFIX_BYTES
    if total > MAX_KEY_BYTES:
        limit = MAX_KEY_BYTES - (total - len(norm.encode()))
        raise InvalidPathError(
            f"path {shown} is too long ({len(norm.encode())} bytes; at most {limit} here)",
            hint="S3 keys are limited to 1024 bytes; shorten the path",
        )
    return norm


def new_version_token() -> str:
    """26 characters: 48 bits of milliseconds then 80 random bits, base32 (sortable)."""
    value = (int(time.time() * 1000) << 80) | _token_random.getrandbits(80)
    # The 128 bits as 26 digits of 5 bits, most significant first: 160 bits of big-endian
    # bytes encoded in base32 start with 6 zero digits (30 bits), dropped; the standard
    # alphabet is then mapped onto ours, in C (this runs once per file added).
    digits = base64.b32encode(value.to_bytes(20, "big"))[6:]
    return digits.translate(_FROM_STANDARD_BASE32).decode("ascii")


def token_time(key: str) -> datetime | None:
    """When the version token ending `key` was made, or None if it does not end in one."""
    token = key[-TOKEN_LENGTH:]
    if len(key) <= TOKEN_LENGTH or key[-TOKEN_LENGTH - 1] != "~":
        return None
    value = 0
    for ch in token:
        digit = _TOKEN_ALPHABET.find(ch)
        if digit < 0:
            return None
        value = value * 32 + digit
    try:
        return datetime.fromtimestamp((value >> 80) / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def make_key(key_prefix: str, path: str, token: str) -> str:
    return f"{key_prefix}{DATA_PREFIX}{path}~{token}"


def is_token(text: str) -> bool:
    """Is `text` a version token as `new_version_token` makes them (26 of its digits)?"""
    return len(text) == TOKEN_LENGTH and all(ch in _TOKEN_ALPHABET for ch in text)


def check_key(key: object, *, key_prefix: str, path: object) -> str:
    """`key` if it is the object key this repository would make for a version of `path`
    (``<key_prefix>data/<path>~<token>``, `path` a valid path), else `UntrustedDataError`.

    For keys and paths read from the catalog, a journal entry or a backup: only such a
    key may be read, written, deleted or turned into a local file name.
    """
    shown = repr(key)[:120]
    try:
        norm = validate_path(path, key_prefix=key_prefix)
    except RepoError as exc:
        raise UntrustedDataError(f"object key {shown} belongs to an invalid path: {exc}") from None
    if not isinstance(key, str) or norm != path:
        raise UntrustedDataError(f"object key {shown} does not belong to path {path!r}")
    stem = f"{key_prefix}{DATA_PREFIX}{norm}~"
    if not (key.startswith(stem) and is_token(key[len(stem) :])):
        raise UntrustedDataError(
            f"object key {shown} is not this repository's key for path {norm!r} "
            f"(expected {stem}<version token>)"
        )
    return key


def unique_path() -> str:
    """A fresh path for `Repo.add_file()` called without one."""
    return f"unnamed/{new_version_token()}"


def safe_join(root: str | os.PathLike[str], relative: str) -> str:
    """Join a validated key below `root`, refusing anything that would escape it."""
    base = os.path.abspath(root)
    target = os.path.abspath(os.path.join(base, relative))
    if os.path.commonpath([base, target]) != base or target == base:
        raise InvalidPathError(f"key {relative!r} escapes its directory")
    return target
