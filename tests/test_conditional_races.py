"""Conditional writes are atomic across processes: caches of their own (each with its own
L1, as separate processes have) racing on one key, in threads started together."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from veneer import Cache

WRITERS = 4


@pytest.fixture(params=["single", "cluster"])
def redis_url(request: pytest.FixtureRequest) -> str:
    """On one Redis and on a 3-shard Redis Cluster."""
    if request.param == "cluster":
        return str(request.getfixturevalue("redis_cluster").url)
    return str(request.getfixturevalue("redis_server").url)


@pytest.fixture
def writers(redis_url: str, namespace: str) -> Iterator[list[Cache]]:
    caches = [
        Cache.from_url(redis_url, namespace=namespace, ttl=30, redis_timeout=2.0)
        for _ in range(WRITERS)
    ]
    yield caches
    for cache in caches:
        cache.close()


def _race(caches: list[Cache], work: Callable[[Cache], Any]) -> list[Any]:
    """``work(cache)`` in one thread per cache, all released at once."""
    start = threading.Barrier(len(caches))
    results: list[Any] = [None] * len(caches)

    def run(i: int) -> None:
        start.wait()
        results[i] = work(caches[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(caches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_concurrent_incr_loses_no_increment(
    redis_url: str, namespace: str, writers: list[Cache]
) -> None:
    """4 writers x 50 increments of one key: the total is exactly 200 and every reply is
    distinct (each increment saw the ones before it)."""
    with Cache.from_url(redis_url, namespace=namespace, ttl=30) as cache:
        cache.set("n", 0)
        replies = _race(writers, lambda c: [c.incr("n") for _ in range(50)])
        assert cache.get("n") == 200
    flat = sorted(value for batch in replies for value in batch)
    assert flat == list(range(1, 201))


def test_concurrent_add_has_one_winner(
    redis_url: str, namespace: str, writers: list[Cache]
) -> None:
    """Writers adding the same missing key: exactly one is told it wrote, 20 rounds."""
    with Cache.from_url(redis_url, namespace=namespace, ttl=30) as cache:
        for round_ in range(20):
            key = f"lock:{round_}"
            results = _race(writers, lambda c, key=key: c.add(key, id(c)))
            assert results.count(True) == 1
            assert cache.get(key) is not None
