"""``veneer counters``: the flush worker (leases, SIGTERM), verify, and create-tables."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from counter_tables import fresh_tables, prefix_of
from servers import POSTGRES_URL, RedisServer
from veneer import Cache
from veneer.cli import main
from veneer.counters import (
    CounterFlusher,
    Counters,
    CounterSpec,
    CounterTables,
    counter_tables,
)

SPECS = {"views": CounterSpec("buffered", shards=2), "credits": CounterSpec("exact")}


@pytest.fixture
def prefix() -> Iterator[str]:
    with fresh_tables() as made:
        yield prefix_of(made)


def _totals(tables: CounterTables, engine: sa.Engine) -> dict[str, int]:
    t = tables.totals.c
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.key, t.total).where(t.name == "views")).all()
    return dict(rows)


def test_the_flush_worker_moves_buffers_and_stops_cleanly_on_sigterm(
    redis_server: RedisServer, namespace: str, prefix: str
) -> None:
    """`veneer counters flush` flushes what the app buffered and exits 0 on SIGTERM."""
    engine = sa.create_engine(POSTGRES_URL)
    tables = counter_tables(prefix=prefix)
    with Cache.from_url(redis_server.url, namespace=namespace, ttl=60) as cache:
        counters = Counters(cache, engine, SPECS, tables=tables)
        counters.incr_many([("views", "a", 3), ("views", "b", 4)])
        worker = subprocess.Popen(
            [sys.executable, "-m", "veneer.cli", "counters", "flush", "--db", POSTGRES_URL,
             "--redis", redis_server.url, "--namespace", namespace, "--table-prefix", prefix,
             "--interval", "0.1"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while _totals(tables, engine) != {"a": 3, "b": 4}:
                assert time.monotonic() < deadline and worker.poll() is None
                time.sleep(0.05)
            counters.incr("views", "a", 1)
            while _totals(tables, engine).get("a") != 4:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        finally:
            worker.send_signal(signal.SIGTERM)
            out, _ = worker.communicate(timeout=30)
        assert worker.returncode == 0, out
        assert "stopped after" in out and "3 increment" not in out
        assert counters.get("views", "a") == 4
        counters.close()
    engine.dispose()


def test_verify_prints_the_increments_at_risk_and_the_divergence(
    redis_server: RedisServer, namespace: str, prefix: str
) -> None:
    """verify counts buffered and claimed-but-uncommitted increments as at risk, committed
    claims as durable, and finds cached totals that differ from the database."""
    engine = sa.create_engine(POSTGRES_URL)
    tables = counter_tables(prefix=prefix)
    args = ["counters", "verify", "--db", POSTGRES_URL, "--redis", redis_server.url,
            "--namespace", namespace, "--table-prefix", prefix]  # fmt: skip
    runner = CliRunner()
    with Cache.from_url(redis_server.url, namespace=namespace, ttl=60) as cache:
        counters = Counters(cache, engine, SPECS, tables=tables)
        counters.incr_many([("views", "a", 3), ("views", "b", 4), ("credits", "a", 9)])
        result = runner.invoke(main, [*args, "--format", "json"])
        assert result.exit_code == 0, result.output
        data = json.loads(result.output)
        assert data["at_risk"] == 7
        assert {c["name"]: c["buffered"] for c in data["counters"]} == {"credits": 0, "views": 7}

        def stop(point: str) -> None:
            if point == "claimed":
                raise RuntimeError("stopped at the claim")

        with pytest.raises(RuntimeError):
            CounterFlusher(cache, engine, tables=tables, hook=stop, lease_ttl=0.2).run_once()
        counters.incr("views", "a", 1)
        views = json.loads(runner.invoke(main, [*args, "--format", "json"]).output)["counters"][1]
        assert (views["buffered"], views["claimed_uncommitted"], views["at_risk"]) == (1, 7, 8)
        time.sleep(0.3)
        assert counters.flush().replays >= 1  # the claim first, the newer buffer next pass
        counters.flush()
        assert counters.get("views", "a") == 4  # caches the durable total
        with engine.begin() as conn:  # someone writes the table behind veneer's back
            conn.execute(sa.update(tables.totals).values(total=100))
        result = runner.invoke(main, args)
        assert result.exit_code == 1
        assert "increments at risk now: 0" in result.output
        assert "views" in result.output
        counters.close()
    engine.dispose()


def test_create_tables_creates_them_or_prints_the_ddl(tmp_path: object) -> None:
    """create-tables creates the tables on a database, or prints DDL for migrations."""
    runner = CliRunner()
    result = runner.invoke(main, ["counters", "create-tables", "--ddl", "sqlite"])
    assert result.exit_code == 0 and "CREATE TABLE veneer_counter_totals" in result.output
    url = f"sqlite:///{tmp_path}/c.db"
    result = runner.invoke(main, ["counters", "create-tables", "--db", url])
    assert result.exit_code == 0, result.output
    assert "veneer_counter_journal" in sa.inspect(sa.create_engine(url)).get_table_names()
