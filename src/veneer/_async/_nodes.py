"""Cluster plumbing that differs between redis.asyncio and redis (hand-written twin in
``_sync``): how to dial a node, refresh the slot map, and open a subscriber."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis.asyncio as redis_client

from .._random import rng

__all__ = [
    "close_node_clients",
    "close_subscriber",
    "node_client",
    "node_connection_factory",
    "refresh_topology",
    "subscriber_client",
]


def node_connection_factory(client: Any, node: Any) -> Callable[[], Any]:
    """New connections to ``node`` with the cluster's settings (TLS, auth, READONLY)."""
    return lambda: node.connection_class(**node.connection_kwargs)


async def refresh_topology(client: Any) -> None:
    await client.nodes_manager.initialize()


def _plain_client(node: Any) -> Any:
    kwargs = {k: v for k, v in node.connection_kwargs.items() if k != "redis_connect_func"}
    pool = redis_client.ConnectionPool(connection_class=node.connection_class, **kwargs)
    return redis_client.Redis(connection_pool=pool)


async def node_client(client: Any, node: Any, cache: dict[str, Any]) -> Any:
    """A plain client to one node (its pipelines run scripts, a cluster pipeline's do not)."""
    found = cache.get(node.name)
    if found is None:
        found = cache[node.name] = _plain_client(node)
    return found


async def close_node_clients(cache: dict[str, Any]) -> None:
    for found in cache.values():
        await close_subscriber(found)
    cache.clear()


async def subscriber_client(client: Any, node: Any = None) -> Any:
    """A plain client to ``node`` (the owner of a sharded channel's slot), or to any
    primary: classic PUBLISH reaches subscribers on every node."""
    await client.initialize()  # the asyncio cluster client learns its nodes lazily
    return _plain_client(node or rng.choice(client.get_primaries()))


async def close_subscriber(client: Any) -> None:
    await client.aclose()
    await client.connection_pool.disconnect()
