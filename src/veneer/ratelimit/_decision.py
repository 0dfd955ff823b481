"""What a hit means, without I/O: decisions from Redis's reply, from the refusal cache,
and from the outage policies. Shared by the asyncio and the threaded limiter.

The shells only move bytes: they send the script, or not, and hand what came
back (or that nothing came back) to the functions here.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Literal, NamedTuple

from ._gcra import Verdict, decide
from ._limits import Limit

__all__ = [
    "DecidedBy",
    "Decision",
    "LimitState",
    "LocalBuckets",
    "Plan",
    "RefusalCache",
    "by_policy",
    "from_delays",
]

DecidedBy = Literal["redis", "cache", "local", "allow", "deny"]
_US = 1_000_000
# What "deny" tells a refused client while Redis is unavailable.
DENY_RETRY_AFTER = 1.0


class LimitState(NamedTuple):
    """One limit's account after a decision."""

    limit: Limit
    remaining: int
    reset_after: float
    """Seconds until the bucket is full again."""


class Decision(NamedTuple):
    """The answer to one hit (or peek) on all the limits of the call.

    ``remaining``, ``reset_after`` and ``limit`` are those of the binding limit:
    the one that refused (the longest wait), else the one with the fewest hits
    left. ``states`` has every limit's own numbers (for the RateLimit header).
    A named tuple: built on every hit, it must cost next to nothing.
    """

    allowed: bool
    remaining: int
    reset_after: float
    retry_after: float
    """0 when allowed; else seconds until the same hit would be allowed (if nobody else
    spends meanwhile)."""
    limit: Limit
    states: tuple[LimitState, ...]
    decided_by: DecidedBy
    """``redis``; ``cache`` (the local refusal cache: refused until a time Redis gave);
    or, while Redis is unavailable, ``local``, ``allow`` or ``deny`` (the policy)."""
    shadowed: bool = False
    """Refused by the limits but let through: the limiter is in shadow mode."""

    def __bool__(self) -> bool:
        return self.allowed


class Plan:
    """A call's limits compiled once: their key parts and the script's arguments."""

    __slots__ = ("args", "group", "limits", "name", "parts")

    def __init__(self, limits: Sequence[Limit], group: str = "") -> None:
        self.limits = tuple(limits)
        self.group = group
        prefix = group + ":" if group else ""
        self.parts = tuple(prefix + limit.part for limit in self.limits)
        self.name = "|".join(self.parts)
        args: list[int] = []
        for limit in self.limits:
            args += (limit.interval_us, limit.tolerance_us)
        self.args = tuple(args)

    def check_cost(self, cost: object) -> int:
        if isinstance(cost, bool) or not isinstance(cost, int):
            raise ValueError(f"cost={cost!r}: give a whole number of hits >= 1")
        if cost < 1:
            raise ValueError(f"cost={cost}: a hit costs at least 1 (cost <= 0 is refused)")
        for limit in self.limits:
            if cost > (limit.burst or 0):
                raise ValueError(
                    f"cost={cost} is above the burst of limit {limit} ({limit.burst}): "
                    "such a hit could never be allowed; raise the burst or lower the cost"
                )
        return cost


def _combine(
    plan: Plan, verdicts: Sequence[Verdict], allowed: bool, by: DecidedBy, *, shadow: bool
) -> Decision:
    states = []
    retry = 0
    binding = 0
    for index, (limit, verdict) in enumerate(zip(plan.limits, verdicts, strict=True)):
        states.append(LimitState(limit, verdict.remaining, verdict.delay / _US))
        if allowed:
            if verdict.remaining < states[binding].remaining:
                binding = index
        elif verdict.retry_after > retry:
            retry, binding = verdict.retry_after, index
    state = states[binding]
    if allowed or not shadow:
        return Decision(
            allowed, state.remaining, state.reset_after, retry / _US, state.limit, tuple(states), by
        )
    return Decision(True, 0, state.reset_after, 0.0, state.limit, tuple(states), by, shadowed=True)


