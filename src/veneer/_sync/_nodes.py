"""Cluster plumbing that differs between redis and redis.asyncio (hand-written twin of
``_async/_nodes.py``): how to dial a node, refresh the slot map, and open a subscriber."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
    pool = client.get_redis_connection(node).connection_pool
    return lambda: pool.connection_class(**pool.connection_kwargs)


def refresh_topology(client: Any) -> None:
    client.nodes_manager.initialize()


def node_client(client: Any, node: Any, cache: dict[str, Any]) -> Any:
    """The cluster client's own plain client for ``node`` (its pipelines run scripts)."""
    return client.get_redis_connection(node)


def close_node_clients(cache: dict[str, Any]) -> None:
    """They belong to the cluster client."""
    cache.clear()


def subscriber_client(client: Any, node: Any = None) -> Any:
    """A plain client to ``node`` (the owner of a sharded channel's slot), or to any
    primary: classic PUBLISH reaches subscribers on every node."""
    return client.get_redis_connection(node or rng.choice(client.get_primaries()))


def close_subscriber(client: Any) -> None:
    """The node's client belongs to the cluster client; only the pub/sub is ours."""
