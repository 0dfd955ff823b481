"""AsyncRateLimiter: GCRA limits shared by every process through Redis, with an outage
policy that never raises.

One hit is one script on one slot (all of a subject's limits together), or no
round trip at all when the subject is already known to be refused. The meaning
of every reply, and every decision made without Redis, is in ``_decision``; this
shell only talks to Redis through the cache's component door
(``cache.redis_access("ratelimit")``) and keeps the background heartbeat.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ..._async._access import AsyncRedisAccess
from ..._async._cache import AsyncCache
from ..._async._concurrency import Background, sleep, spawn
from ..._errors import RedisDown
from ..._random import rng
from .._decision import Decision, LocalBuckets, Plan, RefusalCache, by_policy, from_delays
from .._limits import Limit, LimitsSpec, parse_limits
from .._options import LimiterOptions, OnUnavailable, check_group, check_key
from .._script import GCRA, HEARTBEAT, HEARTBEAT_SPAN_MS
from .._stats import Counters, RateLimitStats

__all__ = ["AsyncRateLimiter"]

log = logging.getLogger("veneer")

_TICK = 0.1  # the background loop wakes this often to probe and to beat
_MAX_SUSPECTS = 32
_MAX_PLANS = 256


def _now_us() -> int:
    return time.monotonic_ns() // 1000


class AsyncRateLimiter:
    """Rate limits on a cache's Redis: ``await limiter.hit(subject)`` -> :class:`Decision`.

    Build it on a veneer :class:`AsyncCache` (it shares the cache's deadlines and circuit
    breakers), or with :meth:`from_url`. It never raises because of Redis: while Redis
    cannot answer, ``on_unavailable`` decides ("local", "allow" or "deny").
    """

    def __init__(
        self,
        cache: AsyncCache,
        limits: LimitsSpec,
        /,
        *,
        name: str = "default",
        on_unavailable: OnUnavailable = "local",
        workers: int | None = None,
        heartbeat: float = 5.0,
        shadow: bool = False,
        refusal_cache: int = 10_000,
        local_subjects: int = 100_000,
    ) -> None:
        if not isinstance(cache, AsyncCache):
            raise TypeError(
                "AsyncRateLimiter(cache, limits): cache must be a veneer AsyncCache (or use "
                f"AsyncRateLimiter.from_url), not {type(cache).__name__}"
            )
        options = LimiterOptions(
            name, on_unavailable, workers, heartbeat, shadow, refusal_cache, local_subjects
        )
        self._setup(cache, parse_limits(limits), options, owns_cache=False)

    @classmethod
    def from_url(
        cls,
        url: str,
        limits: LimitsSpec,
        /,
        *,
        namespace: str,
        name: str = "default",
        on_unavailable: OnUnavailable = "local",
        workers: int | None = None,
        heartbeat: float = 5.0,
        shadow: bool = False,
        refusal_cache: int = 10_000,
        local_subjects: int = 100_000,
        **cache_options: Any,
    ) -> AsyncRateLimiter:
        """A limiter with its own cache (no L1, no broadcast) on ``url``; ``cache_options``
        (``redis_timeout``, ``breaker_cooldown``...) go to :meth:`AsyncCache.from_url`."""
        options = LimiterOptions(
            name, on_unavailable, workers, heartbeat, shadow, refusal_cache, local_subjects
        )
        parsed = parse_limits(limits)
        cache_options = {"l1_size": 0, "broadcast": False, **cache_options}
        cache = AsyncCache.from_url(url, namespace=namespace, **cache_options)
        self = cls.__new__(cls)
        self._setup(cache, parsed, options, owns_cache=True)
        return self

    def _setup(
        self, cache: AsyncCache, limits: tuple[Limit, ...], options: LimiterOptions, *,
        owns_cache: bool,
    ) -> None:  # fmt: skip
        self.options = options
        self.name = options.name
        self.limits = limits
        self.shadow = options.shadow
        self._cache = cache
        self._owns_cache = owns_cache
        self._access: AsyncRedisAccess = cache.redis_access("ratelimit")
        self._gcra = self._access.script(GCRA)
        self._heartbeat_script = self._access.script(HEARTBEAT)
        self._prefix = options.name + ":"
        self._default = Plan(limits)
        self._plans: dict[Any, Plan] = {}
        self._refusals = RefusalCache(options.refusal_cache)
        self._local = LocalBuckets(options.local_subjects)
        self._counters = Counters()
        self._policy = options.on_unavailable
        # The "local" policy divides by this; the heartbeat keeps it current.
        self._workers = options.workers or 1
        self._beats = options.workers is None and options.on_unavailable == "local"
        self._beat_key = self._access.key(options.name, "workers")
        self._instance = f"{rng.getrandbits(64):016x}"
        self._last_count = 0
        self._beaten = False
        # Routing keys whose node refused or failed: the background probes them, so
        # no caller ever waits on a breaker's probe.
        self._suspects: dict[bytes, None] = {}
        self._worker: Background | None = None
        self._starting = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------------ hits

    async def hit(
        self, key: str, /, cost: int = 1, *, limits: LimitsSpec | None = None, group: str = ""
    ) -> Decision:
        """Spend ``cost`` on every limit of the call (the limiter's, or ``limits``) for
        subject ``key``, all or nothing. ``group`` keeps per-call limits (a route's) in
        accounts of their own."""
        plan = self._plan(limits, group)
        cost = plan.check_cost(cost)
        check_key(key)
        now = _now_us()
        cached = self._refusals.check(plan, key, cost, now, shadow=self.shadow)
        if cached is not None:
            self._counters.cached_refusals += 1
            return self._count(cached)
        return self._count(await self._decide(plan, key, cost, now, spend=True))

    async def peek(
        self, key: str, /, *, limits: LimitsSpec | None = None, group: str = ""
    ) -> Decision:
        """Whether a hit of cost 1 would be allowed now, spending nothing."""
        plan = self._plan(limits, group)
        check_key(key)
        return await self._decide(plan, key, 1, _now_us(), spend=False)

    async def reset(
        self, key: str, /, *, limits: LimitsSpec | None = None, group: str = ""
    ) -> bool:
        """Forget subject ``key``'s accounts (one DEL of its keys: no KEYS, no SCAN). False
        when Redis could not be reached (the local state is forgotten anyway)."""
        plan = self._plan(limits, group)
        check_key(key)
        self._refusals.forget(plan, key)
        self._local.forget(plan, key)
        keys = self._keys(plan, key)
        try:
            await self._access.command(keys[0], "DEL", *keys)
        except RedisDown:
            return False
        return True

    async def _decide(self, plan: Plan, key: str, cost: int, now: int, *, spend: bool) -> Decision:
        if self._worker is None and not self._closed:
            self._start()
        keys = self._keys(plan, key)
        routing = keys[0]
        # A subject whose last call failed is not tried again by callers: the breaker may
        # take a few deadlines to open, and the background probe clears it first.
        if routing not in self._suspects and self._access.healthy(routing):
            try:
                reply = await self._access.eval(
                    self._gcra, keys, [cost, 1 if spend else 0, *plan.args]
                )
            except RedisDown:
                pass
            else:
                allowed = bool(reply[0])
                delays = [int(delay) for delay in reply[1:]]
                if spend and not allowed:
                    self._refusals.remember(plan, key, now, delays)
                self._counters.redis_decisions += spend
                return from_delays(
                    plan, delays, cost, allowed, "redis", spend=spend, shadow=self.shadow and spend
                )
        self._suspect(routing)
        return self._unavailable(plan, key, cost, now, spend=spend)

    def _unavailable(self, plan: Plan, key: str, cost: int, now: int, *, spend: bool) -> Decision:
        """Redis did not answer, or its breaker is open: the outage policy decides at once."""
        counters = self._counters
        counters.unavailable_decisions += spend
        shadow = self.shadow and spend
        if self._policy == "local":
            counters.local_decisions += spend
            return self._local.hit(plan, key, cost, now, self._workers, spend=spend, shadow=shadow)
        return by_policy(plan, self._policy == "allow", shadow=shadow)

    def _count(self, decision: Decision) -> Decision:
        counters = self._counters
        if decision.allowed:
            counters.allowed += 1
            if decision.shadowed:
                counters.shadow_refusals += 1
        else:
            counters.refused += 1
        return decision

    def _keys(self, plan: Plan, key: str) -> list[bytes]:
        subject = self._prefix + key
        return [self._access.key(subject, part) for part in plan.parts]

    def _plan(self, limits: LimitsSpec | None, group: str) -> Plan:
        if limits is None and not group:
            return self._default
        spec = limits if limits is None or isinstance(limits, str | Limit) else tuple(limits)
        plan = self._plans.get((spec, group))
        if plan is None:
            check_group(group)
            parsed = self.limits if limits is None else parse_limits(limits)
            plan = Plan(parsed, group)
            if len(self._plans) < _MAX_PLANS:
                self._plans[(spec, group)] = plan
        return plan

    # ------------------------------------------------------- background work

    def _suspect(self, routing: bytes) -> None:
        if routing not in self._suspects and len(self._suspects) < _MAX_SUSPECTS:
            self._suspects[routing] = None

    def _start(self) -> None:
        with self._starting:  # threads of the sync shell may race to the first hit
            if self._worker is None:
                self._worker = spawn(self._background, f"veneer-ratelimit-{self.name}")

    async def _background(self) -> None:
        next_beat = 0.0
        while not self._closed:
            try:
                if self._beats and time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + self.options.heartbeat
                    await self._heartbeat()
                await self._probe()
            except Exception as exc:  # never let the helper die; it is retried next tick
                log.debug("veneer: rate limiter background step failed: %s", exc)
            await sleep(_TICK)

    async def _heartbeat(self) -> None:
        """Count the live instances of this limiter: the "local" policy's divisor."""
        stale_ms = int(3 * self.options.heartbeat * 1000)
        try:
            count = int(
                await self._access.eval(
                    self._heartbeat_script,
                    [self._beat_key],
                    [self._instance, stale_ms, 0, HEARTBEAT_SPAN_MS],
                )
            )
        except RedisDown:
            return
        self._beaten = True
        # The larger of the last two counts: a Redis that restarted empty (or a set
        # that just expired) shows one worker until every worker has beaten again.
        self._workers = max(1, count, self._last_count)
        self._last_count = count

    async def _probe(self) -> None:
        """Try the suspects' nodes with a harmless read: a reply returns those subjects to
        Redis. While a breaker is open the door refuses this at once, and the cache's own
        probe closes it; no caller ever waits on either."""
        for routing in list(self._suspects):
            try:
                await self._access.command(routing, "PTTL", routing)
            except RedisDown as exc:
                if not exc.breaker_open:
                    return  # it waited a deadline: the others wait for the next tick
                continue
            self._suspects.pop(routing, None)

    # ---------------------------------------------------------------- admin

    @property
    def namespace(self) -> str:
        """The namespace of this limiter's cache (a metrics label)."""
        return self._cache.options.namespace

    def stats(self) -> RateLimitStats:
        c = self._counters
        return RateLimitStats(
            allowed=c.allowed,
            refused=c.refused,
            shadow_refusals=c.shadow_refusals,
            cached_refusals=c.cached_refusals,
            redis_decisions=c.redis_decisions,
            local_decisions=c.local_decisions,
            unavailable_decisions=c.unavailable_decisions,
            workers=self._workers,
            degraded=not self._access.healthy(),
            refusal_cache_size=len(self._refusals),
            local_subjects=len(self._local),
        )

    async def close(self) -> None:
        """Stop the heartbeat, leave the worker count, and close the cache if it is ours."""
        if self._closed:
            return
        self._closed = True
        if self._worker is not None:
            await self._worker.stop()
            self._worker = None
        if self._beaten:
            try:
                await self._access.eval(
                    self._heartbeat_script,
                    [self._beat_key],
                    [self._instance, 0, 1, HEARTBEAT_SPAN_MS],
                )
            except RedisDown:
                pass
        if self._owns_cache:
            await self._cache.close()

    async def __aenter__(self) -> AsyncRateLimiter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        limits = "; ".join(str(limit) for limit in self.limits)
        return (
            f"<{type(self).__name__} {self.name!r} {limits!r} on_unavailable={self._policy!r}"
            f"{' shadow' if self.shadow else ''}>"
        )
