"""A 20 s outage timeline, naive cache-aside and veneer side by side.

    python benchmarks/outage.py            # needs PostgreSQL (VENEER_TEST_POSTGRES)

Phases: steady 5 s; Redis hung (SIGSTOP) 3 s; recovery 2 s; Redis killed 3 s;
restarted empty 7 s. Six threads read Zipf-distributed rows from PostgreSQL
through (a) naive cache-aside with redis-py's defaults and (b) veneer. Per
phase: source queries per second, caller errors, p50 and p99 read latency.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import redis

from outage import Reads, Source, ThreadWorkload, naive_reader
from servers import RedisServer
from veneer import Cache

PHASES = [("steady", 5.0), ("hung", 3.0), ("recovery", 2.0), ("killed", 3.0), ("cold", 7.0)]


def timeline(
    server: RedisServer, read: Callable[[str], Any], source: Source
) -> list[dict[str, Any]]:
    work = ThreadWorkload(read, workers=6)
    marks: list[tuple[str, float, float]] = []
    for name, seconds in PHASES:
        start = time.monotonic()
        if name == "hung":
            server.pause()
        elif name == "recovery":
            server.resume()
        elif name == "killed":
            server.kill()
        elif name == "cold":
            server.start()
        time.sleep(seconds)
        marks.append((name, start, time.monotonic()))
    reads = work.stop()
    rows = []
    for name, start, end in marks:
        during = [r for r in reads.records if start <= r[0] < end]
        latencies = sorted(s for _, s, _ in during)
        loads = sum(1 for at, _ in source.loads if start <= at < end)
        rows.append(
            {
                "phase": name,
                "reads": len(during),
                "source q/s": loads / (end - start),
                "errors": sum(1 for *_, e in during if e is not None),
                "p50 ms": latencies[len(latencies) // 2] * 1000 if latencies else float("nan"),
                "p99 ms": Reads.p99(latencies) * 1000 if latencies else float("nan"),
            }
        )
    return rows


def naive(source: Source) -> list[dict[str, Any]]:
    server = RedisServer()
    client = redis.Redis(port=server.port)  # redis-py defaults: no socket timeout
    try:
        return timeline(server, naive_reader(client, source), source)
    finally:
        client.close()
        server.stop()


def veneer(source: Source) -> list[dict[str, Any]]:
    server = RedisServer()
    cache = Cache.from_url(server.url, namespace="outage", ttl=60, source_concurrency=8)
    cache.ready()
    try:
        return timeline(
            server, lambda key: cache.get_or_load(key, lambda: source.load(key)), source
        )
    finally:
        stats = cache.stats()
        print(
            f"veneer: breaker opened {stats.breaker_opened}x,"
            f" open {stats.breaker_open_seconds:.1f} s,"
            f" stale fallbacks {stats.stale_fallbacks}, cold restarts {stats.cold_restarts},"
            f" peak source concurrency {stats.source_peak}",
            file=sys.stderr,
        )
        cache.close()
        server.stop()


def main() -> None:
    results = {}
    for name, run in (("naive", naive), ("veneer", veneer)):
        source = Source()
        try:
            results[name] = run(source)
        finally:
            source.drop()
    print("| phase | strategy | reads | source q/s | caller errors | p50 ms | p99 ms |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for i, (phase, _) in enumerate(PHASES):
        for name in ("naive", "veneer"):
            r = results[name][i]
            print(
                f"| {phase} | {name} | {r['reads']} | {r['source q/s']:.0f} | {r['errors']} "
                f"| {r['p50 ms']:.2f} | {r['p99 ms']:.1f} |"
            )


if __name__ == "__main__":
    main()
