"""The Lua script mirrors the pure decision function, on a Redis that refuses TIME.

ElastiCache Serverless refuses TIME inside scripts; this server has TIME renamed
away, so a script that called it would fail here.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servers import RedisServer
from veneer.ratelimit._gcra import decide
from veneer.ratelimit._script import GCRA, HEARTBEAT, HEARTBEAT_SPAN_MS

_subjects = itertools.count()


@pytest.fixture(scope="module")
def no_time_redis() -> Iterator[redis.Redis]:
    server = RedisServer("--rename-command", "TIME", '""')
    client = server.client()
    try:
        with pytest.raises(redis.ResponseError):
            client.eval("return redis.call('TIME')", 0)
        yield client
    finally:
        client.close()
        server.stop()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(st.integers(100_000, 9_999_999), min_size=1, max_size=3),
    st.lists(st.integers(1, 20), min_size=3, max_size=3),
    st.lists(st.tuples(st.integers(1, 6), st.booleans()), min_size=1, max_size=25),
)
def test_the_script_decides_as_decide_does(
    no_time_redis: redis.Redis,
    intervals: list[int],
    bursts: list[int],
    calls: list[tuple[int, bool]],
) -> None:
    """For any limits (sub-millisecond intervals included) and any run of hits and peeks,
    the script allows, refuses and reports the delays exactly as ``decide`` does."""
    script = no_time_redis.register_script(GCRA)
    subject = next(_subjects)
    pairs = zip(intervals, bursts, strict=False)
    limits = [(interval, interval * burst) for interval, burst in pairs]
    keys = [f"{{mirror:{subject}}}:{i}" for i in range(len(limits))]
    args = [a for pair in limits for a in pair]
    tats = [0] * len(limits)  # virtual time: the calls come at one instant (within ms)
    for cost, spend in calls:
        reply = script(keys=keys, args=[cost, 1 if spend else 0, *args])
        verdicts = [decide(tat, cost, i, t) for tat, (i, t) in zip(tats, limits, strict=True)]
        allowed = all(v.allowed for v in verdicts)
        assert bool(reply[0]) == allowed
        for delay, tat in zip(reply[1:], tats, strict=True):
            # Real time moved a few ms meanwhile: the server's delay is at most that less.
            assert tat - 100_000 <= int(delay) <= tat
        if allowed and spend:
            tats = [v.delay for v in verdicts]
    for key, tat in zip(keys, tats, strict=True):
        if tat:  # the key expires at the TAT, rounded up to the millisecond
            assert 0 < no_time_redis.pttl(key) <= -(-tat // 1000)
        else:
            assert not no_time_redis.exists(key)


def test_the_heartbeat_counts_members_without_a_clock(no_time_redis: redis.Redis) -> None:
    """The heartbeat counts distinct live instances, lets one leave, and keeps its set
    expiring (it never writes a key without a TTL)."""
    beat = no_time_redis.register_script(HEARTBEAT)
    key = "{beat}:workers"
    for member in ("a", "b", "c", "a"):
        count = beat(keys=[key], args=[member, 10_000, 0, HEARTBEAT_SPAN_MS])
    assert count == 3
    assert beat(keys=[key], args=["b", 0, 1, HEARTBEAT_SPAN_MS]) == 2
    time.sleep(0.06)
    assert beat(keys=[key], args=["d", 50, 0, HEARTBEAT_SPAN_MS]) == 1  # a and c went stale
    assert 0 < no_time_redis.pttl(key) <= HEARTBEAT_SPAN_MS
