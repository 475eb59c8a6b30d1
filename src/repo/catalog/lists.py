"""Statements over many values whose text does not grow with the number of values.

psycopg parses each distinct statement text on the client (and only caches short ones),
so ``IN (%s, %s, ... 500 times)`` or a 1,000-row ``VALUES`` list costs more Python time
than the server spends running it. On PostgreSQL the values travel as one array
parameter instead (``= ANY(:ids)``, ``SELECT unnest(:a), unnest(:b)``): the statement is
short, the same every time, and prepared once. SQLite's driver has no such cost, and
keeps plain ``IN`` lists and executemany.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, DateTime, Text, any_, func, literal
from sqlalchemy.dialects.postgresql import ARRAY

__all__ = ["among", "unnest_ids", "unnest_texts", "unnest_times"]


def among(column: Any, values: Sequence[Any], *, postgres: bool) -> ColumnElement[bool]:
    """``column IN values``; ``column = ANY(array)`` on PostgreSQL."""
    if not postgres:
        return column.in_(list(values))  # type: ignore[no-any-return]
    element = Text() if isinstance(next(iter(values), ""), str) else BigInteger()
    return column == any_(literal(list(values), ARRAY(element)))  # type: ignore[no-any-return]


def unnest_ids(values: Sequence[int]) -> ColumnElement[Any]:
    """One row per value (PostgreSQL), for ``INSERT ... SELECT unnest(...)``."""
    return func.unnest(literal(list(values), ARRAY(BigInteger())))


def unnest_texts(values: Sequence[str | None]) -> ColumnElement[Any]:
    return func.unnest(literal(list(values), ARRAY(Text())))


def unnest_times(values: Sequence[datetime]) -> ColumnElement[Any]:
    """Times as the catalog stores them (naive UTC; see `schema.UTCDateTime`)."""
    naive = [v.astimezone(UTC).replace(tzinfo=None) if v.tzinfo else v for v in values]
    return func.unnest(literal(naive, ARRAY(DateTime())))
