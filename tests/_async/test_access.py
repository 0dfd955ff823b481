"""The components' door to Redis (``cache.redis_access``), on one Redis and on a cluster.

This file is the source of the sync copy.
"""

from __future__ import annotations

import pytest

from servers import RedisServer
from veneer import AsyncCache
from veneer._async._concurrency import sleep
from veneer._errors import RedisDown

from .helpers import eventually

INCR_BOTH = """
redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('INCRBY', KEYS[2], ARGV[1])
return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2])}
"""


@pytest.fixture(params=["single", "cluster"])
def url(request: pytest.FixtureRequest) -> str:
    """Every door test runs on one Redis and on a 3-shard Redis Cluster."""
    if request.param == "cluster":
        return str(request.getfixturevalue("redis_cluster").url)
    return str(request.getfixturevalue("redis_server").url)


async def test_a_subjects_keys_share_a_slot_so_scripts_and_pipelines_run(
    url: str, namespace: str
) -> None:
    """Keys of one subject share a hash tag: a script over them runs on a cluster too."""
    async with AsyncCache.from_url(url, namespace=namespace, ttl=60) as cache:
        door = cache.redis_access("probe")
        a, b = door.key("user:1", "a"), door.key("user:1", "b")
        assert a == f"{{{namespace}:probe:user:1}}:a".encode()
        script = door.script(INCR_BOTH)
        assert await door.eval(script, [a, b], [3]) == [b"3", b"3"]
        assert await door.eval(script, [a, b], [2]) == [b"5", b"5"]
        assert await door.command(a, "GET", a) == b"5"
        replies = await door.pipeline(a, [("SET", a, 1, "EX", 60), ("TTL", a), ("GET", b)])
        assert replies[0] is True or replies[0] == b"OK"
        assert 0 < int(replies[1]) <= 60
        assert replies[2] == b"5"
        assert door.healthy()
        assert await door.run_id()


async def test_eval_many_runs_one_script_per_call_across_slots(url: str, namespace: str) -> None:
    """eval_many runs a script once per call, each on its own slot's node (one round trip
    per node), replies in call order; a server that lost its scripts still runs them."""
    async with AsyncCache.from_url(url, namespace=namespace, ttl=60) as cache:
        door = cache.redis_access("probe")
        script = door.script(INCR_BOTH)
        calls = [([door.key(f"s{i}", "a"), door.key(f"s{i}", "b")], [i]) for i in range(12)]
        assert await door.eval_many(script, calls) == [[b"%d" % i] * 2 for i in range(12)]
        assert await door.eval_many(script, calls[:1]) == [[b"0", b"0"]]
        if url.startswith("redis://"):  # on the cluster SCRIPT FLUSH needs a target node
            key = door.key("s5", "a")
            assert await door.command(key, "SCRIPT", "FLUSH") in (True, b"OK")
        assert (await door.eval_many(script, calls))[5] == [b"10", b"10"]


async def test_a_dead_redis_is_redis_down_then_the_breaker_refuses(namespace: str) -> None:
    """Calls to a dead Redis raise RedisDown (never a redis-py error); once the breaker
    opens, calls are refused without reaching Redis."""
    server = RedisServer()
    try:
        async with AsyncCache.from_url(
            server.url, namespace=namespace, ttl=60, breaker_cooldown=30
        ) as cache:
            door = cache.redis_access("probe")
            key = door.key("s")
            assert await door.command(key, "SET", key, 1) in (True, b"OK")
            server.kill()
            refused = 0
            for _ in range(20):
                with pytest.raises(RedisDown) as caught:
                    await door.command(key, "GET", key)
                refused += caught.value.breaker_open
            assert refused > 0
            assert not door.healthy()
            assert cache.stats().redis_errors > 0
    finally:
        server.stop()


async def test_healthy_asks_the_breaker_of_one_key_without_io(namespace: str) -> None:
    """healthy(key) tells whether the breaker of that key's node refuses calls, without
    sending anything, so a component can apply its outage policy instead of probing."""
    server = RedisServer()
    try:
        async with AsyncCache.from_url(
            server.url, namespace=namespace, ttl=60, breaker_cooldown=30
        ) as cache:
            door = cache.redis_access("probe")
            key = door.key("s")
            assert door.healthy(key) and door.healthy()
            server.kill()
            for _ in range(10):
                with pytest.raises(RedisDown):
                    await door.command(key, "GET", key)
            errors = cache.stats().redis_errors
            assert not door.healthy(key) and not door.healthy()
            assert cache.stats().redis_errors == errors  # asking sent nothing
    finally:
        server.stop()


async def test_a_subscriber_hears_messages_and_relives_after_a_restart(namespace: str) -> None:
    """A component's subscriber gets what is published on its channel, and calls on_live
    again after Redis restarts, so the component can re-read what it missed."""
    server = RedisServer()
    heard: list[bytes] = []
    lives: list[int] = []

    async def on_live() -> None:
        lives.append(1)

    try:
        async with AsyncCache.from_url(server.url, namespace=namespace, ttl=60) as cache:
            door = cache.redis_access("probe")
            channel = door.channel("changes")
            assert channel == f"veneer:probe:{{{namespace}}}:changes"
            sub = door.subscriber(
                channel, on_message=heard.append, on_live=on_live, on_lost=lambda: None
            )
            sub.start()
            try:
                await eventually(lambda: sub.live, timeout=10)
                await door.publish(channel, b"one")
                await eventually(lambda: heard == [b"one"], timeout=10)
                server.restart()
                await eventually(lambda: len(lives) >= 2 and sub.live, timeout=15)
                for _ in range(100):  # the breaker may still be cooling down after the restart
                    try:
                        await door.publish(channel, b"two")
                        break
                    except RedisDown:
                        await sleep(0.1)
                await eventually(lambda: heard[-1:] == [b"two"], timeout=10)
            finally:
                await sub.close()
    finally:
        server.stop()


async def test_component_names_are_checked(redis_server: RedisServer, namespace: str) -> None:
    """A component name that could break the key layout is refused with a clear error."""
    cache = AsyncCache.from_url(redis_server.url, namespace=namespace, ttl=60)
    try:
        with pytest.raises(ValueError, match="component"):
            cache.redis_access("bad:name")
    finally:
        await cache.close()
