"""SQL array parameters: statements over many values whose text does not grow with them.

psycopg parses each distinct statement text on the client (and only caches short ones),
so ``IN (%s, %s, ... 500 times)`` or a 1,000-row ``VALUES`` list costs more Python time
than the server spends running it. On PostgreSQL the values travel as one array
parameter instead (``= ANY(:ids)``, ``SELECT unnest(:a), unnest(:b)``): the statement is
short, the same every time, and prepared once. SQLite's driver has no such cost, and
keeps plain ``IN`` lists and executemany.

The array goes as one parameter in PostgreSQL's array syntax, joined here at C speed and
typed as the array, rather than as a Python list: psycopg adapts a list one element at a
time in Python, which for 5,000 times took 50 ms against 15 (ids: 12.5 against 2).

Where values still go as an ``IN`` list (always on SQLite, and in some queries on both),
at most `IN_BATCH` of them go per statement.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, ColumnElement, DateTime, Integer, Text, any_, func, literal
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import TypeDecorator

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.engine import Dialect

__all__ = [
    "IN_BATCH",
    "among",
    "unnest_ids",
    "unnest_optional_ints",
    "unnest_texts",
    "unnest_times",
]

#: Bound parameters per IN (...) list.
IN_BATCH = 500


def among(column: Any, values: Sequence[Any], *, postgres: bool) -> ColumnElement[bool]:
    """``column IN values``; ``column = ANY(array)`` on PostgreSQL."""
    if not postgres:
        return column.in_(list(values))  # type: ignore[no-any-return]
    if isinstance(next(iter(values), ""), str):
        return column == any_(_array(_texts(values), Text()))  # type: ignore[no-any-return]
    return column == any_(_array(_ints(values), BigInteger()))  # type: ignore[no-any-return]


def unnest_ids(values: Sequence[int]) -> ColumnElement[Any]:
    """One row per value (PostgreSQL), for ``INSERT ... SELECT unnest(...)``."""
    return func.unnest(_array(_ints(values), BigInteger()), type_=BigInteger())


def unnest_optional_ints(values: Sequence[int | None]) -> ColumnElement[Any]:
    """Like `unnest_ids`, for an INTEGER column that may be NULL."""
    text = "{" + ",".join("NULL" if v is None else str(int(v)) for v in values) + "}"
    return func.unnest(_array(text, Integer()), type_=Integer())


def unnest_texts(values: Sequence[str | None]) -> ColumnElement[Any]:
    return func.unnest(_array(_texts(values), Text()), type_=Text())


def unnest_times(values: Sequence[datetime]) -> ColumnElement[Any]:
    """Times as the catalog stores them (naive UTC; see `schema.UTCDateTime`)."""
    naive = (v.astimezone(UTC).replace(tzinfo=None) if v.tzinfo else v for v in values)
    text = "{" + ",".join(v.isoformat() for v in naive) + "}"
    return func.unnest(_array(text, DateTime()), type_=DateTime())


def _array(text: str, element: Any) -> ColumnElement[Any]:
    return literal(text, _ArrayText(element))


class _ArrayText(TypeDecorator[str]):
    """An array parameter given in its text form and typed as the array (``$1::BIGINT[]``),
    so the server parses it once. A CAST of a text parameter instead is an I/O
    conversion the planner does not fold: ``= ANY(CAST(...))`` re-parsed the whole
    array for every row it filtered (1.2 s for 5,000 ids against 5,000 rows)."""

    impl = ARRAY
    cache_ok = True

    def __init__(self, element: Any) -> None:
        super().__init__(element)
        self.element = element  # a constructor argument: part of the statement cache key

    def bind_processor(self, dialect: Dialect) -> None:
        return None  # the text goes as it is


def _ints(values: Sequence[int]) -> str:
    return "{" + ",".join(map(str, map(int, values))) + "}"


def _texts(values: Sequence[str | None]) -> str:
    return "{" + ",".join(map(_quoted, values)) + "}"


def _quoted(value: str | None) -> str:
    if value is None:
        return "NULL"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
