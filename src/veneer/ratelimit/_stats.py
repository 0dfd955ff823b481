"""Counters of a limiter; ``RateLimitStats`` is the snapshot ``limiter.stats()`` returns."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Counters", "RateLimitStats"]


@dataclass(slots=True)
class Counters:
    """Plain integers bumped in place; under threads a rare increment can be lost."""

    allowed: int = 0
    refused: int = 0
    shadow_refusals: int = 0
    cached_refusals: int = 0
    redis_decisions: int = 0
    local_decisions: int = 0
    unavailable_decisions: int = 0


@dataclass(frozen=True, slots=True)
class RateLimitStats:
    allowed: int
    """Hits answered allowed (shadow-mode refusals included)."""
    refused: int
    """Hits answered refused."""
    shadow_refusals: int
    """Hits the limits refused and shadow mode let through."""
    cached_refusals: int
    """Refusals answered by the local refusal cache, without a round trip."""
    redis_decisions: int
    local_decisions: int
    """Decisions of the "local" policy (Redis unavailable)."""
    unavailable_decisions: int
    """Decisions of any outage policy ("local", "allow" or "deny")."""
    workers: int
    """The worker count the "local" policy divides by (configured or heartbeat estimate)."""
    degraded: bool
    """Whether calls to Redis are being refused by a circuit breaker now."""
    refusal_cache_size: int
    local_subjects: int
