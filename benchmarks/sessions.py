"""Session loads: veneer's store against a Redis-only store and a database-only store.

    python benchmarks/sessions.py          # private redis-server; PostgreSQL (VENEER_TEST_POSTGRES)

Baselines in the same run, on the same servers:
- Redis-only (Flask-Session / starsessions style): raw redis-py GET + msgspec msgpack decode;
- database-only: a primary-key read of the session row (one pooled connection per load).
veneer: ``SessionStore.load`` with L1 on (the hit is in-process) and with L1 off (every
load reads Redis); the L1 load's CPU time too (no I/O: on a quiet machine it is its wall
time). Then 1,000 read-only loads with statements counted on the engine.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import msgspec
import redis
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _timing import compare, report

from servers import POSTGRES_URL, RedisServer
from veneer import Cache
from veneer.sessions import SessionStore, create_tables, session_tables

DATA = {"user_name": "ada", "roles": ["editor"], "cart": list(range(20)), "theme": "dark"}


def cpu_per_call(fn: Callable[[], object], number: int, rounds: int) -> float:
    """CPU seconds of this thread per call of ``fn``, the best of ``rounds``: other
    processes on the machine slow a round down (shared caches, clocks), never speed it."""
    samples = []
    for _ in range(rounds):
        started = time.thread_time()
        for _ in range(number):
            fn()
        samples.append((time.thread_time() - started) / number)
    return min(samples)


def main() -> None:
    server = RedisServer()
    engine = sa.create_engine(POSTGRES_URL)
    tables = create_tables(engine, session_tables(name=f"bench_sessions_{uuid.uuid4().hex[:6]}"))
    raw = redis.Redis.from_url(server.url)
    with_l1 = Cache.from_url(server.url, namespace="bench-l1")
    without_l1 = Cache.from_url(server.url, namespace="bench-l2", l1_size=0)
    try:
        assert with_l1.ready() and without_l1.ready()
        store_l1 = SessionStore(engine, with_l1, tables=tables)
        store_l2 = SessionStore(engine, without_l1, tables=tables)
        token, session = store_l1.create(1, DATA)

        encoded = msgspec.msgpack.encode(DATA)  # what Flask-Session 0.8 stores
        raw.set(f"session:{token}", encoded, ex=3600)
        decode = msgspec.msgpack.Decoder().decode
        select = sa.select(tables.sessions.c.data).where(tables.sessions.c.id == session.id)

        def redis_only() -> object:
            return decode(raw.get(f"session:{token}"))  # type: ignore[arg-type]

        def database_only() -> object:
            with engine.connect() as conn:
                return decode(conn.execute(select).scalar_one())

        cases = {
            "Redis-only: redis-py GET + decode (baseline)": redis_only,
            "database-only: primary-key read + decode": database_only,
            "veneer load, L1 hit": lambda: store_l1.load(token),
            "veneer load, Redis tier (l1_size=0)": lambda: store_l2.load(token),
        }
        for fn in cases.values():
            assert fn() is not None
        results = compare(cases, number=2000, rounds=7)
        baseline = "Redis-only: redis-py GET + decode (baseline)"
        report("session load", results, baseline)
        # The L1 load does no I/O: its thread's CPU time is its wall time on a quiet
        # machine, and barely moves on a loaded one (wall time counts waits for a core).
        cpu = cpu_per_call(cases["veneer load, L1 hit"], number=1000, rounds=100)
        print(f"veneer load, L1 hit, CPU time of the calling thread: {cpu * 1e6:.2f} us")

        statements: list[str] = []
        sa.event.listen(
            engine, "before_cursor_execute", lambda *a: statements.append(a[2].split()[0].upper())
        )
        for store in (store_l1, store_l2):
            for _ in range(1000):
                assert store.load(token) is not None
        writes = sum(1 for s in statements if s in ("INSERT", "UPDATE", "DELETE"))
        print(f"\ndatabase writes per 1,000 read-only loads (both stores): {writes / 2:.0f}")
        print(f"database reads in those 2,000 loads: {statements.count('SELECT')}")

        base = results[baseline]
        print("\n| case | per load | ratio to Redis-only |")
        print("| --- | ---: | ---: |")
        for name, seconds in results.items():
            print(f"| {name} | {seconds * 1e6:.1f} us | {seconds / base:.2f}x |")
        print(f"| veneer load, L1 hit: CPU time of the thread | {cpu * 1e6:.1f} us | |")
        print(f"| database writes per 1,000 read-only requests | {writes / 2:.0f} | |")
    finally:
        with_l1.close()
        without_l1.close()
        raw.close()
        tables.metadata.drop_all(engine)
        engine.dispose()
        server.stop()


if __name__ == "__main__":
    main()
