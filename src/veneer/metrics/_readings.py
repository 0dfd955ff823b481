"""What each veneer component exports, read from its own ``stats()`` or ``status()``.

Backend-neutral (no Prometheus or OpenTelemetry import): the Prometheus collector and
the OpenTelemetry callbacks both turn these readings into their own types, so both
export the same names. Everything is read at scrape time from counters the
components keep anyway: exporting costs nothing between scrapes. Labels are the
namespace, the component and a few fixed words (a tier, a state, a reason), never
a key, a tag, a user or a flag name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Family", "Reader", "kind_of", "reader_for"]

Kind = Literal["counter", "gauge"]


@dataclass(slots=True)
class Family:
    """One metric: ``name`` without the ``_total`` Prometheus adds to counters."""

    name: str
    kind: Kind
    help: str
    unit: str = ""
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)


Reader = Callable[[Any], list[Family]]


class _Families:
    """Collects one component's families in the order they are declared."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.found: dict[str, Family] = {}

    def add(
        self,
        name: str,
        kind: Kind,
        help: str,
        value: float,
        labels: dict[str, str] | None = None,
        unit: str = "",
    ) -> None:
        full = f"{self.prefix}_{name}"
        family = self.found.get(full)
        if family is None:
            family = self.found[full] = Family(full, kind, help, unit)
        family.samples.append((labels or {}, float(value)))

    def counter(self, name: str, help: str, value: float, **labels: str) -> None:
        self.add(name, "counter", help, value, labels)

    def gauge(self, name: str, help: str, value: float, **labels: str) -> None:
        self.add(name, "gauge", help, value, labels)

    def families(self) -> list[Family]:
        return list(self.found.values())


_BREAKER_STATES = ("closed", "open", "half-open")
_CAPABILITIES = ("writes", "scripts", "publish")  # veneer._refusals


def read_cache(cache: Any) -> list[Family]:
    s = cache.stats()
    f = _Families("veneer_cache")
    for tier, hits, misses in (("l1", s.l1_hits, s.l1_misses), ("l2", s.l2_hits, s.l2_misses)):
        f.counter("hits", "Reads answered by a tier.", hits, tier=tier)
        f.counter("misses", "Reads a tier could not answer.", misses, tier=tier)
    f.counter("source_loads", "Calls of the source (loaders), all causes.", s.source_loads)
    f.counter("load_errors", "Source loads that raised.", s.load_errors)
    f.counter(
        "shared_loads", "Misses that shared another caller's load (single-flight).", s.shared_loads
    )
    f.counter(
        "lease_waits", "Misses that waited for another process's fill (its lease).", s.lease_waits
    )
    f.counter(
        "lease_wait_timeouts",
        "Waits for another caller's load (lease or in-process) that ran out (lease_wait).",
        s.lease_wait_timeouts,
    )
    f.counter(
        "fills_refused",
        "Fills refused because an invalidation revoked their lease.",
        s.fills_refused,
    )
    f.counter(
        "stale_served", "Stale entries served while one caller refreshed them.", s.stale_served
    )
    f.counter(
        "stale_fallbacks", "In-process copies served past freshness (Redis out).", s.stale_fallbacks
    )
    f.counter("refreshes", "Background refreshes (stale-while-revalidate, XFetch).", s.refreshes)
    f.counter(
        "refresh_errors", "Refreshes whose load failed (the old value stayed).", s.refresh_errors
    )
    f.counter("source_shed", "Loads refused by the full bulkhead (shed).", s.source_shed)
    f.gauge("source_active", "Source loads running now.", s.source_active)
    f.gauge("source_waiting", "Loads waiting for a bulkhead slot now.", s.source_waiting)
    f.counter("redis_errors", "Redis calls that failed (answered from the source).", s.redis_errors)
    f.counter(
        "redis_refusals",
        "Redis calls answered with a refusal (out of memory, no permission).",
        s.redis_refusals,
    )
    for capability in _CAPABILITIES:
        f.gauge(
            "degraded",
            "1 while Redis refuses this capability (it answers, the cache does without).",
            1 if capability in s.degraded else 0,
            reason=capability,
        )
    f.counter(
        "breaker_rejections",
        "Redis calls not made because the breaker was open.",
        s.breaker_rejections,
    )
    for state in _BREAKER_STATES:
        f.gauge(
            "breaker_state",
            "1 for the circuit breaker's current state.",
            1 if s.breaker_state == state else 0,
            state=state,
        )
    f.counter("breaker_opened", "Times the circuit breaker opened.", s.breaker_opened)
    f.add(
        "breaker_open_seconds",
        "counter",
        "Time the circuit breaker spent not closed.",
        s.breaker_open_seconds,
        unit="seconds",
    )
    f.counter(
        "corrupt_entries",
        "Entries in Redis that did not decode (treated as misses).",
        s.corrupt_entries,
    )
    f.counter(
        "stale_rejected", "Entries found invalidated by their tag or namespace.", s.stale_rejected
    )
    f.counter(
        "not_cached",
        "Loaded values returned but not cached.",
        s.not_cached_too_large,
        reason="too_large",
    )
    f.counter(
        "not_cached",
        "Loaded values returned but not cached.",
        s.not_cached_unencodable,
        reason="unencodable",
    )
    f.counter(
        "invalidations_sent", "Invalidations this process applied to Redis.", s.invalidations_sent
    )
    f.counter(
        "invalidations_received",
        "Invalidations heard from other processes.",
        s.invalidations_received,
    )
    f.counter(
        "invalidations_queued",
        "Invalidations queued because Redis was unreachable.",
        s.invalidations_queued,
    )
    f.gauge(
        "invalidations_pending",
        "Queued invalidations not applied yet (retried).",
        s.invalidations_pending,
    )
    f.counter(
        "invalidations_missed",
        "Resubscriptions that found invalidations missed.",
        s.invalidations_missed,
    )
    f.gauge(
        "broadcast_connected",
        "1 while this process hears invalidations.",
        1 if s.broadcast_connected else 0,
    )
    f.gauge("l1_entries", "Entries in the in-process tier.", s.l1_entries)
    f.add("l1_bytes", "gauge", "Encoded bytes in the in-process tier.", s.l1_bytes, unit="bytes")
    f.counter("l1_evictions", "Entries the in-process tier evicted.", s.l1_evictions)
    f.counter("pool_waits", "Redis calls that queued for a connection.", s.pool_waits)
    f.counter(
        "pool_timeouts", "Redis calls that gave up queueing for a connection.", s.pool_timeouts
    )
    f.counter("cold_restarts", "Redis restarts seen (refilled from the source).", s.cold_restarts)
    f.counter(
        "monitor_checks",
        "Sampled invalidations re-checked (monitor_every).",
        s.monitor_ok,
        outcome="ok",
    )
    f.counter(
        "monitor_checks",
        "Sampled invalidations re-checked (monitor_every).",
        s.monitor_stale,
        outcome="stale",
    )
    return f.families()


