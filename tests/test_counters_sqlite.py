"""Counters on SQLite, the embedded default: the same tables, helper and guarantees."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from servers import RedisServer
from veneer import Cache
from veneer.counters import (
    CounterFlusher,
    Counters,
    counter_tables,
    counters_ddl,
    create_counter_tables,
)


def test_sqlite_tables_created_by_the_helper_hold_both_modes(
    tmp_path: Path, redis_server: RedisServer, namespace: str
) -> None:
    """On SQLite the helper creates the tables; exact increments are committed before incr
    returns, buffered ones are flushed once, and a second flush applies nothing."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'counts.db'}")
    tables = create_counter_tables(engine)
    assert set(sa.inspect(engine).get_table_names()) == {t.name for t in tables.all}
    with Cache.from_url(redis_server.url, namespace=namespace, ttl=60) as cache:
        counters = Counters(cache, engine, {"views": "buffered", "credits": "exact"})
        flusher = CounterFlusher(cache, engine)
        try:
            counters.incr_many([("views", "a", 2), ("views", "b", 1), ("credits", "a", 7)])
            counters.incr("credits", "a", -2)
            with engine.connect() as conn:
                journal = conn.execute(sa.select(sa.func.sum(tables.journal.c.delta))).scalar()
            assert journal == 5
            assert counters.get_many("views", ["a", "b"]) == {"a": 2, "b": 1}
            report = flusher.run_once()
            assert report.increments == 3 and report.compacted == 2
            assert flusher.run_once().applied == 0
            with engine.connect() as conn:
                totals = dict(
                    conn.execute(
                        sa.select(tables.totals.c.key, tables.totals.c.total).where(
                            tables.totals.c.name == "views"
                        )
                    ).all()
                )
            assert totals == {"a": 2, "b": 1}
            assert counters.get("credits", "a") == 5
            assert counters.get("views", "a") == 2
        finally:
            counters.close()
            flusher.close()
    engine.dispose()


def test_the_ddl_is_printable_for_hand_written_migrations() -> None:
    """counters_ddl prints CREATE TABLE and CREATE INDEX statements for each dialect."""
    for dialect in ("postgresql", "sqlite"):
        ddl = counters_ddl(counter_tables(prefix="app_counter"), dialect)
        for table in ("app_counter_totals", "app_counter_journal", "app_counter_flushes"):
            assert f"CREATE TABLE {table}" in ddl
        assert "CREATE INDEX app_counter_journal_by_key" in ddl
