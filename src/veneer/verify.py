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

    @property
    def divergence(self) -> float:
        return self.diverged / self.checked if self.checked else 0.0


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
    keys = cache.recent_keys(1000)
    chosen = random.Random(seed).sample(keys, min(sample, len(keys)))
    checked = diverged = 0
    found: list[Divergence] = []
    for key in chosen:
        cached = cache.get(key, default=_MISSING)
        if cached is _MISSING:
            continue
        checked += 1
        source = reload(key)
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
    )
