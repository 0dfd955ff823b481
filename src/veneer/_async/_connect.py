"""The Redis tier (L2) of a cache, built from a client and the cache's options, for
the asyncio front (``veneer/_sync/_connect.py`` is generated from this file).

One circuit breaker per endpoint: a single server (or a Sentinel service) has one,
a cluster one per node, so a dead shard degrades only the keys on it.
"""

from __future__ import annotations

from typing import Any

from .._breaker import CircuitBreaker
from .._options import CacheOptions
from ._cluster_io import AsyncClusterL2
from ._redis_io import PROBE_TRIES, AsyncL2, is_cluster

__all__ = ["build_l2"]


def build_l2(client: Any, opts: CacheOptions, *, owns_client: bool) -> AsyncL2:
    """The L2 over ``client``: a cluster client gets a breaker per node."""

    def breaker(name: str) -> CircuitBreaker:
        return CircuitBreaker(
            name,
            failures=opts.breaker_failures,
            slot=opts.redis_timeout,
            cooldown=opts.breaker_cooldown,
            # A probe that never reported (its task was cancelled) is replaced after this.
            probe_timeout=1.0 + PROBE_TRIES * (opts.redis_timeout + opts.connect_timeout),
        )

    if is_cluster(client):
        return AsyncClusterL2(
            client,
            breaker,
            owns_client=owns_client,
            read_from_replicas=opts.read_from_replicas,
            replica_wait=opts.redis_timeout / 2,
            max_connections=opts.max_connections,
            pool_timeout=opts.pool_timeout,
            sharded_pubsub=opts.sharded_pubsub,
        )
    return AsyncL2(
        client,
        breaker(_endpoint(client)),
        owns_client=owns_client,
        replica_wait=opts.redis_timeout / 2,
        max_connections=opts.max_connections,
        pool_timeout=opts.pool_timeout,
        sharded_pubsub=opts.sharded_pubsub,
    )


def _endpoint(client: Any) -> str:
    """The breaker's name for a single-endpoint client (never its password)."""
    pool = client.connection_pool
    if hasattr(pool, "service_name"):
        return f"sentinel:{pool.service_name}"
    kwargs = pool.connection_kwargs
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
