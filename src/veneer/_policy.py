"""The decision core: what an entry read from Redis means, and what a fill writes.

No I/O here. Both fronts (asyncio and threads) call these functions, so the
rules (when an entry is fresh, when a stamp makes it invalid, how long it
lives) are written and unit-tested once.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from ._codec import Envelope

__all__ = ["FillPlan", "Verdict", "judge", "plan_fill", "stamp_expiry_seconds"]

# Stamps outlive every entry that could carry them (see stamp_expiry_seconds).
_STAMP_MARGIN: Final = 2.0


class Verdict(enum.Enum):
    FRESH = "fresh"
    STALE = "stale"  # past fresh_until, still within its stale window
    INVALID = "invalid"  # a tag or the namespace was invalidated after it was loaded


def judge(
    envelope: Envelope, now: float, ns_epoch: int, tag_versions: Mapping[str, int]
) -> Verdict:
    """Whether a decoded entry may be served.

    ``tag_versions`` must hold every tag of the envelope; an entry loaded under
    another version of its namespace or of any of its tags was invalidated.
    """
    if envelope.ns_epoch != ns_epoch:
        return Verdict.INVALID
    for tag, version in envelope.tags.items():
        if tag_versions.get(tag) != version:
            return Verdict.INVALID
    if envelope.fresh_until <= now:
        return Verdict.STALE
    return Verdict.FRESH


def jittered(seconds: float, jitter: float, rand: random.Random | None = None) -> float:
    """``seconds`` spread uniformly by +-``jitter`` (a fraction), so entries written
    together do not all expire in the same instant."""
    if not jitter:
        return seconds
    r = (rand or random).random()
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
    rand: random.Random | None = None,
) -> FillPlan:
    """Lifetimes of one write. A negative entry never outlives the value's own TTL."""
    base = min(ttl, negative_ttl) if negative else ttl
    fresh = jittered(base, jitter, rand)
    px = max(1, int(fresh * 1000))
    return FillPlan(fresh_until=now + fresh, px=px, fresh_seconds=fresh)


def stamp_expiry_seconds(max_ttl: float) -> int:
    """Stamp keys live at least twice as long as any entry (and a week at least).

    Stamps are read with SET NX GET, so even a stamp that does expire is re-created
    with a new version, never as "absent": an old entry cannot match it again.
    """
    return int(max(7 * 86_400.0, _STAMP_MARGIN * max_ttl))


def stamp_keys_needed(tags: Sequence[str]) -> tuple[str, ...]:
    """Tags in a stable order with duplicates removed (the envelope stores them once)."""
    return tuple(dict.fromkeys(tags))
