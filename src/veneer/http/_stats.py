"""Counters of one ``HttpCache``; ``HttpStats`` is the snapshot ``HttpCache.stats()`` returns."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HttpStats"]


@dataclass(slots=True)
class HttpStats:
    """How requests were answered (this process). Plain integers bumped in place."""

    hits: int = 0
    """GET/HEAD answered from a fresh stored response."""
    stale_hits: int = 0
    """Answered from a stale stored response (allowed stale, or while it revalidates)."""
    revalidations: int = 0
    """Stored responses revalidated with the app before answering."""
    misses: int = 0
    """Requests that loaded the app through the cache (one load per key)."""
    passes: int = 0
    """Requests passed to the app without the cache (unsafe methods, bodies, hit-for-pass)."""
    stored: int = 0
    """Responses this process's loads judged storable and handed to the cache."""
