"""Flag evaluation against flags-in-Redis and OpenFeature's in-memory provider; propagation.

    python benchmarks/flags.py       # private redis-server; PostgreSQL (VENEER_TEST_POSTGRES)

One run, same machine, ratios against a redis-py GET per evaluation (flags kept in
Redis, read on every check):
- a boolean flag: veneer ``enabled()``, the OpenFeature SDK with its
  ``InMemoryProvider``, and the SDK over veneer's provider;
- a 3-rule percentage flag (country in a list -> 50%, plan == pro -> on, 10% of
  everyone), the subject falling through to the third rule (the longest path);
- propagation: 4 reader processes, the delay from before the commit until all 4
  evaluate the new answer, p99 over flips with Redis up, then with Redis SIGKILLed
  (the processes poll the database every poll_interval).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import queue
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _timing import compare, report

from flags import readers
from servers import POSTGRES_URL, RedisServer
from veneer import Cache
from veneer.flags import Condition, Flag, Flags, Rule, create_tables, flag_tables
from veneer.flags.openfeature import VeneerProvider

SUBJECT = "user:4242"
ATTRIBUTES = {"country": "US", "plan": "free"}


def evaluation(server: RedisServer, engine: sa.Engine, prefix: str, number: int) -> None:
    tables = flag_tables(prefix=prefix)
    cache = Cache.from_url(server.url, namespace="bench-flags", ttl=600)
    flags = Flags(engine, cache, tables=tables)
    flags.set_flag(Flag("kill-switch", enabled=True))
    flags.set_flag(
        Flag(
            "new-checkout",
            enabled=True,
            rules=[
                Rule(when=[Condition("country", "in", ["FR", "DE"])], percentage=50),
                Rule(when=[Condition("plan", "eq", "pro")], serve="on"),
                Rule(percentage=10),
            ],
        )
    )
    assert flags.start()
    raw = redis.Redis.from_url(server.url)
    raw.set("flag:kill-switch", b"1")
    api.set_provider_and_wait(
        InMemoryProvider({"kill-switch": InMemoryFlag("on", {"on": True, "off": False})}),
        domain="in-memory",
    )
    api.set_provider_and_wait(VeneerProvider(flags), domain="veneer")
    in_memory, over_veneer = api.get_client("in-memory"), api.get_client("veneer")
    context = EvaluationContext(SUBJECT, ATTRIBUTES)
    plain = {"kill-switch": True}
    assert flags.variant("new-checkout", subject=SUBJECT, attributes=ATTRIBUTES).rule == 2
    cases = {
        "flags in Redis: redis-py GET per evaluation": lambda: raw.get("flag:kill-switch") == b"1",
        "dict.get (floor)": lambda: plain.get("kill-switch"),
        "veneer enabled(), boolean": lambda: flags.enabled("kill-switch"),
        "veneer enabled(), boolean, subject + attributes": lambda: flags.enabled(
            "kill-switch", subject=SUBJECT, attributes=ATTRIBUTES
        ),
        "veneer enabled(), 3-rule percentage": lambda: flags.enabled(
            "new-checkout", subject=SUBJECT, attributes=ATTRIBUTES
        ),
        "OpenFeature SDK, InMemoryProvider, boolean": lambda: in_memory.get_boolean_value(
            "kill-switch", False
        ),
        "OpenFeature SDK, VeneerProvider, boolean": lambda: over_veneer.get_boolean_value(
            "kill-switch", False
        ),
        "OpenFeature SDK, VeneerProvider, 3-rule percentage": lambda: over_veneer.get_boolean_value(
            "new-checkout", False, context
        ),
    }
    results = compare(cases, number=number, rounds=7)
    report("flag evaluation", results, "flags in Redis: redis-py GET per evaluation")
    base = results["flags in Redis: redis-py GET per evaluation"]
    boolean = results["veneer enabled(), boolean"]
    print(
        f"\nboolean: {boolean * 1e9:.0f} ns (goal < 1 us); {base / boolean:.0f}x cheaper "
        f"than the Redis round trip (goal >= 50x)"
    )
    api.clear_providers()
    flags.close()
    cache.close()
    raw.close()


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def propagation(
    server: RedisServer, engine: sa.Engine, prefix: str, flips: int, poll_interval: float
) -> None:
    ctx = multiprocessing.get_context("spawn")
    events: Any = ctx.Queue()
    stop = ctx.Event()
    options = {"poll_interval": poll_interval, "check_interval": 10.0}
    args = (server.url, "bench-prop", POSTGRES_URL, prefix, "flip", options, events, stop)
    procs = [ctx.Process(target=readers.follow, args=args, daemon=True) for _ in range(4)]
    for proc in procs:
        proc.start()
    values: dict[int, bool] = {}
    seen: dict[int, float] = {}
    modes: dict[int, str] = {}

    def pump(condition: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise RuntimeError("readers did not report in time")
            try:
                event = events.get(timeout=0.5)
            except queue.Empty:
                continue
            if event[0] in ("ready", "seen"):
                values[event[1]] = event[2]
            if event[0] == "seen":
                seen[event[1]] = event[3]
            if event[0] in ("ready", "mode"):
                modes[event[1]] = event[3] if event[0] == "ready" else event[2]

    cache = Cache.from_url(server.url, namespace="bench-prop", ttl=60)
    writer = Flags(engine, cache, tables=flag_tables(prefix=prefix))
    try:
        pump(lambda: len(modes) == 4 and set(modes.values()) == {"push"}, 60)

        def flip_all(count: int) -> list[float]:
            delays = []
            value = next(iter(values.values()))
            for _ in range(count):
                value = not value
                started = time.monotonic()
                writer.set_flag("flip", enabled=value)
                pump(lambda v=value: len(values) == 4 and set(values.values()) == {v}, 30)
                delays.append(max(seen.values()) - started)
            return delays

        up = flip_all(flips)
        server.kill()
        pump(lambda: set(modes.values()) == {"poll"}, 20)
        down = flip_all(max(5, flips // 5))
    finally:
        stop.set()
        for proc in procs:
            proc.join(20)
            if proc.exitcode is None:
                proc.kill()
        writer.close()
        cache.close()
    print("\npropagation to 4 reader processes (from before the commit until all evaluate it)")
    for label, delays in (("Redis up", up), (f"Redis killed, poll {poll_interval:g}s", down)):
        median = sorted(delays)[len(delays) // 2]
        print(
            f"  {label:<26} p99 {p99(delays) * 1000:7.1f} ms   median {median * 1000:7.1f} ms"
            f"   over {len(delays)} flips"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000, help="calls per timing round")
    parser.add_argument("--flips", type=int, default=50)
    parser.add_argument("--poll-interval", type=float, default=0.5)
    args = parser.parse_args()
    engine = sa.create_engine(POSTGRES_URL)
    prefix = f"bench_flags_{uuid.uuid4().hex[:6]}"
    tables = create_tables(engine, flag_tables(prefix=prefix))
    server = RedisServer()
    try:
        evaluation(server, engine, prefix, args.number)
        propagation(server, engine, prefix, args.flips, args.poll_interval)
    finally:
        server.stop()
        with engine.begin() as conn:
            for table in reversed(tables.all()):
                table.drop(conn, checkfirst=True)
        engine.dispose()


if __name__ == "__main__":
    main()
