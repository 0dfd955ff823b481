"""The demo workload: a skewed read load on a SQL source, through no cache, naive
cache-aside on raw redis-py, and veneer. Shared by ``veneer demo`` and the benchmarks."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import redis

from .._keys import KeyLayout
from .._sync._cache import Cache

__all__ = ["ScenarioResult", "Source", "run_all", "zipf_keys"]


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    name: str
    reads: int
    source_queries: int
    l1_hit_ratio: float | None
    l2_hit_ratio: float | None
    p50_us: float
    p99_us: float
    seconds: float


class Source:
    """The source of truth: products and their reviews in a SQL database, via SQLAlchemy."""

    def __init__(self, dsn: str) -> None:
        try:
            import sqlalchemy as sa
        except ImportError:
            raise SystemExit(
                "veneer demo needs SQLAlchemy: pip install 'veneer[sqlalchemy]'"
            ) from None
        self._sa = sa
        self.engine = sa.create_engine(dsn)
        self.queries = 0
        meta = sa.MetaData()
        self.products = sa.Table(
            "veneer_demo_products",
            meta,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(100)),
            sa.Column("price", sa.Float),
            sa.Column("description", sa.Text),
        )
        self.reviews = sa.Table(
            "veneer_demo_reviews",
            meta,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("product_id", sa.Integer, index=True),
            sa.Column("stars", sa.Integer),
        )
        self._meta = meta
        p, r = self.products, self.reviews
        self._query = (
            sa.select(
                p.c.id, p.c.name, p.c.price, p.c.description,
                sa.func.count(r.c.id), sa.func.avg(r.c.stars),
            )
            .select_from(p.outerjoin(r, r.c.product_id == p.c.id))
            .where(p.c.id == sa.bindparam("pid"))
            .group_by(p.c.id, p.c.name, p.c.price, p.c.description)
        )  # fmt: skip

    def seed(self, products: int, reviews_per_product: int = 5, seed: int = 7) -> None:
        rng = random.Random(seed)
        self._meta.drop_all(self.engine)
        self._meta.create_all(self.engine)
        with self.engine.begin() as conn:
            conn.execute(
                self.products.insert(),
                [
                    {
                        "id": i,
                        "name": f"product {i}",
                        "price": round(rng.uniform(1, 500), 2),
                        "description": "A fine thing. " * rng.randint(2, 20),
                    }
                    for i in range(products)
                ],
            )
            conn.execute(
                self.reviews.insert(),
                [
                    {"product_id": i, "stars": rng.randint(1, 5)}
                    for i in range(products)
                    for _ in range(reviews_per_product)
                ],
            )

    def drop(self) -> None:
        self._meta.drop_all(self.engine)
        self.engine.dispose()

    def load_product(self, pid: int) -> dict[str, Any] | None:
        self.queries += 1
        with self.engine.connect() as conn:
            row = conn.execute(self._query, {"pid": pid}).first()
        if row is None:
            return None
        return {
            "id": row[0],
            "name": row[1],
            "price": row[2],
            "description": row[3],
            "reviews": row[4],
            "stars": float(row[5]) if row[5] is not None else None,
        }


def zipf_keys(n_keys: int, n_reads: int, s: float = 1.1, seed: int = 42) -> list[int]:
    """Product ids drawn with Zipf-like skew: a few hot products, a long tail."""
    rng = random.Random(seed)
    weights = [1.0 / (rank**s) for rank in range(1, n_keys + 1)]
    ids = list(range(n_keys))
    rng.shuffle(ids)
    return rng.choices(ids, weights=weights, k=n_reads)


def _timed(name: str, keys: list[int], read: Callable[[int], Any]) -> tuple[list[float], float]:
    samples: list[float] = []
    started = time.perf_counter()
    for pid in keys:
        t0 = time.perf_counter()
        read(pid)
        samples.append(time.perf_counter() - t0)
    return samples, time.perf_counter() - started


def _result(
    name: str,
    samples: list[float],
    seconds: float,
    queries: int,
    l1: float | None,
    l2: float | None,
) -> ScenarioResult:
    ordered = sorted(samples)
    n = len(ordered)
    return ScenarioResult(
        name=name,
        reads=n,
        source_queries=queries,
        l1_hit_ratio=l1,
        l2_hit_ratio=l2,
        p50_us=ordered[n // 2] * 1e6,
        p99_us=ordered[min(n - 1, n * 99 // 100)] * 1e6,
        seconds=seconds,
    )


def run_no_cache(source: Source, keys: list[int]) -> ScenarioResult:
    source.queries = 0
    samples, seconds = _timed("no cache", keys, source.load_product)
    return _result("no cache", samples, seconds, source.queries, None, None)


def run_naive(
    source: Source, redis_url: str, keys: list[int], ttl: int, prefix: str | None = None
) -> ScenarioResult:
    """What most code does: GET, on a miss query and SET with a TTL, JSON values."""
    client = redis.Redis.from_url(redis_url)
    prefix = prefix or f"veneer-demo:naive:{uuid.uuid4().hex[:8]}:product:"
    encoder, decoder = msgspec.json.Encoder(), msgspec.json.Decoder()
    hits = 0
    source.queries = 0

    def read(pid: int) -> Any:
        nonlocal hits
        raw = client.get(prefix + str(pid))
        if raw is not None:
            hits += 1
            return decoder.decode(raw)
        value = source.load_product(pid)
        client.set(prefix + str(pid), encoder.encode(value), ex=ttl)
        return value

    try:
        samples, seconds = _timed("naive", keys, read)
    finally:
        client.close()
    return _result(
        "naive cache-aside (redis-py)", samples, seconds, source.queries, None, hits / len(keys)
    )


def run_veneer(
    source: Source,
    redis_url: str,
    keys: list[int],
    ttl: int,
    *,
    name: str = "veneer (L1 + Redis)",
    namespace: str | None = None,
    **options: Any,
) -> ScenarioResult:
    namespace = namespace or f"veneer-demo-{uuid.uuid4().hex[:8]}"
    source.queries = 0
    with Cache.from_url(redis_url, namespace=namespace, ttl=ttl, **options) as cache:
        cache.ready()

        @cache.cached(key="product:{pid}")
        def product(pid: int) -> dict[str, Any] | None:
            return source.load_product(pid)

        samples, seconds = _timed("veneer", keys, product)
        stats = cache.stats()
    l1_total = stats.l1_hits + stats.l1_misses
    return _result(
        name,
        samples,
        seconds,
        source.queries,
        stats.l1_hits / l1_total if l1_total else 0.0,
        stats.l2_hit_ratio,
    )


def remove_demo_keys(redis_url: str, naive_prefix: str, namespace: str, pids: set[int]) -> int:
    """Delete, by name, every key the demo wrote (no SCAN, no KEYS); returns how many."""
    layout = KeyLayout(namespace)
    names = [layout.epoch_key, layout.registry_key]
    for pid in pids:
        names += [f"{naive_prefix}{pid}", layout.value(f"product:{pid}")]
        names.append(layout.lease(f"product:{pid}"))
    removed = 0
    client = redis.Redis.from_url(redis_url)
    try:
        for start in range(0, len(names), 500):
            removed += int(client.delete(*names[start : start + 500]))
    finally:
        client.close()
    return removed


def run_all(
    dsn: str, redis_url: str, *, products: int, reads: int, ttl: int = 300
) -> tuple[list[ScenarioResult], int]:
    """The four runs, and how many keys were removed from Redis afterwards."""
    source = Source(dsn)
    source.seed(products)
    keys = zipf_keys(products, reads)
    namespace = f"veneer-demo-{uuid.uuid4().hex[:8]}"
    naive_prefix = f"veneer-demo:naive:{uuid.uuid4().hex[:8]}:product:"
    try:
        return [
            run_no_cache(source, keys),
            run_naive(source, redis_url, keys, ttl, naive_prefix),
            run_veneer(source, redis_url, keys, ttl, namespace=namespace),
            # A second process (a new cache, empty L1) on the same Redis: no source load.
            run_veneer(
                source,
                redis_url,
                keys,
                ttl,
                name="veneer, 2nd process (warm Redis)",
                namespace=namespace,
            ),
        ], remove_demo_keys(redis_url, naive_prefix, namespace, set(keys))
    finally:
        source.drop()
