"""Counters on SQLite, the embedded default: the same tables, helper and guarantees."""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from servers import RedisServer
from veneer import Cache
from veneer.counters import (
    CounterFlusher,
    Counters,
    counter_tables,
    counters_ddl,
    create_counter_tables,
)
from veneer.counters._sql import JournalInsert


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


def test_exact_group_commits_on_sqlite_from_threads_count_each_increment_once(
    tmp_path: Path, redis_server: RedisServer, namespace: str
) -> None:
    """8 threads incrementing one exact key on a SQLite file: the group commits go out as
    single INSERT statements on the writer's kept connection, and the total is exact."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'counts.db'}")
    tables = create_counter_tables(engine)
    with Cache.from_url(redis_server.url, namespace=namespace, ttl=60) as cache:
        counters = Counters(cache, engine, {"credits": "exact"})
        start = threading.Barrier(8)

        def run() -> None:
            start.wait()
            for _ in range(25):
                counters.incr("credits", "hot")

        threads = [threading.Thread(target=run) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        try:
            with engine.connect() as conn:
                journal = conn.execute(sa.select(sa.func.sum(tables.journal.c.delta))).scalar()
            assert journal == 200
            assert counters.get("credits", "hot") == 200
            assert counters.stats().journal_batches < 200
        finally:
            counters.close()
    engine.dispose()


def test_the_journal_insert_is_one_statement_in_the_drivers_parameter_style() -> None:
    """The exact write path's INSERT: quoted names, the driver's markers, one row per pair,
    and no statement (the Core insert instead) past the driver's parameter limit."""
    journal = counter_tables(prefix="odd%name", schema="acct").journal
    pg = JournalInsert(postgresql.psycopg.dialect(), journal)
    assert pg.sql(2) == (
        'INSERT INTO acct."odd%%name_journal" (name, key, delta) VALUES (%s, %s, %s), (%s, %s, %s)'
    )
    assert pg.params([("a", "k", 1), ("b", "j", -2)]) == ("a", "k", 1, "b", "j", -2)
    assert pg.sql(10_000) == pg.sql(10_000)
    assert pg.sql(10_001) is None and pg.sql(0) is None
    lite = JournalInsert(sqlite.pysqlite.dialect(), counter_tables().journal)
    assert lite.sql(1) == 'INSERT INTO veneer_counter_journal (name, "key", delta) VALUES (?, ?, ?)'
    assert lite.sql(333) is not None and lite.sql(334) is None
    dollar = JournalInsert(postgresql.asyncpg.dialect(), counter_tables().journal)
    assert str(dollar.sql(2)).endswith("VALUES ($1, $2, $3), ($4, $5, $6)")
