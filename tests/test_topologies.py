"""The same cache on Redis Cluster, Sentinel and TLS: routing, failover, verification."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.crc import key_slot

from topologies import LocalCluster, SentinelGroup, TLSRedisServer, tls_material
from veneer import AsyncCache, Cache, RedisUnavailable
from veneer._sync._redis_io import build_client


def test_get_many_costs_one_round_trip_per_shard(
    redis_cluster: LocalCluster, namespace: str
) -> None:
    """300 keys over all three shards: get_many sends one buffer per shard (per-slot MGETs),
    no CROSSSLOT, and returns every value in order."""
    with Cache.from_url(redis_cluster.url, namespace=namespace, ttl=60, l1_size=0) as cache:
        keys = [f"item:{i}" for i in range(300)]
        cache.get_or_load_many(keys, lambda ks: {k: k.upper() for k in ks})
        raw = redis_cluster.client()
        try:
            nodes = {
                raw.nodes_manager.get_node_from_slot(
                    raw.cluster_keyslot(f"{{{namespace}:{k}}}")
                ).name
                for k in keys
            }
        finally:
            raw.close()
        assert len(nodes) == 3  # the keys really are spread over every shard
        cache.get_or_load("warm", lambda: 1)  # stamps known: get_many needs only its reads
        before = cache._l2.round_trips  # type: ignore[attr-defined]
        found = cache.get_many(keys)
        assert cache._l2.round_trips - before == 3  # type: ignore[attr-defined]
        assert found == {k: k.upper() for k in keys}
        assert list(found) == keys


class Workload:
    """Readers and one writer on one cache; the writer bumps a version in the "database"
    and invalidates. A read must never return a version older than the last one whose
    invalidation was applied before the read began."""

    def __init__(self, cache: Cache, keys: int = 50, readers: int = 4) -> None:
        self.cache = cache
        self.versions = dict.fromkeys(range(keys), 0)  # the source of truth
        self.applied = dict.fromkeys(range(keys), 0)  # invalidated in Redis at this version
        self.lock = threading.Lock()
        self.errors: list[BaseException] = []
        self.stale: list[tuple[int, int, int]] = []
        self.reads: list[tuple[float, bool]] = []  # (when, served without a load)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.read, daemon=True) for _ in range(readers)]
        self.threads.append(threading.Thread(target=self.write, daemon=True))
        for t in self.threads:
            t.start()

    def load(self, key: int, loaded: list[bool]) -> int:
        loaded.append(True)
        with self.lock:
            return self.versions[key]

    def read(self) -> None:
        rng = random.Random()
        while not self.stop.is_set():
            key = min(int(rng.paretovariate(1.2)) - 1, len(self.versions) - 1)
            with self.lock:
                floor = self.applied[key]
            loaded: list[bool] = []
            try:
                value = self.cache.get_or_load(
                    f"v:{key}", lambda k=key, log=loaded: self.load(k, log)
                )
            except Exception as exc:
                self.errors.append(exc)
                continue
            if value < floor:
                self.stale.append((key, value, floor))
            self.reads.append((time.monotonic(), not loaded))
            time.sleep(0.001)

    def write(self) -> None:
        rng = random.Random(5)
        while not self.stop.is_set():
            key = rng.randrange(len(self.versions))
            with self.lock:
                self.versions[key] += 1
                version = self.versions[key]
            try:
                if self.cache.invalidate(f"v:{key}"):
                    with self.lock:
                        self.applied[key] = max(self.applied[key], version)
            except Exception as exc:
                self.errors.append(exc)
            time.sleep(0.02)

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def hit_ratio(self, since: float) -> float:
        recent = [hit for at, hit in self.reads if at >= since]
        return sum(recent) / len(recent) if recent else 0.0


@pytest.fixture
def own_cluster() -> Iterator[LocalCluster]:
    cluster = LocalCluster(primaries=3, replicas=1)
    yield cluster
    cluster.stop()


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_primary_killed_under_load_on_a_cluster(own_cluster: LocalCluster) -> None:
    """SIGKILL a primary under reads and writes: no caller error, no value older than its
    last applied invalidation, and the hit ratio recovers once the replica is promoted."""
    options: dict[str, Any] = {"ttl": 60, "breaker_cooldown": 0.3, "redis_timeout": 0.2}
    cache = Cache.from_url(own_cluster.url, namespace="fo", **options)
    try:
        assert cache.ready(10)
        work = Workload(cache)
        time.sleep(2.0)
        victim = own_cluster.primaries()[0]
        victim.kill()
        alive = [s for s in own_cluster.servers if s is not victim]

        def promoted() -> bool:
            roles = []
            for server in alive:
                c = server.client(socket_timeout=1)
                try:
                    roles.append(c.info("replication")["role"])
                    info = c.execute_command("CLUSTER", "INFO")
                    text = info.decode() if isinstance(info, bytes) else str(info)
                    if "cluster_state:ok" not in text:
                        return False
                finally:
                    c.close()
            return roles.count("master") == 3

        wait_for(promoted, 30, "the replica to be promoted")
        recovered = time.monotonic() + 3.0
        time.sleep(5.0)
        work.finish()
        assert work.errors == []
        assert work.stale == []
        assert work.hit_ratio(recovered) > 0.8
        assert cache.stats().invalidations_pending == 0
    finally:
        cache.close()


def test_sentinel_failover_under_load() -> None:
    """Kill the primary behind Sentinel: the same guarantees after the replica is promoted."""
    group = SentinelGroup()
    options: dict[str, Any] = {"ttl": 60, "breaker_cooldown": 0.3, "redis_timeout": 0.2}
    cache = Cache.from_url(group.url, namespace="sfo", **options)
    try:
        assert cache.ready(10)
        work = Workload(cache)
        time.sleep(2.0)
        old = group.current_primary_port()
        group.primary.kill()
        wait_for(lambda: group.current_primary_port() != old, 30, "sentinel failover")
        recovered = time.monotonic() + 3.0
        time.sleep(5.0)
        work.finish()
        assert work.errors == []
        assert work.stale == []
        assert work.hit_ratio(recovered) > 0.8
        assert cache.stats().invalidations_pending == 0
    finally:
        cache.close()
        group.stop()


def test_tls_connects_with_verification_and_refuses_a_wrong_ca(tmp_path: Path) -> None:
    """rediss:// verifies the server certificate by default; a wrong CA is refused with a
    message that says what to change (reads still fall back to the source)."""
    material = tls_material(tmp_path)
    server = TLSRedisServer(material)
    try:
        with Cache.from_url(server.tls_url(material["ca"]), namespace="tls", ttl=10) as cache:
            cache.check()
            assert cache.get_or_load("k", lambda: "v") == "v"
            assert cache.get("k") == "v"
            assert cache.stats().l2_misses == 1 and cache.stats().redis_errors == 0
        wrong = server.tls_url(material["other_ca"])
        with Cache.from_url(wrong, namespace="tls", ttl=10, broadcast=False) as cache:
            with pytest.raises(RedisUnavailable, match="certificate verification failed") as info:
                cache.check()
            assert "ssl_ca_certs" in str(info.value)
            assert cache.get_or_load("k", lambda: "from source") == "from source"
    finally:
        server.stop()


async def test_tls_on_the_async_front(tmp_path: Path) -> None:
    material = tls_material(tmp_path)
    server = TLSRedisServer(material)
    try:
        async with AsyncCache.from_url(server.tls_url(material["ca"]), namespace="t", ttl=5) as c:
            await c.check()
            assert await c.get_or_load("k", lambda: 1) == 1
    finally:
        server.stop()


def test_credentials_and_tls_options_reach_every_topology(tmp_path: Path) -> None:
    """user:password@ and the TLS query options configure standalone, cluster and sentinel."""
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    query = f"ssl_ca_certs={ca}&ssl_certfile={ca}&ssl_keyfile={ca}"
    single = build_client(
        f"rediss://app:s3cret@127.0.0.1:1/0?{query}", redis_timeout=0.1, connect_timeout=0.1
    )
    kwargs = single.connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["ssl_ca_certs"]) == (
        "app", "s3cret", str(ca),
    )  # fmt: skip
    assert kwargs["ssl_cert_reqs"] == "required"
    single.close()
    sentinel = build_client(
        f"rediss+sentinel://app:s3cret@127.0.0.1:1,127.0.0.1:2/svc?{query}&sentinel_password=x",
        redis_timeout=0.1,
        connect_timeout=0.1,
    )
    kwargs = sentinel.connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["ssl_ca_certs"]) == (
        "app", "s3cret", str(ca),
    )  # fmt: skip
    assert sentinel.connection_pool.service_name == "svc"
    sentinel.close()
    with pytest.raises(RedisUnavailable):  # nothing listens: but the options parse
        build_client(
            f"rediss+cluster://app:s3cret@127.0.0.1:1/?{query}",
            redis_timeout=0.1,
            connect_timeout=0.1,
        )


def test_keys_and_their_leases_share_a_slot_on_the_cluster(
    redis_cluster: LocalCluster, namespace: str
) -> None:
    """What veneer writes for one key (value, lease) lives in one slot: scripts never
    cross slots (CLUSTER KEYSLOT agrees with the layout)."""
    raw = redis_cluster.client()
    try:
        for key in ("user:1", "a}b", "{x}", "ünï"):
            value = f"{{{namespace}:{key}}}"
            lease = value + ":lease"
            assert raw.cluster_keyslot(value) == raw.cluster_keyslot(lease)
            assert raw.cluster_keyslot(value) == key_slot(value.encode())
    finally:
        raw.close()


def test_read_from_replicas_sends_lean_reads_to_replicas(
    redis_cluster: LocalCluster, namespace: str
) -> None:
    """read_from_replicas=True spreads GET/MGET over replicas; writes stay on primaries."""
    redis_cluster.wait_replicated()
    replicas = [s for s in redis_cluster.servers if s not in redis_cluster.primaries()]
    options: dict[str, Any] = {"ttl": 60, "l1_size": 0, "read_from_replicas": True}

    def replica_reads() -> int:
        total = 0
        for server in replicas:
            c = server.client()
            try:
                stats = c.info("commandstats")
            finally:
                c.close()
            total += sum(
                int(stats.get(f"cmdstat_{n}", {}).get("calls", 0)) for n in ("get", "mget")
            )
        return total

    with Cache.from_url(redis_cluster.url, namespace=namespace, **options) as cache:
        keys = [f"r:{i}" for i in range(30)]
        cache.get_or_load_many(keys, lambda ks: {k: k for k in ks})
        redis_cluster.wait_replicated()
        before = replica_reads()
        for _ in range(10):
            for key in keys:
                assert cache.get_or_load(key, lambda: "reloaded") == key
        assert replica_reads() - before >= 100  # round robin: a good share on replicas
        assert cache.stats().source_loads == 1  # the one batch load; every read after hit
