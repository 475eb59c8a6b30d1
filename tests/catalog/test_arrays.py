"""The array parameters of `catalog.arrays` carry any value exactly, on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from repo.catalog.arrays import among, unnest_ids, unnest_texts, unnest_times

AWKWARD = [
    'quote " inside',
    "back\\slash",
    "trailing\\",
    "comma, and {braces}",
    "NULL",
    "",
    "  spaced  ",
    "ünïcode/路径/🙂",
    "new\nline\ttab",
]


def test_texts_ids_and_times_round_trip_through_arrays(pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    base = datetime(2026, 11, 26, 1, 2, 3, 456789)
    times = [base, base + timedelta(microseconds=1), datetime(1999, 12, 31, 23, 59, 59)]
    try:
        with engine.connect() as conn:
            got_texts = conn.execute(sa.select(unnest_texts([*AWKWARD, None]))).scalars().all()
            assert got_texts == [*AWKWARD, None]
            ids = [0, 1, -5, 2**62, 42]
            assert conn.execute(sa.select(unnest_ids(ids))).scalars().all() == ids
            aware = [t.replace(tzinfo=UTC) for t in times[:2]] + times[2:]
            assert conn.execute(sa.select(unnest_times(aware))).scalars().all() == times
            rows = sa.select(unnest_texts(AWKWARD).label("w")).subquery()
            chosen = AWKWARD[::2]
            picked = conn.execute(
                sa.select(rows.c.w).where(among(rows.c.w, chosen, postgres=True))
            ).scalars()
            assert sorted(picked) == sorted(chosen)
            numbers = sa.select(sa.func.generate_series(1, 10).label("n")).subquery()
            odd = conn.execute(
                sa.select(numbers.c.n).where(among(numbers.c.n, [1, 3, 5, 99], postgres=True))
            ).scalars()
            assert sorted(odd) == [1, 3, 5]
    finally:
        engine.dispose()


def test_arrays_are_typed_parameters_not_casts_of_text() -> None:
    # A CAST of a text parameter is not folded by the planner: `= ANY(CAST(...))` would
    # parse the whole array again for every row filtered. The parameter itself is typed.
    from sqlalchemy.dialects import postgresql

    column = sa.column("file_id")
    for clause in (
        among(column, [1, 2, 3], postgres=True),
        among(column, ["a", "b"], postgres=True),
        sa.select(unnest_ids([1]), unnest_texts(["x"]), unnest_times([datetime(2026, 1, 1)])),
    ):
        sql = str(clause.compile(dialect=postgresql.psycopg.dialect()))
        assert "CAST" not in sql.upper(), sql
        assert "[]" in sql, sql


def test_arrays_of_different_elements_do_not_share_a_cached_statement() -> None:
    from sqlalchemy.dialects import postgresql

    column = sa.column("x")
    ints, texts = among(column, [1], postgres=True), among(column, ["a"], postgres=True)
    assert ints._generate_cache_key() != texts._generate_cache_key()
    dialect = postgresql.psycopg.dialect()
    assert "BIGINT[]" in str(ints.compile(dialect=dialect))
    assert "TEXT[]" in str(texts.compile(dialect=dialect))
