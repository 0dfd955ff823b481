"""Measure how far the cache has drifted from its source, on live data.

``verify`` takes a bounded sample of recently filled keys (from the registry the
caches keep, never SCAN), reloads each from the source with the function you
give it, and reports the share that differ, with examples. Run it from a cron
job or CI against production, or use ``veneer verify``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._sync._cache import Cache

__all__ = ["Divergence", "VerifyReport", "verify"]

_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class Divergence:
    key: str
    cached: Any
    source: Any


@dataclass(frozen=True, slots=True)
class VerifyReport:
    namespace: str
    registry_size: int
    sampled: int
    checked: int
    """Sampled keys still in the cache (the others expired or were invalidated)."""
    diverged: int
    examples: list[Divergence] = field(default_factory=list)
    reload_errors: int = 0
    """Sampled entries whose reload raised: not measured, and counted against the gate."""
    first_error: str = ""
    redis_errors: int = 0
    """Redis calls that failed during the run (their entries could not be read)."""

    @property
    def divergence(self) -> float:
        """The share that diverges; entries whose reload failed count as diverging."""
        measured = self.checked + self.reload_errors
        return (self.diverged + self.reload_errors) / measured if measured else 0.0

    @property
    def measured_nothing(self) -> bool:
        """True when no entry was compared: such a run must never pass a gate."""
        return self.checked == 0


def _normal(cache: Cache, value: Any) -> Any:
    """The value as the cache would return it (tuples become lists through msgpack...)."""
    codec = cache._envelopes.codec
    return codec.decode(codec.encode(value))


def verify(
    cache: Cache,
    reload: Callable[[str], Any],
    *,
    sample: int = 100,
    examples: int = 5,
    seed: int | None = None,
) -> VerifyReport:
    """Compare up to ``sample`` recently filled entries with ``reload(key)``'s value.

    ``cache`` should have ``l1_size=0`` so the comparison reads Redis, not this
    process's own copies (``veneer verify`` builds it that way).
    """
    if not 1 <= sample <= 1000:
        raise ValueError(f"sample={sample} must be from 1 to 1000 (the registry's size)")
    errors_before = cache.stats().redis_errors
    keys = cache.recent_keys(1000)
    chosen = random.Random(seed).sample(keys, min(sample, len(keys)))
    checked = diverged = reload_errors = 0
    first_error = ""
    found: list[Divergence] = []
    for key in chosen:
        try:
            cached = cache.get(key, default=_MISSING)
        except ValueError:  # a registry member that is not a valid key (written by others)
            continue
        if cached is _MISSING:
            continue
        try:
            source = reload(key)
        except Exception as exc:  # one bad key must not end the run
            reload_errors += 1
            first_error = first_error or f"{key!r}: {exc.__class__.__name__}: {exc}"
            continue
        checked += 1
        if _normal(cache, source) != cached:
            diverged += 1
            if len(found) < examples:
                found.append(Divergence(key, cached, source))
    return VerifyReport(
        namespace=cache.options.namespace,
        registry_size=len(keys),
        sampled=len(chosen),
        checked=checked,
        diverged=diverged,
        examples=found,
        reload_errors=reload_errors,
        first_error=first_error,
        redis_errors=cache.stats().redis_errors - errors_before,
    )
