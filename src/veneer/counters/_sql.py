"""Statements over the counter tables, shared by the asyncio and the threaded shell (no I/O)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

import sqlalchemy as sa

from ._spec import MAX_COUNT, MIN_COUNT
from ._tables import CounterTables

__all__ = [
    "JournalInsert",
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


class JournalInsert:
    """``INSERT INTO journal (name, key, delta) VALUES (...), (...)`` as driver SQL.

    The exact write path's one statement, built once per row count and sent with
    ``exec_driver_sql``: no SQLAlchemy compilation, cache-key or result machinery per
    group commit (about a third of its CPU). ``sql(n)`` is None when the driver's
    parameter style is not one of those below, or ``n`` rows would pass the driver's
    parameter limit; the caller then uses a Core insert in a transaction.
    """

    # SQLite's default limit on host parameters (older builds: 999), PostgreSQL's 65535.
    _MAX_PARAMS: Final = {"sqlite": 999, "postgresql": 30_000}

    def __init__(self, dialect: sa.Dialect, journal: sa.Table) -> None:
        quote = dialect.identifier_preparer
        style = dialect.paramstyle
        self._marker: Callable[[int], str] | None
        if style in ("format", "pyformat"):
            self._marker = lambda _i: "%s"
        elif style == "qmark":
            self._marker = lambda _i: "?"
        elif style == "numeric_dollar":
            self._marker = lambda i: f"${i}"
        else:
            self._marker = None
        # (The preparer doubles a '%' in a name for the format styles.)
        self._head = "INSERT INTO {} ({}, {}, {}) VALUES ".format(
            quote.format_table(journal),
            *(quote.quote(journal.c[column].name) for column in ("name", "key", "delta")),
        )
        self._max_rows = self._MAX_PARAMS.get(dialect.name, 999) // 3
        self._built: dict[int, str] = {}

    def sql(self, rows: int) -> str | None:
        sql = self._built.get(rows)
        if sql is None:
            marker = self._marker
            if marker is None or not 0 < rows <= self._max_rows:
                return None
            values = ", ".join(
                f"({marker(3 * i + 1)}, {marker(3 * i + 2)}, {marker(3 * i + 3)})"
                for i in range(rows)
            )
            sql = self._built.setdefault(rows, self._head + values)
        return sql

    @staticmethod
    def params(rows: Sequence[tuple[str, str, int]]) -> tuple[Any, ...]:
        return tuple(value for row in rows for value in row)


def journal_rows(deltas: Iterable[tuple[Pair, int]]) -> list[dict[str, Any]]:
    return [{"name": name, "key": key, "delta": delta} for (name, key), delta in deltas]
