"""Counters and latency samples; ``CacheStats`` is the snapshot ``cache.stats()`` returns."""

from __future__ import annotations

from array import array
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["CacheStats", "Counters", "LatencySample"]


class LatencySample:
    """The last ``size`` durations in a ring; percentiles are computed on read, not on record."""

    __slots__ = ("_count", "_ring", "_size")

    def __init__(self, size: int = 2048) -> None:
        self._ring = array("d", bytes(8 * size))
        self._size = size
        self._count = 0

    def record(self, seconds: float) -> None:
        self._ring[self._count % self._size] = seconds
        self._count += 1

    def percentiles(self) -> tuple[float, float]:
        n = min(self._count, self._size)
        if n == 0:
            return (0.0, 0.0)
        values = sorted(self._ring[:n])
        return (values[n // 2], values[min(n - 1, (n * 99) // 100)])


@dataclass(slots=True)
class Counters:
    """Plain integer attributes bumped in place (cheapest counter in CPython).

    Under threads a rare increment can be lost between the load and the store;
    these are operational statistics, and tests count events themselves.
    """

    l1_hits: int = 0
    l1_misses: int = 0
    l2_hits: int = 0
    l2_misses: int = 0
    source_loads: int = 0
    load_errors: int = 0
    corrupt_entries: int = 0
    stale_rejected: int = 0
    redis_errors: int = 0
    not_cached_too_large: int = 0
    not_cached_unencodable: int = 0
    invalidations_sent: int = 0
    invalidations_received: int = 0
    invalidations_queued: int = 0
    shared_loads: int = 0
    lease_waits: int = 0
    lease_wait_timeouts: int = 0
    fills_refused: int = 0
    stale_served: int = 0
    refreshes: int = 0
    refresh_errors: int = 0
    monitor_ok: int = 0
    monitor_stale: int = 0
    breaker_rejections: int = 0
    source_shed: int = 0
    stale_fallbacks: int = 0
    cold_restarts: int = 0
    invalidations_missed: int = 0
    redis_refusals: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot of one cache's counters (per process)."""

    l1_hits: int
    l1_misses: int
    l2_hits: int
    l2_misses: int
    source_loads: int
    load_errors: int
    corrupt_entries: int
    stale_rejected: int
    redis_errors: int
    not_cached_too_large: int
    not_cached_unencodable: int
    invalidations_sent: int
    invalidations_received: int
    invalidations_queued: int
    shared_loads: int
    """Misses that waited for another caller's load in this process (single-flight)."""
    lease_waits: int
    """Misses that waited for another process's fill (its lease)."""
    lease_wait_timeouts: int
    """Waits for another caller's load that ran out after ``lease_wait``: for another
    process's fill (then loaded without filling) or for a load in this process (then
    answered with a copy within max_stale, a load of its own, or SourceTimeout)."""
    fills_refused: int
    """Fills refused because an invalidation revoked their lease (stale sets prevented)."""
    stale_served: int
    refreshes: int
    refresh_errors: int
    monitor_ok: int
    monitor_stale: int
    """Sampled invalidations whose old value was still served after monitor_delay."""
    breaker_rejections: int
    """Redis calls not made because the breaker was open (no caller waited on them)."""
    source_shed: int
    """Loads refused by the full bulkhead (answered stale, or SourceOverloaded)."""
    stale_fallbacks: int
    """In-process copies served past freshness (within max_stale) while Redis was out."""
    cold_restarts: int
    invalidations_missed: int
    """Resubscriptions that found invalidations published while away (L1 dropped)."""
    redis_refusals: int
    """Redis calls answered with a refusal (out of memory, no permission), not errors."""
    invalidations_pending: int
    l1_entries: int
    l1_bytes: int
    l1_evictions: int
    broadcast_connected: bool
    breaker_state: str
    breaker_opened: int
    breaker_open_seconds: float
    source_active: int
    source_waiting: int
    source_peak: int
    pool_waits: int
    """Redis calls that queued for a connection (every one of max_connections was busy)."""
    pool_timeouts: int
    """Redis calls that gave up queueing after pool_timeout (answered as without Redis)."""
    degraded: tuple[str, ...]
    """What Redis refuses now although it answers: ``writes`` (out of memory with
    noeviction, a read-only user), ``scripts`` (no EVAL/EVALSHA), ``publish``."""
    l2_read_p50_ms: float
    l2_read_p99_ms: float
    load_p50_ms: float
    load_p99_ms: float

    @property
    def l1_hit_ratio(self) -> float:
        total = self.l1_hits + self.l1_misses
        return self.l1_hits / total if total else 0.0

    @property
    def l2_hit_ratio(self) -> float:
        total = self.l2_hits + self.l2_misses
        return self.l2_hits / total if total else 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
