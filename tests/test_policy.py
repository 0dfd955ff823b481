"""The decision core, without servers."""

from __future__ import annotations

import random

from veneer._codec import Envelope
from veneer._policy import Verdict, judge, plan_fill, stamp_expiry_seconds


def env(fresh_until: float = 100.0, epoch: int = 1, tags: dict[str, int] | None = None) -> Envelope:
    return Envelope("v", fresh_until, 0.0, epoch, tags or {}, False)


def test_judge() -> None:
    assert judge(env(), 50.0, 1, {}) is Verdict.FRESH
    assert judge(env(), 150.0, 1, {}) is Verdict.STALE
    assert judge(env(epoch=2), 50.0, 1, {}) is Verdict.INVALID
    assert judge(env(tags={"t": 3}), 50.0, 1, {"t": 3}) is Verdict.FRESH
    assert judge(env(tags={"t": 3}), 50.0, 1, {"t": 4}) is Verdict.INVALID
    assert judge(env(tags={"t": 3}), 50.0, 1, {}) is Verdict.INVALID


def test_jitter_stays_within_bounds_and_spreads() -> None:
    rng = random.Random(1)
    plans = [
        plan_fill(now=0, ttl=100, jitter=0.1, negative=False, negative_ttl=5, rand=rng)
        for _ in range(1000)
    ]
    fresh = [p.fresh_seconds for p in plans]
    assert 90 <= min(fresh) < 91 and 109 < max(fresh) <= 110
    assert all(p.px == int(p.fresh_seconds * 1000) for p in plans)


def test_negative_entries_use_the_shorter_ttl() -> None:
    plan = plan_fill(now=0, ttl=100, jitter=0, negative=True, negative_ttl=5)
    assert plan.px == 5000
    plan = plan_fill(now=0, ttl=2, jitter=0, negative=True, negative_ttl=5)
    assert plan.px == 2000


def test_a_tiny_ttl_still_expires() -> None:
    assert plan_fill(now=0, ttl=0.0001, jitter=0, negative=False, negative_ttl=5).px == 1


def test_stamps_outlive_entries() -> None:
    assert stamp_expiry_seconds(86_400) >= 2 * 86_400
    assert stamp_expiry_seconds(30 * 86_400) >= 60 * 86_400
