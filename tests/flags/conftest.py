"""Fixtures for the flags tests: flag tables of their own on PostgreSQL (or SQLite)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from integrations.conftest import unique_name
from servers import POSTGRES_URL
from veneer.flags import FlagTables, create_tables, flag_tables


@pytest.fixture(scope="session")
def pg() -> Iterator[sa.Engine]:
    engine = sa.create_engine(POSTGRES_URL, pool_size=5, max_overflow=10)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:  # pragma: no cover - environment problem
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc}")
    yield engine
    engine.dispose()


def drop(engine: sa.Engine, tables: FlagTables) -> None:
    with engine.begin() as conn:
        for table in reversed(tables.all()):
            table.drop(conn, checkfirst=True)


@pytest.fixture
def pg_tables(pg: sa.Engine) -> Iterator[FlagTables]:
    """Flag tables of this test only, created on PostgreSQL with their state row."""
    tables = create_tables(pg, flag_tables(prefix=unique_name("vf")))
    yield tables
    drop(pg, tables)


@pytest.fixture
def sqlite(tmp_path: object) -> Iterator[sa.Engine]:
    """A SQLite file database (the embedded default), shared by threads of one process."""
    engine = sa.create_engine(f"sqlite:///{tmp_path}/flags.db")
    yield engine
    engine.dispose()