def read_sessions(store: Any) -> list[Family]:
    s = store.stats()
    f = _Families("veneer_sessions")
    f.counter("created", "Sessions created.", s.created)
    f.counter("loads", "Session loads by token.", s.loads)
    f.counter("loads_refused", "Tokens that named no live session.", s.loads_refused)
    f.counter("malformed_tokens", "Strings refused as tokens without a lookup.", s.malformed)
    f.counter("expired", "Sessions found expired.", s.expired)
    f.counter("saves", "Session saves that wrote.", s.saves)
    f.counter("saves_unchanged", "Session saves skipped (data unchanged).", s.saves_unchanged)
    f.counter("touches", "Idle-timeout extensions written.", s.touches)
    f.counter("touch_failures", "Idle-timeout extensions that failed.", s.touch_failures)
    f.counter("rotations", "Session ids rotated.", s.rotations)
    f.counter("revocations", "Sessions revoked.", s.revocations)
    f.counter(
        "revocation_checks", "Database re-checks (invalidations not heard).", s.revocation_checks
    )
    f.counter("revoked_by_check", "Sessions found revoked by a re-check.", s.revoked_by_check)
    f.counter("checks_shed", "Re-checks skipped (bulkhead full).", s.checks_shed)
    f.counter("database_errors", "Database errors.", s.database_errors)
    return f.families()


def read_ratelimit(limiter: Any) -> list[Family]:
    s = limiter.stats()
    f = _Families("veneer_ratelimit")
    f.counter("decisions", "Hits decided, by result.", s.allowed, result="allowed")
    f.counter("decisions", "Hits decided, by result.", s.refused, result="refused")
    f.counter("shadow_refusals", "Refusals shadow mode let through.", s.shadow_refusals)
    f.counter("cached_refusals", "Refusals answered by the local refusal cache.", s.cached_refusals)
    f.counter("decided_by", "Decisions by where they were made.", s.redis_decisions, where="redis")
    f.counter("decided_by", "Decisions by where they were made.", s.local_decisions, where="local")
    f.counter(
        "unavailable_decisions",
        "Decisions of the outage policy (Redis unavailable).",
        s.unavailable_decisions,
    )
    f.gauge("workers", "Worker count the local policy divides by.", s.workers)
    f.gauge("degraded", "1 while a circuit breaker refuses calls to Redis.", 1 if s.degraded else 0)
    f.gauge("refusal_cache_size", "Entries in the refusal cache.", s.refusal_cache_size)
    f.gauge("local_subjects", "Subjects tracked by the local policy.", s.local_subjects)
    return f.families()


