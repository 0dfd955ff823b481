"""GCRA semantics, property-tested on the pure decision function in virtual time.

The Lua script mirrors ``decide`` (tests/ratelimit/test_script_mirror.py checks it
on a real Redis); the local policy and the refusal cache reuse it.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from veneer.ratelimit import Limit
from veneer.ratelimit._decision import LocalBuckets, Plan, RefusalCache
from veneer.ratelimit._gcra import Verdict, decide

intervals = st.integers(min_value=1, max_value=10_000_000)
bursts = st.integers(min_value=1, max_value=50)
# (microseconds since the previous hit, cost)
steps = st.lists(
    st.tuples(st.integers(min_value=0, max_value=3_000_000), st.integers(1, 5)), max_size=60
)


class Bucket:
    """One subject's account in virtual time: the TAT, and the clock moved by hand."""

    def __init__(self, interval: int, burst: int) -> None:
        self.interval = interval
        self.tolerance = interval * burst
        self.tat = 0
        self.now = 0

    def look(self, cost: int) -> Verdict:
        return decide(self.tat - self.now, cost, self.interval, self.tolerance)

    def hit(self, cost: int) -> Verdict:
        verdict = self.look(cost)
        if verdict.allowed:
            self.tat = self.now + verdict.delay
        return verdict


@given(intervals, bursts)
def test_a_full_bucket_allows_exactly_the_burst_at_once(interval: int, burst: int) -> None:
    """From a full bucket, exactly ``burst`` hits of cost 1 pass at one instant; the next is
    refused, and ``remaining`` counts down to 0 on the way."""
    bucket = Bucket(interval, burst)
    for left in range(burst - 1, -1, -1):
        verdict = bucket.hit(1)
        assert verdict.allowed and verdict.remaining == left
    assert not bucket.hit(1).allowed


@given(intervals, bursts, st.integers(1, 60))
def test_a_cost_spends_that_many_hits(interval: int, burst: int, cost: int) -> None:
    """A hit of cost c is c hits at once: allowed from a full bucket iff c <= burst, leaving
    burst - c; a refused one spends nothing."""
    bucket = Bucket(interval, burst)
    verdict = bucket.hit(cost)
    assert verdict.allowed == (cost <= burst)
    if verdict.allowed:
        assert verdict.remaining == burst - cost
        assert verdict.delay == cost * interval
    else:
        assert bucket.tat == 0 and verdict.remaining == burst


@given(intervals, bursts, steps, st.integers(1, 5))
def test_retry_after_is_exact(interval: int, burst: int, history: list[tuple[int, int]],
                              cost: int) -> None:  # fmt: skip
    """After any history, a refused hit is allowed exactly ``retry_after`` later (if nobody
    spends meanwhile), and still refused one microsecond before."""
    bucket = Bucket(interval, burst)
    for dt, c in history:
        bucket.now += dt
        bucket.hit(min(c, burst))
    cost = min(cost, burst)
    verdict = bucket.look(cost)
    if verdict.allowed:
        assert verdict.retry_after == 0
        return
    start = bucket.now
    bucket.now = start + verdict.retry_after - 1
    assert not bucket.look(cost).allowed
    bucket.now = start + verdict.retry_after
    assert bucket.look(cost).allowed


@given(intervals, bursts, steps)
def test_no_window_holds_more_than_burst_plus_rate(
    interval: int, burst: int, history: list[tuple[int, int]]
) -> None:
    """Over any span of t microseconds the allowed costs sum to at most burst + t / interval."""
    bucket = Bucket(interval, burst)
    allowed: list[tuple[int, int]] = []
    for dt, cost in history:
        bucket.now += dt
        if bucket.hit(min(cost, burst)).allowed:
            allowed.append((bucket.now, min(cost, burst)))
    for i, (start, _) in enumerate(allowed):
        spent = 0
        for at, cost in allowed[i:]:
            spent += cost
            assert spent <= burst + (at - start) // interval


@given(intervals, bursts, st.integers(1, 200))
def test_hits_at_the_rate_are_all_allowed(interval: int, burst: int, n: int) -> None:
    """A subject that keeps exactly to the rate (one hit per interval) is never refused."""
    bucket = Bucket(interval, burst)
    for _ in range(n):
        assert bucket.hit(1).allowed
        bucket.now += interval


@given(intervals, bursts, steps, st.integers(1, 4), st.integers(0, 5_000_000))
def test_the_refusal_cache_never_refuses_what_redis_would_allow(
    interval: int, burst: int, history: list[tuple[int, int]], cost: int, later: int
) -> None:
    """A refusal replayed from the cache at any later time is one the account itself would
    still give (others' hits can only push the TAT further)."""
    plan = Plan([Limit(1, per=interval / 1e6, burst=burst)])
    limit = plan.limits[0]
    bucket = Bucket(limit.interval_us, burst)
    cache = RefusalCache(16)
    for dt, wanted in history:
        bucket.now += dt
        c = min(wanted, burst)
        verdict = bucket.look(c)
        if not verdict.allowed:
            cache.remember(plan, "s", bucket.now, [bucket.tat - bucket.now])
        bucket.hit(c)
    bucket.now += later
    cost = min(cost, burst)
    cached = cache.check(plan, "s", cost, bucket.now, shadow=False)
    if cached is not None:
        assert not bucket.look(cost).allowed
        # Its wait is the account's as Redis last reported it: never longer than the truth.
        assert cached.retry_after * 1e6 <= bucket.look(cost).retry_after + 1e-6


@settings(max_examples=50)
@given(st.integers(1, 8), st.integers(1, 40), st.integers(1, 8))
def test_the_local_policy_enforces_a_share(workers: int, burst: int, seconds: int) -> None:
    """With W workers, one process under the "local" policy allows at most its share:
    max(1, burst / W) at once and rate / W after that."""
    plan = Plan([Limit(10, burst=burst)])
    local = LocalBuckets(100)
    allowed = 0
    now = 0
    step = 1_000  # a hit every millisecond
    for _ in range(seconds * 1_000):
        allowed += local.hit(plan, "s", 1, now, workers).allowed
        now += step
    share_burst = max(1, burst // workers)
    share_rate = 10 / workers
    assert allowed <= share_burst + share_rate * seconds + 1
    assert allowed >= share_rate * seconds - 1
