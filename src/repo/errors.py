"""The exception tree of `repo`.

Every error the library raises derives from `RepoError`, so callers can catch one type.
Errors may carry a `hint`: one line telling the user what to do next (the CLI prints it
after the message as ``Try: ...``).

    RepoError
    ├── ConfigError              configuration missing, malformed or contradictory
    ├── UsageError               an argument the API does not accept
    ├── InvalidPathError         a repository path breaks the path rules
    ├── InvalidTagError          a tag or date tag breaks the tag rules
    ├── NotFoundError            no such file, version or object
    ├── StateError               the operation does not fit the file's state
    │   ├── ImmutableError       the content of an uploaded file cannot change
    │   └── ArchivedError        the object is archived and must be thawed to be read
    ├── VerificationError        md5 or size did not match (upload or download)
    ├── ConflictError            another writer got there first (an object key, a publish)
    │   └── CatalogBusyError     a lock the catalog needed was not free in time
    ├── CatalogError             the catalog database failed or is not set up
    │   └── PermissionDeniedError  the catalog refused: this database user may not do that
    ├── StoreError               the object store failed (network, permissions, bucket)
    ├── LocalDiskError           this host's disk refused (cache, staging, scratch files)
    └── UntrustedDataError       a value from the catalog, the bucket or a shared disk
                                 breaks the repository's rules: it was not used
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

__all__ = [
    "ArchivedError",
    "CatalogBusyError",
    "CatalogError",
    "ConfigError",
    "ConflictError",
    "ImmutableError",
    "InvalidPathError",
    "InvalidTagError",
    "LocalDiskError",
    "NotFoundError",
    "PermissionDeniedError",
    "RepoError",
    "StateError",
    "StoreError",
    "UntrustedDataError",
    "UsageError",
    "VerificationError",
    "at_boundary",
    "local_disk_error",
]


class RepoError(Exception):
    """Base class of every error raised by `repo`."""

    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigError(RepoError):
    """The configuration is missing, malformed or contradictory."""


class UsageError(RepoError, ValueError):
    """An argument the API does not accept."""


class InvalidPathError(RepoError, ValueError):
    """A repository path breaks the path rules."""


class InvalidTagError(RepoError, ValueError):
    """A tag or date tag breaks the tag rules."""


class NotFoundError(RepoError, LookupError):
    """No such file, version or object."""


class StateError(RepoError):
    """The operation does not fit the file's current state."""


class ImmutableError(StateError):
    """The content of an uploaded file can never change."""


class ArchivedError(StateError):
    """The object is in an archival storage class: it must be restored (thawed) to be read."""


class VerificationError(RepoError):
    """A checksum or size did not match what was expected."""


class ConflictError(RepoError):
    """Another writer got there first."""


class CatalogBusyError(ConflictError):
    """A lock the catalog needed was not free in time: another session holds it."""


class CatalogError(RepoError):
    """The catalog database failed or is not set up."""


class PermissionDeniedError(CatalogError):
    """The catalog database refused the operation to this database user."""


class StoreError(RepoError):
    """The object store failed."""


class UntrustedDataError(RepoError):
    """A value from the catalog, the bucket or a shared disk broke the rules: not used."""

    hint = (
        "something other than this repository wrote it: check who may write the catalog "
        "and the bucket (docs/security.md)"
    )


class LocalDiskError(RepoError):
    """This host's disk refused a read or write (cache, staging area, scratch files)."""

    hint = (
        "check that the directory exists, is writable by you and has free space "
        "(this host's copies live under 'local_root')"
    )


def local_disk_error(exc: OSError, doing: str) -> RepoError:
    """`exc`, raised while `doing` something on this host, as a `RepoError`.

    A file-system error becomes a `LocalDiskError` naming the file; a network one that
    slipped past a store's own translation (a socket time-out) a `StoreError`.
    """
    reason = exc.strerror or str(exc) or type(exc).__name__
    if isinstance(exc, ConnectionError | TimeoutError):
        return StoreError(f"{doing} failed: the network failed ({reason})")
    where = f": {exc.filename}" if exc.filename else ""
    return LocalDiskError(f"{doing} failed: {reason}{where}")


_F = TypeVar("_F", bound=Callable[..., Any])


def at_boundary(doing: str) -> Callable[[_F], _F]:
    """Decorate a public entry point: an `OSError` that escapes it becomes a `RepoError`
    (see `local_disk_error`), so callers only ever catch `RepoError`.

    A `BrokenPipeError` passes as it is: it says the reader of a stream the caller handed
    in went away (``repo cat | head``), which is the caller's to handle, not a failure.
    """

    def decorate(func: _F) -> _F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except BrokenPipeError:
                raise
            except OSError as exc:
                raise local_disk_error(exc, doing) from exc

        return cast("_F", wrapper)

    return decorate
