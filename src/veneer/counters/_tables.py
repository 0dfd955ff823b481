"""The database side of counters: four tables, a helper that creates them, and engines.

``{prefix}_totals``   one row per (counter, key): the compacted durable total, and the
                      id of the last buffered flush applied to it
``{prefix}_journal``  exact increments (and buffered ones written while Redis is down),
                      appended in group commits and compacted into totals in batches
``{prefix}_flushes``  the ledger: one row per applied flush id (a replay finds it)
``{prefix}_defs``     each counter's mode and shard count, so workers and processes agree

The durable count of a key is ``totals.total + SUM(journal.delta)``, read in one
statement (one snapshot), so compaction never changes what a reader sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ..integrations.outbox import sqlalchemy_url
from ._spec import MAX_KEY_CHARS

__all__ = [
    "DEFAULT_PREFIX",
    "AsyncConnection",
    "AsyncEngine",
    "AsyncEngines",
    "Connection",
    "CounterTables",
    "Engine",
    "Engines",
    "counter_tables",
    "counters_ddl",
    "create_counter_tables",
]

DEFAULT_PREFIX = "veneer_counter"

_BIGINT = sa.BigInteger()
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER only


@dataclass(frozen=True, slots=True)
class CounterTables:
    """The four tables (SQLAlchemy Core); see :func:`counter_tables`."""

    totals: sa.Table
    journal: sa.Table
    flushes: sa.Table
    defs: sa.Table

    @property
    def all(self) -> tuple[sa.Table, ...]:
        return (self.defs, self.totals, self.journal, self.flushes)


def counter_tables(
    metadata: sa.MetaData | None = None, *, prefix: str = DEFAULT_PREFIX, schema: str | None = None
) -> CounterTables:
    """The counter tables as Core tables: add them to your migrations, or use
    :func:`create_counter_tables`."""
    md = metadata if metadata is not None else sa.MetaData()
    now = sa.func.now()
    totals = sa.Table(
        f"{prefix}_totals", md,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(MAX_KEY_CHARS), primary_key=True),
        sa.Column("total", _BIGINT, nullable=False),
        sa.Column("last_flush", sa.String(32), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        schema=schema,
    )  # fmt: skip
    journal = sa.Table(
        f"{prefix}_journal", md,
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("key", sa.String(MAX_KEY_CHARS), nullable=False),
        sa.Column("delta", _BIGINT, nullable=False),
        sa.Index(f"{prefix}_journal_by_key", "name", "key"),
        schema=schema,
    )  # fmt: skip
    flushes = sa.Table(
        f"{prefix}_flushes", md,
        sa.Column("flush_id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("shard", sa.Integer, nullable=False),
        sa.Column("keys", sa.Integer, nullable=False),
        sa.Column("delta", sa.Numeric(30, 0), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        schema=schema,
    )  # fmt: skip
    defs = sa.Table(
        f"{prefix}_defs", md,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("shards", sa.Integer, nullable=False),
        schema=schema,
    )  # fmt: skip
    return CounterTables(totals, journal, flushes, defs)


def create_counter_tables(
    bind: Engine | Connection, tables: CounterTables | None = None
) -> CounterTables:
    """Create the counter tables that do not exist yet (PostgreSQL, SQLite, any SQLAlchemy
    2 dialect with ``INSERT ... ON CONFLICT``); returns them."""
    tables = tables if tables is not None else counter_tables()
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            for table in tables.all:
                table.create(conn, checkfirst=True)
    else:
        for table in tables.all:
            table.create(bind, checkfirst=True)
    return tables


def counters_ddl(tables: CounterTables | None = None, dialect: str = "postgresql") -> str:
    """The ``CREATE TABLE``/``CREATE INDEX`` statements for ``dialect``, for hand-written
    migrations."""
    from sqlalchemy.schema import CreateIndex, CreateTable

    tables = tables if tables is not None else counter_tables()
    module = __import__(f"sqlalchemy.dialects.{dialect}", fromlist=["dialect"])
    out: list[str] = []
    for table in tables.all:
        out.append(str(CreateTable(table).compile(dialect=module.dialect())).strip() + ";")
        for index in table.indexes:
            out.append(str(CreateIndex(index).compile(dialect=module.dialect())).strip() + ";")
    return "\n\n".join(out)


class Engines:
    """Engines for the threaded front (the asyncio front uses :class:`AsyncEngines`)."""

    @staticmethod
    def build(engine: Engine | str) -> tuple[Engine, bool]:
        """``(engine, owned)``: an engine as given, or one built from a URL (owned)."""
        if isinstance(engine, Engine):
            return engine, False
        return sa.create_engine(sqlalchemy_url(engine), pool_size=4, max_overflow=4), True

    @staticmethod
    def after_fork(engine: Engine) -> None:
        """In a forked child: never reuse the parent's connections (close none of them)."""
        engine.dispose(close=False)


class AsyncEngines:
    """Engines for the asyncio front (``postgresql+psycopg``, ``sqlite+aiosqlite``, ...)."""

    @staticmethod
    def build(engine: AsyncEngine | str) -> tuple[AsyncEngine, bool]:
        if isinstance(engine, AsyncEngine):
            return engine, False
        return create_async_engine(sqlalchemy_url(engine), pool_size=4, max_overflow=4), True

    @staticmethod
    def after_fork(engine: AsyncEngine) -> None:
        engine.sync_engine.dispose(close=False)
