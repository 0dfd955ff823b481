"""No stale sets: a fill that read the old row can never overwrite the invalidation
of the new one (promise 4), forced with barriers against PostgreSQL."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from threading import Event
from typing import Any

import psycopg
import pytest
import redis

from servers import POSTGRES_URL, RedisServer
from veneer import Cache

ITERATIONS = 1000
MISSING: Any = object()


@pytest.fixture
def table() -> Iterator[tuple[psycopg.Connection[Any], str]]:
    dsn = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    conn = psycopg.connect(dsn, autocommit=True)
    name = f"veneer_race_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, v int NOT NULL)")
    conn.execute(f"INSERT INTO {name} SELECT g, 0 FROM generate_series(0, {ITERATIONS}) g")
    yield conn, name
    conn.execute(f"DROP TABLE {name}")
    conn.close()


class Race:
    """Reader: load the row (old value), then wait; writer: commit a new value and
    invalidate; reader: fill. ``run`` returns what the cache holds afterwards."""

    def __init__(self, conn: psycopg.Connection[Any], table: str) -> None:
        self.table = table
        self.writer = conn
        self.reader = psycopg.connect(conn.info.dsn, autocommit=True)
        self.pool = ThreadPoolExecutor(max_workers=1)

    def close(self) -> None:
        self.pool.shutdown()
        self.reader.close()

    def run(
        self,
        row: int,
        read_through: Callable[[Callable[[], int]], Any],
        invalidate: Callable[[], Any],
    ) -> int:
        loaded, written = Event(), Event()

        def load() -> int:
            value = self.reader.execute(f"SELECT v FROM {self.table} WHERE id = %s", (row,))
            old = int(value.fetchone()[0])  # type: ignore[index]
            loaded.set()
            assert written.wait(10)
            return old

        reading = self.pool.submit(read_through, load)
        assert loaded.wait(10)
        self.writer.execute(f"UPDATE {self.table} SET v = v + 1 WHERE id = %s", (row,))
        invalidate()
        written.set()
        reading.result(10)
        current = self.writer.execute(f"SELECT v FROM {self.table} WHERE id = %s", (row,))
        return int(current.fetchone()[0])  # type: ignore[index]


def test_stale_set_race_with_the_key_absent(
    table: tuple[psycopg.Connection[Any], str], redis_server: RedisServer, namespace: str
) -> None:
    """1,000 forced races on a missing key: veneer keeps 0 stale entries, naive cache-aside
    in the same test keeps one every time."""
    conn, name = table
    race = Race(conn, name)
    raw = redis_server.client()
    reader = Cache.from_url(redis_server.url, namespace=namespace, ttl=60)
    checker = Cache.from_url(redis_server.url, namespace=namespace, ttl=60, l1_size=0)
    stale_veneer = stale_naive = 0
    try:
        for row in range(ITERATIONS):
            key = f"row:{row}"
            new = race.run(
                row,
                lambda load, key=key: reader.get_or_load(key, load),
                lambda key=key: reader.invalidate(key),
            )
            cached = checker.get(key, default=MISSING)
            if cached is not MISSING and cached != new:
                stale_veneer += 1
            if reader.get(key, default=MISSING) not in (MISSING, new):
                stale_veneer += 1

            naive_key = f"naive:{namespace}:{row}"

            def naive_read(load: Callable[[], int], naive_key: str = naive_key) -> int:
                hit = raw.get(naive_key)
                if hit is not None:
                    return int(hit)
                value = load()
                raw.set(naive_key, value, ex=60)
                return value

            new = race.run(row, naive_read, lambda naive_key=naive_key: raw.delete(naive_key))
            hit = raw.get(naive_key)
            if hit is not None and int(hit) != new:
                stale_naive += 1
        assert stale_veneer == 0
        assert stale_naive == ITERATIONS  # the control shows the race is real
        assert reader.stats().fills_refused == ITERATIONS
    finally:
        race.close()
        reader.close()
        checker.close()
        raw.close()


def test_stale_set_race_with_a_stale_value_being_refreshed(
    table: tuple[psycopg.Connection[Any], str], redis_server: RedisServer, namespace: str
) -> None:
    """The same race on a key whose stale value is being refreshed: the refresh that read
    the old row is refused, and the stale value is gone, not resurrected."""
    conn, name = table
    race = Race(conn, name)
    options: dict[str, Any] = {"ttl": 0.01, "stale_ttl": 60, "jitter": 0, "xfetch_beta": 0}
    reader = Cache.from_url(redis_server.url, namespace=namespace, l1_size=0, **options)
    checker = Cache.from_url(redis_server.url, namespace=namespace, l1_size=0, **options)
    iterations = ITERATIONS // 4
    stale = 0
    try:
        for row in range(iterations):
            key = f"row:{row}"
            reader.set(key, -1)  # fresh for 10 ms, then stale for a minute
            time.sleep(0.012)
            new = race.run(
                row,
                lambda load, key=key: reader.get_or_load(key, load),
                lambda key=key: reader.invalidate(key),
            )
            cached = checker.get(key, default=MISSING)
            if cached is not MISSING and cached != new:
                stale += 1
        assert stale == 0
        assert reader.stats().refreshes == iterations
        assert reader.stats().fills_refused == iterations
    finally:
        race.close()
        reader.close()
        checker.close()


def test_invalidate_revokes_a_lease_even_when_the_value_is_absent(
    redis_server: RedisServer, namespace: str
) -> None:
    """WATCH would not see a DEL of a missing key; the lease compare does."""
    cache = Cache.from_url(redis_server.url, namespace=namespace, ttl=60)
    raw: redis.Redis = redis_server.client()
    try:
        slot = "{" + namespace + ":k}"

        def load() -> str:
            # The fill is in flight under a lease: the absent value's slot holds its mark.
            assert (raw.get(slot) or b"").startswith(b"\x00L")
            cache.invalidate("k")  # the value is absent: only the lease can carry this
            assert raw.exists(slot) == 0
            return "old"

        assert cache.get_or_load("k", load) == "old"  # the caller still gets its read
        assert raw.exists("{" + namespace + ":k}") == 0  # but the fill was refused
        assert cache.stats().fills_refused == 1
    finally:
        cache.close()
        raw.close()
