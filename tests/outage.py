"""Harness for the outage tests and benchmark: a PostgreSQL source that counts its loads,
and read workloads (threads or asyncio tasks) that record every read's latency and error."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from servers import POSTGRES_URL

DSN = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")


def zipf_keys(n_keys: int, n: int, seed: int = 3, s: float = 1.1) -> list[str]:
    rng = random.Random(seed)
    weights = [1.0 / (rank**s) for rank in range(1, n_keys + 1)]
    return [f"row:{i}" for i in rng.choices(range(n_keys), weights=weights, k=n)]


class Source:
    """A table of ``rows`` rows; every load is counted, with the concurrency it ran at."""

    def __init__(self, rows: int = 300, delay: float = 0.0) -> None:
        self.table = f"veneer_outage_{uuid.uuid4().hex[:8]}"
        self.delay = delay
        self._lock = threading.Lock()
        self._local = threading.local()
        self.active = 0
        self.peak = 0
        self.loads: list[tuple[float, str]] = []
        self.durations: list[float] = []
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE {self.table} (id int PRIMARY KEY, v text)")
            conn.execute(
                f"INSERT INTO {self.table} SELECT g, 'value ' || g FROM generate_series(0, %s) g",
                (rows,),
            )
        self._async_pool: asyncio.Queue[psycopg.AsyncConnection[Any]] | None = None
        self._connections: list[psycopg.Connection[Any]] = []

    def _enter(self, key: str) -> float:
        with self._lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.loads.append((time.monotonic(), key))
        return time.perf_counter()

    def _leave(self, started: float) -> None:
        with self._lock:
            self.active -= 1
            self.durations.append(time.perf_counter() - started)

    def load(self, key: str) -> str:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = psycopg.connect(DSN, autocommit=True)
            with self._lock:
                self._connections.append(conn)
        started = self._enter(key)
        try:
            row = conn.execute(
                f"SELECT v FROM {self.table} WHERE id = %s", (int(key.split(":")[1]),)
            ).fetchone()
            if self.delay:
                time.sleep(self.delay)
            return str(row[0]) if row else ""
        finally:
            self._leave(started)

    async def open_async(self, connections: int) -> None:
        self._async_pool = asyncio.Queue()
        for _ in range(connections):
            await self._async_pool.put(await psycopg.AsyncConnection.connect(DSN, autocommit=True))

    async def aload(self, key: str) -> str:
        assert self._async_pool is not None
        conn = await self._async_pool.get()
        started = self._enter(key)
        try:
            cursor = await conn.execute(
                f"SELECT v FROM {self.table} WHERE id = %s", (int(key.split(":")[1]),)
            )
            row = await cursor.fetchone()
            if self.delay:
                await asyncio.sleep(self.delay)
            return str(row[0]) if row else ""
        finally:
            self._leave(started)
            await self._async_pool.put(conn)

    def loads_since(self, moment: float) -> Counter[str]:
        return Counter(key for at, key in self.loads if at >= moment)

    def p99(self) -> float:
        ordered = sorted(self.durations)
        return ordered[min(len(ordered) - 1, len(ordered) * 99 // 100)] if ordered else 0.0

    async def close_async(self) -> None:
        if self._async_pool is not None:
            while not self._async_pool.empty():
                await (await self._async_pool.get()).close()

    def drop(self) -> None:
        for conn in self._connections:
            conn.close()
        self._connections.clear()
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {self.table}")


def naive_reader(client: Any, source: Source) -> Callable[[str], str]:
    """Cache-aside as most code writes it: GET, on a miss load and SET with a TTL."""

    def read(key: str) -> str:
        hit = client.get(key)
        if hit is not None:
            return str(hit)
        value = source.load(key)
        client.set(key, value, ex=60)
        return value

    return read


@dataclass
class Reads:
    """Every read: (start, seconds, error or None)."""

    records: list[tuple[float, float, BaseException | None]] = field(default_factory=list)

    def errors(self) -> list[BaseException]:
        return [e for _, _, e in self.records if e is not None]

    def between(self, start: float, end: float) -> list[float]:
        return [s for at, s, _ in self.records if start <= at < end]

    @staticmethod
    def p99(samples: list[float]) -> float:
        ordered = sorted(samples)
        return ordered[min(len(ordered) - 1, len(ordered) * 99 // 100)] if ordered else 0.0


class ThreadWorkload:
    """``workers`` threads reading Zipf keys through ``read(key)`` until stopped."""

    def __init__(self, read: Callable[[str], Any], workers: int = 6, keys: int = 200) -> None:
        self.reads = Reads()
        self._read = read
        self._stop = threading.Event()
        self._keys = zipf_keys(keys, 50_000)
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    def _run(self, worker: int) -> None:
        i = worker * 7919
        while not self._stop.is_set():
            key = self._keys[i % len(self._keys)]
            i += 1
            began = time.monotonic()
            error: BaseException | None = None
            try:
                self._read(key)
            except Exception as exc:
                error = exc
            self.reads.records.append((began, time.monotonic() - began, error))
            time.sleep(0.001)

    def stop(self) -> Reads:
        self._stop.set()
        for t in self._threads:
            t.join(30)
        return self.reads


class TaskWorkload:
    """``workers`` asyncio tasks reading Zipf keys through ``read(key)`` until stopped."""

    def __init__(
        self, read: Callable[[str], Awaitable[Any]], workers: int = 6, keys: int = 200
    ) -> None:
        self.reads = Reads()
        self._read = read
        self._stop = False
        self._keys = zipf_keys(keys, 50_000)
        self._tasks = [asyncio.create_task(self._run(i)) for i in range(workers)]

    async def _run(self, worker: int) -> None:
        i = worker * 7919
        while not self._stop:
            key = self._keys[i % len(self._keys)]
            i += 1
            began = time.monotonic()
            error: BaseException | None = None
            try:
                await self._read(key)
            except Exception as exc:
                error = exc
            self.reads.records.append((began, time.monotonic() - began, error))
            await asyncio.sleep(0.001)

    async def stop(self) -> Reads:
        self._stop = True
        await asyncio.gather(*self._tasks)
        return self.reads
