"""The decision core: what an entry read from Redis means, and what a fill writes.

No I/O here. Both fronts (asyncio and threads) call these functions, so the
rules (when an entry is fresh, when a stamp makes it invalid, how long it
lives) are written and unit-tested once.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ._codec import Envelope
from ._random import rng

__all__ = [
    "FillPlan",
    "Verdict",
    "jittered",
    "judge",
    "lease_backoff",
    "plan_fill",
    "stamp_expiry_seconds",
    "xfetch_due",
]

# Stamps outlive every entry that could carry them (see stamp_expiry_seconds).
_STAMP_MARGIN: Final = 2.0


class Verdict(enum.Enum):
    FRESH = "fresh"
    EARLY = "early"  # fresh, but XFetch picked this read to refresh it ahead of expiry
    STALE = "stale"  # past fresh_until, still within its stale window
    INVALID = "invalid"  # a tag or the namespace was invalidated after it was loaded

    @property
    def serveable(self) -> bool:
        return self is not Verdict.INVALID

    @property
    def wants_refresh(self) -> bool:
        return self is Verdict.EARLY or self is Verdict.STALE


def judge(
    envelope: Envelope,
    now: float,
    ns_epoch: int,
    tag_versions: Mapping[str, int],
    beta: float = 0.0,
    rand: float = 1.0,
) -> Verdict:
    """Whether a decoded entry may be served, and whether this read should refresh it.

    ``tag_versions`` must hold every tag of the envelope; an entry loaded under
    another version of its namespace or of any of its tags was invalidated.
    ``beta`` > 0 turns on XFetch with ``rand`` uniform in (0, 1].
    """
    if envelope.ns_epoch != ns_epoch:
        return Verdict.INVALID
    for tag, version in envelope.tags.items():
        if tag_versions.get(tag) != version:
            return Verdict.INVALID
    if envelope.fresh_until <= now:
        return Verdict.STALE
    if beta and xfetch_due(now, envelope.fresh_until, envelope.load_seconds, beta, rand):
        return Verdict.EARLY
    return Verdict.FRESH


def xfetch_due(now: float, expiry: float, delta: float, beta: float, rand: float) -> bool:
    """XFetch (Vattani, Chierichetti, Lowenstein, VLDB 2015): refresh ahead of expiry when
    ``now - delta * beta * ln(rand) >= expiry``, ``delta`` being the last load's duration.

    Reads close to expiry, of values that are slow to load, are the likeliest to
    refresh, so one reader usually refreshes before the value expires for all.
    """
    return now - delta * beta * math.log(rand) >= expiry


def lease_backoff(attempt: int, rand: float) -> float:
    """Seconds a lease waiter sleeps before its ``attempt``-th look for the holder's fill:
    2 ms doubling to 50 ms, with jitter so waiters in many processes do not poll in step."""
    return min(0.002 * (1 << min(attempt, 10)), 0.05) * (0.5 + rand)


def jittered(seconds: float, jitter: float, rand: random.Random | None = None) -> float:
    """``seconds`` spread uniformly by +-``jitter`` (a fraction), so entries written
    together do not all expire in the same instant."""
    if not jitter:
        return seconds
    r = (rand or rng).random()
    return seconds * (1.0 + jitter * (2.0 * r - 1.0))


@dataclass(frozen=True, slots=True)
class FillPlan:
    fresh_until: float  # wall clock seconds
    px: int  # Redis expiry, milliseconds: the entry is gone after it
    fresh_seconds: float


def plan_fill(
    *,
    now: float,
    ttl: float,
    jitter: float,
    negative: bool,
    negative_ttl: float,
    stale_ttl: float = 0.0,
    rand: random.Random | None = None,
) -> FillPlan:
    """Lifetimes of one write: fresh for the (jittered) TTL, then kept ``stale_ttl``
    longer in Redis to be served stale while one caller refreshes it. A negative
    entry never outlives the value's own TTL and is never served stale."""
    base = min(ttl, negative_ttl) if negative else ttl
    fresh = jittered(base, jitter, rand)
    stale = 0.0 if negative else stale_ttl
    px = max(1, int((fresh + stale) * 1000))
    return FillPlan(fresh_until=now + fresh, px=px, fresh_seconds=fresh)


def stamp_expiry_seconds(max_ttl: float) -> int:
    """Stamp keys live at least twice as long as any entry (and a week at least).

    Stamps are read with SET NX GET, so even a stamp that does expire is re-created
    with a new version, never as "absent": an old entry cannot match it again.
    """
    return int(max(7 * 86_400.0, _STAMP_MARGIN * max_ttl))
