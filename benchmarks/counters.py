"""Counters: increments/s from 8 threads, database transactions per 10,000 increments,
and p99 of one increment, against raw Redis INCR and UPDATE-per-increment, in one run.

    python benchmarks/counters.py          # needs PostgreSQL (VENEER_TEST_POSTGRES)
    python benchmarks/counters.py --seconds 3 --rounds 3

Every case increments ONE hot counter (the worst case for row locks) from 8 threads
for ``--seconds``, interleaved over ``--rounds`` rounds; medians are reported.
"""

from __future__ import annotations

import argparse
import queue
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import redis
import sqlalchemy as sa

from servers import POSTGRES_URL, RedisServer
from veneer import Cache
from veneer.counters import CounterFlusher, Counters, counter_tables, create_counter_tables

THREADS = 8
LEAN = "UPDATE, one autocommit statement each"


def hammer(incr: Callable[[], Any], seconds: float) -> tuple[int, list[float]]:
    """``THREADS`` threads calling ``incr`` for ``seconds``: (calls, latencies)."""
    start = threading.Barrier(THREADS + 1)
    stop = threading.Event()
    latencies: list[list[float]] = [[] for _ in range(THREADS)]

    def run(mine: list[float]) -> None:
        clock = time.perf_counter
        start.wait()
        while not stop.is_set():
            began = clock()
            incr()
            mine.append(clock() - began)

    threads = [threading.Thread(target=run, args=(lat,)) for lat in latencies]
    for t in threads:
        t.start()
    start.wait()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    flat = [x for lat in latencies for x in lat]
    return len(flat), flat


def p99(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=100)[98] if len(latencies) > 100 else max(latencies)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    server = RedisServer()
    engine = sa.create_engine(POSTGRES_URL, pool_size=THREADS + 2, max_overflow=4)
    prefix = f"vcbench_{uuid.uuid4().hex[:8]}"
    tables = create_counter_tables(engine, counter_tables(prefix=prefix))
    plain = sa.Table(f"{prefix}_plain", sa.MetaData(),
                     sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("n", sa.BigInteger, nullable=False))  # fmt: skip
    plain.create(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(plain).values(id=1, n=0))
    raw = redis.Redis(port=server.port, max_connections=THREADS * 2)
    cache = Cache.from_url(server.url, namespace="bench", ttl=60)
    counters = Counters(cache, engine, {"hot_exact": "exact", "hot_buffered": "buffered"},
                        tables=tables)  # fmt: skip
    flusher = CounterFlusher(cache, engine, tables=tables, interval=1.0)
    update = sa.update(plain).where(plain.c.id == 1).values(n=plain.c.n + 1)

    def update_once() -> None:
        with engine.begin() as conn:  # one transaction per increment
            conn.execute(update)

    # The leanest per-increment UPDATE: one autocommit statement (one round trip, the row
    # lock held only for its own commit) on a connection each thread keeps, as the exact
    # writer keeps its own. The fair baseline for a write path that is one statement too.
    lean = sa.create_engine(POSTGRES_URL, pool_size=THREADS, isolation_level="AUTOCOMMIT")
    lean_sql = f"UPDATE {prefix}_plain SET n = n + 1 WHERE id = 1"
    idle: queue.SimpleQueue[sa.Connection] = queue.SimpleQueue()
    kept: list[sa.Connection] = []

    def update_lean() -> None:
        try:
            conn = idle.get_nowait()
        except queue.Empty:
            conn = lean.connect()
            kept.append(conn)
        conn.exec_driver_sql(lean_sql)
        idle.put(conn)

    cases: dict[str, Callable[[], Any]] = {
        "raw Redis INCR": lambda: raw.incr("hot"),
        "veneer buffered incr": lambda: counters.incr("hot_buffered", "k"),
        "UPDATE ... SET n = n + 1 per increment": update_once,
        LEAN: update_lean,
        "veneer exact incr": lambda: counters.incr("hot_exact", "k"),
    }
    rates: dict[str, list[float]] = {name: [] for name in cases}
    tails: dict[str, list[float]] = {name: [] for name in cases}
    txns: dict[str, list[float]] = {name: [] for name in cases}
    try:
        counters.incr("hot_exact", "k")  # registers the counters
        for _ in range(args.rounds):
            for name, incr in cases.items():
                before = counters.stats().db_transactions
                flushes = flusher.totals.applied + flusher.passes
                if name == "veneer buffered incr":
                    flusher.start()
                count, latencies = hammer(incr, args.seconds)
                if name == "veneer buffered incr":
                    flusher.stop()
                rates[name].append(count / args.seconds)
                tails[name].append(p99(latencies))
                if name.startswith("UPDATE") or name == LEAN:
                    spent = count
                elif name == "raw Redis INCR":
                    spent = 0
                elif name == "veneer buffered incr":
                    # One transaction per flush pass that applied something, one per compaction.
                    spent = flusher.passes + flusher.totals.applied - flushes
                else:
                    spent = counters.stats().db_transactions - before
                txns[name].append(spent * 10_000 / max(count, 1))
    finally:
        for conn in kept:
            conn.close()
        lean.dispose()
        flusher.close()
        counters.close()
        cache.close()
        raw.close()
        with engine.begin() as conn:
            plain.drop(conn)
            for table in tables.all:
                table.drop(conn)
        engine.dispose()
        server.stop()

    med = {name: statistics.median(values) for name, values in rates.items()}
    print(
        f"\none hot counter, {THREADS} threads, {args.seconds:g} s x {args.rounds} rounds (medians)"
    )
    print(f"{'case':<42} {'incr/s':>9} {'vs base':>8} {'DB txns/10k':>12} {'p99 ms':>8}")
    base = {"raw Redis INCR": "raw Redis INCR", "veneer buffered incr": "raw Redis INCR",
            "UPDATE ... SET n = n + 1 per increment": "UPDATE ... SET n = n + 1 per increment",
            LEAN: "UPDATE ... SET n = n + 1 per increment",
            "veneer exact incr": "UPDATE ... SET n = n + 1 per increment"}  # fmt: skip
    for name in cases:
        ratio = med[name] / med[base[name]]
        spent = statistics.median(txns[name])
        tail = statistics.median(tails[name]) * 1000
        print(f"{name:<42} {med[name]:>9.0f} {ratio:>7.2f}x {spent:>12.1f} {tail:>8.2f}")
    print("ranges over rounds (incr/s):")
    for name, values in rates.items():
        print(f"  {name:<40} {min(values):.0f} - {max(values):.0f}")
    # Each round runs every case back to back: a ratio within a round compares them under
    # the same machine load, which moves a lot between rounds on a shared machine.
    print("paired ratios (per round; median, min - max):")
    for name, against in (
        ("veneer buffered incr", "raw Redis INCR"),
        ("veneer exact incr", "UPDATE ... SET n = n + 1 per increment"),
        ("veneer exact incr", LEAN),
    ):
        paired = [a / b for a, b in zip(rates[name], rates[against], strict=True)]
        print(
            f"  {name} / {against}: {statistics.median(paired):.2f}x "
            f"({min(paired):.2f} - {max(paired):.2f})"
        )


if __name__ == "__main__":
    main()
