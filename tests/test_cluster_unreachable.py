"""A Redis Cluster URL with no node answering (issue 19's leftover): the asyncio cache
serves from the source and fills once a node answers; the sync cache, whose redis-py
client needs the slot map when it is built, says so clearly instead of leaking
redis-py's RedisClusterException."""

from __future__ import annotations

import asyncio

import pytest

from servers import free_port
from veneer import AsyncCache, Cache, RedisUnavailable


def test_async_cache_serves_from_the_source_while_no_node_answers() -> None:
    url = f"redis+cluster://127.0.0.1:{free_port()}"
    loads = 0

    def load() -> str:
        nonlocal loads
        loads += 1
        return f"row-{loads}"

    async def main() -> None:
        cache = AsyncCache.from_url(url, namespace="unreachable", ttl=5, l1_size=0)
        try:
            for _ in range(3):
                # Each read is a source load (nothing to cache in), never an error.
                assert (await cache.get_or_load("k", load)).startswith("row-")
            assert await cache.get("k") is None
        finally:
            await cache.close()

    asyncio.run(main())
    assert loads == 3


def test_sync_cache_says_what_to_do_when_no_node_answers() -> None:
    port = free_port()
    with pytest.raises(RedisUnavailable) as info:
        Cache.from_url(f"redis+cluster://user:s3cret@127.0.0.1:{port}", namespace="x", ttl=5)
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message
    assert "needs one reachable node" in message and "asyncio front" in message
    assert "s3cret" not in message  # the URL is masked