def read_counters(counters: Any) -> list[Family]:
    s = counters.stats()
    f = _Families("veneer_counters")
    f.counter("increments", "Increments acknowledged, by mode.", s.exact_increments, mode="exact")
    f.counter(
        "increments", "Increments acknowledged, by mode.", s.buffered_increments, mode="buffered"
    )
    f.counter("increments", "Increments acknowledged, by mode.", s.direct_increments, mode="direct")
    f.gauge(
        "increments_at_risk",
        "Buffered increments whose Redis call got no answer, not "
        "settled yet (this process; `veneer counters verify` reads the buffers).",
        s.in_doubt,
    )
    for outcome, value in (
        ("applied", s.in_doubt_applied),
        ("written", s.in_doubt_written),
        ("lost", s.in_doubt_lost),
    ):
        f.counter(
            "in_doubt_settled", "Unanswered increments settled, by outcome.", value, outcome=outcome
        )
    f.counter("journal_batches", "Group commits to the journal.", s.journal_batches)
    f.counter("db_transactions", "Database transactions committed for counters.", s.db_transactions)
    f.counter("redis_errors", "Redis errors.", s.redis_errors)
    return f.families()


_FLAG_MODES = ("push", "poll", "stopped")


def read_flags(flags: Any) -> list[Family]:
    s = flags.status()
    f = _Families("veneer_flags")
    f.add(
        "snapshot_age_seconds",
        "gauge",
        "Seconds since this process loaded its snapshot.",
        s.age,
        unit="seconds",
    )
    if s.confirmed_age is not None:
        f.add(
            "confirmed_age_seconds",
            "gauge",
            "Seconds since this process last knew its snapshot was the latest.",
            s.confirmed_age,
            unit="seconds",
        )
    f.gauge("snapshot_version", "Version of the snapshot evaluated now.", s.version)
    f.gauge("flags", "Flags in the snapshot.", s.flags)
    for mode in _FLAG_MODES:
        f.gauge(
            "mode",
            "1 for how this process learns of changes.",
            1 if s.mode == mode else 0,
            mode=mode,
        )
    f.counter(
        "unknown_evaluations", "Evaluations of names not in the snapshot.", sum(s.unknown.values())
    )
    f.counter("evaluation_errors", "Evaluations that failed (served the default).", s.errors)
    f.counter("load_failures", "Snapshot loads that failed.", s.load_failures)
    f.counter("publish_failures", "Change publications that failed.", s.publish_failures)
    return f.families()


def read_http(http_cache: Any) -> list[Family]:
    s = http_cache.stats()
    f = _Families("veneer_http")
    for outcome, value in (
        ("hit", s.hits),
        ("stale", s.stale_hits),
        ("revalidated", s.revalidations),
        ("miss", s.misses),
        ("pass", s.passes),
    ):
        f.counter("requests", "Requests by how the cache answered them.", value, outcome=outcome)
    f.counter("stored", "Responses stored.", s.stored)
    return f.families()


# stats() / status() snapshot class -> component label and reader.
_KINDS: dict[str, tuple[str, Reader, str]] = {
    "veneer._stats.CacheStats": ("cache", read_cache, "stats"),
    "veneer.sessions._model.SessionStats": ("sessions", read_sessions, "stats"),
    "veneer.ratelimit._stats.RateLimitStats": ("ratelimit", read_ratelimit, "stats"),
    "veneer.counters._stats.CounterStats": ("counters", read_counters, "stats"),
    "veneer.flags._reader.FlagsStatus": ("flags", read_flags, "status"),
    "veneer.http._stats.HttpStats": ("http", read_http, "stats"),
}


def kind_of(component: object) -> str | None:
    for method in ("stats", "status"):
        call = getattr(component, method, None)
        if callable(call):
            cls = type(call())
            found = _KINDS.get(f"{cls.__module__}.{cls.__qualname__}")
            if found is not None and found[2] == method:
                return found[0]
    return None


def reader_for(kind: str) -> Reader:
    for name, reader, _method in _KINDS.values():
        if name == kind:
            return reader
    raise KeyError(kind)


def kinds() -> Iterable[str]:
    return [name for name, _reader, _method in _KINDS.values()]
