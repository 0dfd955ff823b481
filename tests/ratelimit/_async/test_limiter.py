"""The rate limiter's behaviour on one Redis and on a 3-shard cluster.

This file is the source of the sync copy.
"""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from servers import RedisServer
from veneer import AsyncCache
from veneer._async._concurrency import sleep
from veneer.ratelimit import AsyncRateLimiter, Limit

from ..conftest import Topology


async def eventually(condition: object, timeout: float = 10.0) -> None:
    assert callable(condition)
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await sleep(0.02)
    raise AssertionError(f"condition not met within {timeout}s")


async def test_a_burst_then_the_rate(topology: Topology, namespace: str) -> None:
    """A subject spends its burst at once, is refused with the exact wait, and is allowed
    again once that wait has passed; another subject has its own account."""
    async with AsyncRateLimiter.from_url(
        topology.url, "10/second burst 3", namespace=namespace
    ) as limiter:
        decisions = [await limiter.hit("alice") for _ in range(4)]
        assert [d.allowed for d in decisions] == [True, True, True, False]
        assert [d.remaining for d in decisions] == [2, 1, 0, 0]
        refused = decisions[3]
        assert refused.decided_by == "redis"
        assert 0 < refused.retry_after <= 0.1
        assert 0.2 < refused.reset_after <= 0.3
        await sleep(refused.retry_after + 0.005)
        assert (await limiter.hit("alice")).allowed
        assert (await limiter.hit("bob")).remaining == 2


async def test_several_limits_are_one_round_trip_all_or_nothing(
    topology: Topology, namespace: str
) -> None:
    """A second and a minute limit are checked by one script per hit; a hit refused by one
    limit spends nothing on the other."""
    async with AsyncRateLimiter.from_url(
        topology.url,
        "5/second; 3/minute",
        namespace=namespace,
        workers=1,  # no heartbeat
    ) as limiter:
        assert (await limiter.peek("carol")).remaining == 3  # loads the script
        before = topology.calls("evalsha", "eval")
        decisions = [await limiter.hit("carol") for _ in range(4)]
        assert topology.calls("evalsha", "eval") - before == 4
        assert [d.allowed for d in decisions] == [True, True, True, False]
        assert decisions[3].limit == Limit(3, 60)
        per_second = (await limiter.peek("carol")).states[0]
        assert per_second.limit == Limit(5) and per_second.remaining >= 2


async def test_peek_spends_nothing_and_reset_forgets_without_keys_or_scan(
    topology: Topology, namespace: str
) -> None:
    """peek() spends nothing; reset() gives a refused subject a full account again, with
    no KEYS or SCAN sent by anything the limiter does."""
    before = topology.calls("keys", "scan")
    async with AsyncRateLimiter.from_url(
        topology.url, "2/minute; 100/hour", namespace=namespace, heartbeat=0.1
    ) as limiter:
        assert (await limiter.peek("dan")).remaining == 2
        assert (await limiter.peek("dan")).remaining == 2
        assert [(await limiter.hit("dan")).allowed for _ in range(3)] == [True, True, False]
        assert not (await limiter.peek("dan")).allowed
        assert await limiter.reset("dan")
        assert (await limiter.hit("dan")).remaining == 1
        await sleep(0.3)  # let the heartbeat run too
    assert topology.calls("keys", "scan") == before


async def test_a_refused_subject_costs_no_round_trip(topology: Topology, namespace: str) -> None:
    """Once Redis refused a subject until T, its hits before T are refused in process."""
    async with AsyncRateLimiter.from_url(
        topology.url,
        "4/second",
        namespace=namespace,
        workers=1,  # no heartbeat to count
    ) as limiter:
        assert [(await limiter.hit("flood")).allowed for _ in range(5)] == [True] * 4 + [False]
        before = topology.calls("evalsha", "eval")
        flood = [await limiter.hit("flood") for _ in range(50)]
        assert topology.calls("evalsha", "eval") == before
        assert all(not d.allowed and d.decided_by == "cache" for d in flood)
        assert all(0 < d.retry_after <= 0.25 for d in flood)
        assert limiter.stats().cached_refusals == 50
        await sleep(flood[-1].retry_after + 0.005)
        again = await limiter.hit("flood")
        assert again.allowed and again.decided_by == "redis"


