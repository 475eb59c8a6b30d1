"""PostgreSQL login users in the catalog's roles, for the tests of least privilege and of
what a catalog writer may not do (a pytest plugin: tests/conftest.py loads it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from harness.postgres import PostgresServer

NewUser = Callable[[str, str], str]


def superuser(url: str, statement: sql.Composed) -> list[tuple[Any, ...]]:
    import psycopg

    parsed = make_url(url)
    with psycopg.connect(
        host=parsed.host, port=parsed.port, user=parsed.username, dbname=parsed.database
    ) as conn:
        cur = conn.execute(statement)
        return cur.fetchall() if cur.description else []


@pytest.fixture
def db_roles(postgres_server: PostgresServer, pg_url: str) -> Iterator[list[str]]:
    """Role names a test creates; dropped after its database (roles are cluster-wide)."""
    created: list[str] = []
    yield created
    name = make_url(pg_url).database
    assert name
    postgres_server.drop_database(name)  # takes every grant in it along
    for role in reversed(created):
        superuser(
            postgres_server.admin_url,
            sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)),
        )


@pytest.fixture
def new_user(pg_url: str, db_roles: list[str]) -> NewUser:
    """Make a LOGIN user in a group role; returns a catalog URL connecting as it."""

    def make(user: str, group: str) -> str:
        superuser(
            pg_url,
            sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(
                sql.Identifier(user), sql.Identifier(group)
            ),
        )
        db_roles.append(user)
        return make_url(pg_url).set(username=user).render_as_string(hide_password=False)

    return make