def _unspent(verdict: Verdict, delay: int, interval: int, tolerance: int) -> Verdict:
    """The account as it stays when nothing is spent (a refusal or a peek)."""
    base = max(delay, 0)
    return Verdict(verdict.allowed, base, (tolerance - base) // interval, verdict.retry_after)


def from_delays(
    plan: Plan,
    delays: Sequence[int],
    cost: int,
    allowed: bool,
    by: DecidedBy,
    *,
    spend: bool = True,
    shadow: bool = False,
) -> Decision:
    """The decision for delays read before the hit (Redis's reply, or a replayed cache entry).

    ``allowed`` is the script's own verdict over all limits; with ``spend`` false
    (a peek) nothing was spent and the states are the current ones.
    """
    if allowed and spend and len(plan.limits) == 1:  # the common case, without the lists
        limit = plan.limits[0]
        base = delays[0] if delays[0] > 0 else 0
        new = base + cost * limit.interval_us
        remaining = (limit.tolerance_us - new) // limit.interval_us
        state = LimitState(limit, remaining, new / _US)
        return Decision(True, remaining, state.reset_after, 0.0, limit, (state,), by)
    verdicts = [
        decide(d, cost, limit.interval_us, limit.tolerance_us)
        for d, limit in zip(delays, plan.limits, strict=True)
    ]
    if allowed and spend:
        return _combine(plan, verdicts, True, by, shadow=shadow)
    looked = [
        _unspent(v, d, limit.interval_us, limit.tolerance_us)
        for v, d, limit in zip(verdicts, delays, plan.limits, strict=True)
    ]
    return _combine(plan, looked, allowed, by, shadow=shadow)


def by_policy(plan: Plan, allowed: bool, *, shadow: bool = False) -> Decision:
    """A decision of the "allow" or "deny" policy: nothing is known of the accounts."""
    states = tuple(
        LimitState(limit, (limit.burst or 0) if allowed else 0, 0.0) for limit in plan.limits
    )
    state = states[0]
    if allowed:
        return Decision(True, state.remaining, 0.0, 0.0, state.limit, states, "allow")
    if shadow:
        return Decision(True, 0, 0.0, 0.0, state.limit, states, "deny", shadowed=True)
    return Decision(False, 0, 0.0, DENY_RETRY_AFTER, state.limit, states, "deny")


class RefusalCache:
    """Subjects Redis refused, with the delays it reported and when the question was sent.

    Replaying :func:`decide` on those delays, aged by the time elapsed since the
    *sending* (so never older than Redis's own), answers "refused" without a round
    trip for as long as Redis would refuse even if nobody else spent meanwhile;
    others' hits only push the TAT further. It never refuses what Redis would allow.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: dict[tuple[str, str], tuple[int, tuple[int, ...]]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def remember(self, plan: Plan, key: str, sent_us: int, delays: Sequence[int]) -> None:
        if self._size <= 0:
            return
        entries = self._entries
        if len(entries) >= self._size:
            self._evict(sent_us)
        entries[(plan.name, key)] = (sent_us, tuple(delays))

    def check(
        self, plan: Plan, key: str, cost: int, now_us: int, *, shadow: bool
    ) -> Decision | None:
        entry = self._entries.get((plan.name, key))
        if entry is None:
            return None
        sent_us, delays = entry
        elapsed = now_us - sent_us
        aged = [d - elapsed for d in delays]
        for d, limit in zip(aged, plan.limits, strict=True):
            if not decide(d, cost, limit.interval_us, limit.tolerance_us).allowed:
                return from_delays(plan, aged, cost, False, "cache", shadow=shadow)
        self._entries.pop((plan.name, key), None)
        return None

    def forget(self, plan: Plan, key: str) -> None:
        self._entries.pop((plan.name, key), None)

    def _evict(self, now_us: int) -> None:
        entries = self._entries
        # Entries whose every delay has run out refuse nothing any more.
        for name, (sent_us, delays) in list(entries.items()):
            if max(delays) <= now_us - sent_us:
                entries.pop(name, None)
        while len(entries) >= self._size:
            entries.pop(next(iter(entries)), None)


class LocalBuckets:
    """The "local" outage policy: the same GCRA in process, on this process's share.

    With ``workers`` processes sharing a limit, each enforces ``rate / workers``
    with a bucket of ``burst / workers`` (at least 1). TATs are absolute
    monotonic microseconds of this process; a full bucket is simply absent, so
    dropping expired entries loses nothing.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._tats: dict[tuple[str, str], list[int]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._tats)

    @staticmethod
    def share(limit: Limit, workers: int) -> tuple[int, int]:
        """(interval, tolerance) in us of one worker's share of ``limit``."""
        interval = limit.interval_us * workers
        return interval, max(interval, limit.tolerance_us)

    def hit(
        self,
        plan: Plan,
        key: str,
        cost: int,
        now_us: int,
        workers: int,
        *,
        spend: bool = True,
        shadow: bool = False,
    ) -> Decision:
        shares = [self.share(limit, workers) for limit in plan.limits]
        name = (plan.name, key)
        with self._lock:
            tats = self._tats.get(name)
            delays = [tat - now_us for tat in tats] if tats else [0] * len(shares)
            verdicts = [
                decide(d, cost, interval, tolerance)
                for d, (interval, tolerance) in zip(delays, shares, strict=True)
            ]
            allowed = all(v.allowed for v in verdicts)
            if allowed and spend:
                if tats is None and len(self._tats) >= self._size:
                    self._evict(now_us)
                self._tats[name] = [now_us + v.delay for v in verdicts]
        if not (allowed and spend):
            verdicts = [
                _unspent(v, d, interval, tolerance)
                for v, d, (interval, tolerance) in zip(verdicts, delays, shares, strict=True)
            ]
        return _combine(plan, verdicts, allowed, "local", shadow=shadow)

    def forget(self, plan: Plan, key: str) -> None:
        with self._lock:
            self._tats.pop((plan.name, key), None)

    def _evict(self, now_us: int) -> None:
        tats = self._tats
        for name, values in list(tats.items()):
            if max(values) <= now_us:
                del tats[name]
        while len(tats) >= self._size:
            del tats[next(iter(tats))]
