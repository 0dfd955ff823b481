"""Processes of the counters fault tests (importable by multiprocessing's spawn).

Each incrementing process runs ``threads`` threads that increment Zipf-chosen keys of
an exact and a buffered counter (and, as the naive control, a plain Redis ``INCR``),
and record in shared memory what they attempted and what was acknowledged.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from typing import Any

import redis
import sqlalchemy as sa

from veneer import Cache
from veneer.counters import CounterFlusher, Counters, CounterSpec, counter_tables

KEYS = 24
COUNTERS = ("credits", "hits")  # exact, buffered
SPECS: dict[str, Any] = {"credits": CounterSpec("exact"), "hits": CounterSpec("buffered", shards=4)}
NAIVE = 2  # index of the naive INCR control in the record arrays
FLUSH_INTERVAL = 0.1
LEASE_TTL = 1.0

_WEIGHTS = [1 / (rank + 1) ** 1.1 for rank in range(KEYS)]


def slot(process: int, thread: int, threads: int, counter: int, key: int) -> int:
    """Where one thread records one (counter, key) in the shared arrays."""
    return ((process * threads + thread) * 3 + counter) * KEYS + key


def _cache(url: str, namespace: str) -> Cache:
    return Cache.from_url(
        url, namespace=namespace, ttl=60, redis_timeout=0.25, breaker_cooldown=0.3
    )


def _engine(db_url: str) -> sa.Engine:
    return sa.create_engine(db_url, pool_size=2, max_overflow=3)


def increment(
    process: int, threads: int, url: str, port: int, namespace: str, db_url: str, prefix: str,
    naive: bool, ready: Any, go: Any, stop: Any, attempted: Any, acked: Any,
) -> None:  # fmt: skip
    """Increment until ``stop``; every acknowledged increment is recorded right away, so a
    SIGKILL loses at most the calls in flight (attempted but not acknowledged)."""
    engine = _engine(db_url)
    cache = _cache(url, namespace)
    counters = Counters(cache, engine, SPECS, tables=counter_tables(prefix=prefix))
    counters.get("credits", "k0")  # warm up: connections, registered definitions

    def run(thread: int) -> None:
        rng = random.Random(process * 1000 + thread)
        raw = redis.Redis(port=port, socket_timeout=0.25, socket_connect_timeout=0.25)
        keys = rng.choices(range(KEYS), weights=_WEIGHTS, k=200_000)
        go.wait()
        for i, key in enumerate(keys):
            if stop.is_set():
                break
            counter = i % 2
            index = slot(process, thread, threads, counter, key)
            attempted[index] += 1
            try:
                counters.incr(COUNTERS[counter], f"k{key}", 1)
            except Exception:
                continue  # not acknowledged (the database refused it)
            acked[index] += 1
            if naive:
                index = slot(process, thread, threads, NAIVE, key)
                attempted[index] += 1
                try:
                    raw.incr(f"naive:k{key}")
                except redis.RedisError:
                    continue
                acked[index] += 1
        raw.close()

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    ready.wait()
    for worker in workers:
        worker.join()
    counters.close(timeout=10.0)
    cache.close()
    engine.dispose()


def flush(
    url: str, namespace: str, db_url: str, prefix: str, stop_at: str | None, at_point: Any,
    started: Any,
) -> None:  # fmt: skip
    """A flusher worker (as ``veneer counters flush`` runs it). With ``stop_at`` it stops at
    that point of its first flush that claimed something and waits to be killed there."""

    def hook(point: str) -> None:
        if point == stop_at:
            at_point.set()
            time.sleep(600)

    engine = _engine(db_url)
    cache = _cache(url, namespace)
    flusher = CounterFlusher(
        cache, engine, tables=counter_tables(prefix=prefix), interval=FLUSH_INTERVAL,
        lease_ttl=LEASE_TTL, hook=hook,
    )  # fmt: skip
    signal.signal(signal.SIGTERM, lambda signum, frame: flusher.request_stop())
    started.set()
    flusher.run_forever()
    flusher.close()
    cache.close()
    engine.dispose()
    os._exit(0)
