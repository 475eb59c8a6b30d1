"""Database errors as `RepoError`s that say what happened and what to do.

Every catalog query runs inside `translate_errors`; nothing from SQLAlchemy or the driver
reaches the caller.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError

from ..errors import CatalogBusyError, CatalogError, ConflictError, PermissionDeniedError, RepoError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["AGAIN", "aborted", "lost", "short", "translate_errors"]

_RETRYABLE_PG = {"40001", "40P01"}  # serialization failure, deadlock
_LOCK_NOT_AVAILABLE = "55P03"
_IN_FAILED_TRANSACTION = "25P02"
_INSUFFICIENT_PRIVILEGE = "42501"
AGAIN = "roll back, then run the transaction again"


@contextlib.contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Turn SQLAlchemy/driver errors into `RepoError`s that say what to do."""
    try:
        yield
    except RepoError:
        raise
    except IntegrityError as exc:
        raise ConflictError(
            f"{what}: another writer changed the same data ({short(exc)})",
            hint="roll back and try again",
        ) from exc
    except DBAPIError as exc:
        code = getattr(getattr(exc, "orig", None), "sqlstate", None)
        if code == _LOCK_NOT_AVAILABLE:
            raise CatalogBusyError(
                f"{what}: another session holds a lock this needs ({short(exc)})",
                hint="roll back and try again once the other session is done",
            ) from exc
        if code in _RETRYABLE_PG:
            raise ConflictError(
                f"{what}: concurrent update ({short(exc)})", hint="roll back and try again"
            ) from exc
        if exc.connection_invalidated:
            raise CatalogError(
                f"{what}: the connection to the catalog was lost ({short(exc)}); "
                "uncommitted changes of this transaction, if any, are gone",
                hint=AGAIN,
            ) from exc
        if code == _IN_FAILED_TRANSACTION:
            raise aborted(what) from exc
        if code == _INSUFFICIENT_PRIVILEGE or "readonly database" in short(exc):
            raise PermissionDeniedError(
                f"{what}: permission denied ({short(exc)})",
                hint="this database user may not do that: use one in the read-write role, or "
                "the catalog's owner for create, upgrade and restore (docs/security.md)",
            ) from exc
        if isinstance(exc, OperationalError):
            text_ = short(exc)
            if "locked" in text_:
                raise CatalogError(
                    f"{what}: the SQLite catalog is locked by another writer",
                    hint="commit or close the other session, or use PostgreSQL for many writers",
                ) from exc
            raise CatalogError(
                f"{what}: catalog database unavailable ({text_})",
                hint="check the 'database' settings and that the server is running",
            ) from exc
        raise CatalogError(f"{what}: {short(exc)}") from exc
    except SQLAlchemyError as exc:
        raise CatalogError(f"{what}: {short(exc)}") from exc


def aborted(what: str) -> CatalogError:
    return CatalogError(
        f"{what}: an earlier error aborted this transaction; nothing of it was committed",
        hint=AGAIN,
    )


def lost(what: str) -> CatalogError:
    return CatalogError(
        f"{what}: the connection to the catalog was lost, and with it this transaction's "
        "uncommitted changes",
        hint=AGAIN,
    )


def short(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return (lines[0] if lines else type(orig).__name__)[:300]
