"""Invalidation broadcast on Redis Cluster, sharded (SPUBLISH) and classic (PUBLISH): both
reach every process's L1 (issue 17, item 7)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.crc import key_slot

from topologies import LocalCluster
from veneer import AsyncCache


def calls(cluster: LocalCluster, command: str) -> int:
    total = 0
    for server in cluster.primaries():
        client = server.client()
        total += int(client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))
        client.close()
    return total


def shard_subscribers(cluster: LocalCluster, channel: str) -> int:
    """Subscribers of ``channel`` on the primary that owns its slot."""
    slot = key_slot(channel.encode())
    for server in cluster.primaries():
        client = server.client()
        try:
            ranges = client.execute_command("CLUSTER", "SLOTS")
            mine = [r for r in ranges if r[2][1] == server.port]
            if any(start <= slot <= end for start, end, *_ in mine):
                reply = client.execute_command("PUBSUB", "SHARDNUMSUB", channel)
                return int(reply[1])
        finally:
            client.close()
    raise AssertionError(f"no primary owns slot {slot}")


@pytest.mark.parametrize("sharded", [True, False])
async def test_invalidations_reach_every_l1_in_both_modes(
    redis_cluster: LocalCluster, namespace: str, sharded: bool
) -> None:
    """With sharded_pubsub on, an invalidation is one SPUBLISH heard by subscribers on the
    channel's shard; off, one PUBLISH; either way the other process drops its copy."""
    options: dict[str, Any] = {"namespace": namespace, "ttl": 60, "sharded_pubsub": sharded}
    async with (
        AsyncCache.from_url(redis_cluster.url, **options) as writer,
        AsyncCache.from_url(redis_cluster.url, **options) as reader,
    ):
        assert await writer.ready() and await reader.ready()
        channel = "veneer:inv:{" + namespace + "}"
        assert shard_subscribers(redis_cluster, channel) == (2 if sharded else 0)
        assert await reader.get_or_load("k", lambda: "old") == "old"
        assert "k" in reader._l1_map
        sharded_before, classic_before = (
            calls(redis_cluster, "spublish"),
            calls(redis_cluster, "publish"),
        )
        assert await writer.invalidate("k")
        for _ in range(200):
            if "k" not in reader._l1_map:
                break
            await asyncio.sleep(0.01)
        assert "k" not in reader._l1_map
        assert calls(redis_cluster, "spublish") - sharded_before == (1 if sharded else 0)
        assert calls(redis_cluster, "publish") - classic_before == (0 if sharded else 1)
        assert await reader.get_or_load("k", lambda: "new") == "new"


async def test_sharded_pubsub_is_the_default_where_every_primary_has_it(
    redis_cluster: LocalCluster, namespace: str
) -> None:
    """On a Redis 7 cluster the default (None) picks sharded pub/sub; one server keeps
    classic PUBLISH."""
    async with AsyncCache.from_url(redis_cluster.url, namespace=namespace, ttl=60) as cache:
        assert await cache._l2.sharded_broadcast()
