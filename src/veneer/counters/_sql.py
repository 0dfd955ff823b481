"""Statements over the counter tables, shared by the asyncio and the threaded shell (no I/O)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from ._spec import MAX_COUNT, MIN_COUNT
from ._tables import CounterTables

__all__ = [
    "Pair",
    "durable_select",
    "fits",
    "journal_rows",
    "totals_upsert",
]

Pair = tuple[str, str]  # (counter name, key)


def durable_select(tables: CounterTables, pairs: Sequence[Pair]) -> sa.Select[Any]:
    """``(name, key, durable total, last flush id)`` of each pair present in the database.

    One statement, so one snapshot: a compaction moving journal rows into totals
    at the same time cannot make a row count twice or not at all.
    """
    t, j = tables.totals.c, tables.journal.c
    in_t = sa.tuple_(t.name, t.key).in_(pairs)
    in_j = sa.tuple_(j.name, j.key).in_(pairs)
    parts = sa.union_all(
        sa.select(t.name, t.key, t.total.label("amount"), t.last_flush).where(in_t),
        sa.select(j.name, j.key, j.delta.label("amount"), sa.null().label("last_flush")).where(
            in_j
        ),
    ).subquery()
    return sa.select(
        parts.c.name, parts.c.key, sa.func.sum(parts.c.amount), sa.func.max(parts.c.last_flush)
    ).group_by(parts.c.name, parts.c.key)


def fits(total: int) -> bool:
    return MIN_COUNT <= total <= MAX_COUNT


def _insert(dialect: str, table: sa.Table) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    if dialect == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)
    raise NotImplementedError(
        f"counters need INSERT ... ON CONFLICT: PostgreSQL or SQLite, not {dialect!r}"
    )


def totals_upsert(dialect: str, tables: CounterTables, *, with_flush: bool) -> Any:
    """``total = total + :total`` for each row (and ``last_flush = :last_flush`` for a flush)."""
    totals = tables.totals
    stmt = _insert(dialect, totals)
    update: dict[str, Any] = {
        "total": totals.c.total + stmt.excluded.total,
        "updated_at": sa.func.now(),
    }
    if with_flush:
        update["last_flush"] = stmt.excluded.last_flush
    return stmt.on_conflict_do_update(index_elements=[totals.c.name, totals.c.key], set_=update)


def journal_rows(deltas: Iterable[tuple[Pair, int]]) -> list[dict[str, Any]]:
    return [{"name": name, "key": key, "delta": delta} for (name, key), delta in deltas]
