"""Cluster plumbing that differs between redis.asyncio and redis (hand-written twin in
``_sync``): how to dial a node, refresh the slot map, and open a subscriber."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import redis.asyncio as redis_client

__all__ = ["close_subscriber", "node_connection_factory", "refresh_topology", "subscriber_client"]


def node_connection_factory(client: Any, node: Any) -> Callable[[], Any]:
    """New connections to ``node`` with the cluster's settings (TLS, auth, READONLY)."""
    return lambda: node.connection_class(**node.connection_kwargs)


async def refresh_topology(client: Any) -> None:
    await client.nodes_manager.initialize()


def subscriber_client(client: Any) -> Any:
    """A plain client to one primary: classic PUBLISH reaches subscribers on every node."""
    node = random.choice(client.get_primaries())
    kwargs = {k: v for k, v in node.connection_kwargs.items() if k != "redis_connect_func"}
    pool = redis_client.ConnectionPool(connection_class=node.connection_class, **kwargs)
    return redis_client.Redis(connection_pool=pool)


async def close_subscriber(client: Any) -> None:
    await client.aclose()
    await client.connection_pool.disconnect()