async def test_shadow_mode_decides_records_and_allows(topology: Topology, namespace: str) -> None:
    """In shadow mode every hit is allowed, and the refusals enforcement would have made
    are marked and counted."""
    async with (
        AsyncRateLimiter.from_url(topology.url, "3/minute", namespace=namespace) as enforced,
        AsyncRateLimiter.from_url(
            topology.url, "3/minute", namespace=namespace, name="dark", shadow=True
        ) as shadow,
    ):
        real = [(await enforced.hit("gus")).allowed for _ in range(5)]
        dark = [await shadow.hit("gus") for _ in range(5)]
        assert real == [True, True, True, False, False]
        assert all(d.allowed for d in dark)
        assert [d.shadowed for d in dark] == [not allowed for allowed in real]
        stats = shadow.stats()
        assert (stats.allowed, stats.refused, stats.shadow_refusals) == (5, 0, 2)


async def test_a_subjects_keys_share_one_slot(topology: Topology, namespace: str) -> None:
    """Every key of one subject (one per limit) lives in one slot, whatever the subject
    holds, so the script runs on a cluster."""
    async with AsyncRateLimiter.from_url(
        topology.url, "10/second; 100/minute; 1000/hour", namespace=namespace
    ) as limiter:
        for subject in ("user:1", "{brace}", "}x{", "ünï"):
            decision = await limiter.hit(subject)
            assert decision.allowed and decision.decided_by == "redis"
            keys = limiter._keys(limiter._default, subject)
            assert len({key_slot(key) for key in keys}) == 1


async def test_route_limits_have_their_own_accounts(topology: Topology, namespace: str) -> None:
    """Per-call limits in a group are separate accounts from the limiter's own limits."""
    async with AsyncRateLimiter.from_url(topology.url, "10/second", namespace=namespace) as limiter:
        assert (await limiter.hit("eve", limits="1/minute", group="login")).allowed
        assert not (await limiter.hit("eve", limits="1/minute", group="login")).allowed
        assert (await limiter.hit("eve")).remaining == 9
        assert (await limiter.hit("eve", limits="1/minute", group="search")).allowed


async def test_the_heartbeat_counts_the_workers(topology: Topology, namespace: str) -> None:
    """Instances of one limiter find how many they are from a heartbeat, and see one leave."""
    limiters = [
        AsyncRateLimiter.from_url(topology.url, "10/second", namespace=namespace, heartbeat=0.1)
        for _ in range(3)
    ]
    try:
        for limiter in limiters:
            assert (await limiter.hit("h")).allowed  # the first hit starts the heartbeat
        await eventually(lambda: all(x.stats().workers == 3 for x in limiters))
        await limiters.pop().close()
        await eventually(lambda: all(x.stats().workers == 2 for x in limiters))
    finally:
        for limiter in limiters:
            await limiter.close()


async def test_bad_input_is_a_clear_value_error(redis_server: RedisServer, namespace: str) -> None:
    """An empty key, cost <= 0 and a malformed limit each raise a ValueError that names them."""
    with pytest.raises(ValueError, match="malformed rate limit '100/fortnight'"):
        AsyncRateLimiter.from_url(redis_server.url, "100/fortnight", namespace=namespace)
    async with AsyncCache.from_url(redis_server.url, namespace=namespace) as cache:
        limiter = AsyncRateLimiter(cache, "10/second")
        with pytest.raises(ValueError, match="empty"):
            await limiter.hit("")
        for cost in (0, -3):
            with pytest.raises(ValueError, match="cost <= 0"):
                await limiter.hit("k", cost)
        with pytest.raises(ValueError, match="above the burst"):
            await limiter.hit("k", 11)
        with pytest.raises(ValueError, match="malformed"):
            await limiter.hit("k", limits="ten a second")
        with pytest.raises(TypeError, match="AsyncCache"):
            AsyncRateLimiter("redis://x", "10/second")  # type: ignore[arg-type]
        assert (await limiter.hit("k", 10)).allowed
        await limiter.close()
