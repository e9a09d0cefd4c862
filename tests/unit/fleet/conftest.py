"""A private PostgreSQL for the fleet's store tests (a real server: the store is what is tested)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import psycopg
import pytest

from gateway.fleet import schema
from tests.postgres import Postgres, private_postgres

_names = itertools.count()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    with private_postgres() as server:
        yield server


@pytest.fixture
def dsn(postgres: Postgres) -> str:
    """A fresh database with the fleet schema."""
    found = postgres.fresh_database(f"unit{next(_names)}")
    with psycopg.connect(found, autocommit=True) as conn:
        schema.migrate(conn)
    return found
