"""Counter tables of one test on the suite's PostgreSQL, under a prefix no other test uses."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from servers import POSTGRES_URL
from veneer.counters import CounterTables, counter_tables, create_counter_tables


@contextmanager
def fresh_tables(engine: sa.Engine | None = None) -> Iterator[CounterTables]:
    """Create the tables with the helper; drop them afterwards."""
    own = engine is None
    bind = sa.create_engine(POSTGRES_URL) if engine is None else engine
    made = create_counter_tables(
        bind, counter_tables(prefix=f"vc_{os.getpid()}_{uuid.uuid4().hex[:8]}")
    )
    try:
        yield made
    finally:
        with bind.begin() as conn:
            for table in made.all:
                table.drop(conn, checkfirst=True)
        if own:
            bind.dispose()


def prefix_of(tables: CounterTables) -> str:
    return tables.totals.name.removesuffix("_totals")
