"""The asyncio cache front; ``veneer/_sync/_cache.py`` is generated from this file.

The front moves bytes between the tiers and the source; what an entry means
and what a fill writes is decided in ``veneer._policy``.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial
from typing import Any, ParamSpec, TypeVar, cast

from redis.exceptions import ResponseError as RefusedByRedis

from .. import _fork
from .._breaker import CircuitBreaker
from .._codec import (
    HEADER_SIZE,
    CorruptEntry,
    Envelope,
    EnvelopeCodec,
    codec_from_option,
    is_lease_mark,
    lease_mark,
)
from .._errors import (
    ConfigurationError,
    SourceOverloaded,
    SourceTimeout,
)
from .._keys import KeyLayout, check_key, check_tag, check_tags
from .._l1 import L1Store
from .._observe import check_observer
from .._options import CacheOptions, Ttl
from .._policy import Verdict, judge, lease_backoff, stamp_expiry_seconds
from .._random import rng
from .._refusals import WRITES, Refusals, classify
from .._stats import CacheStats, Counters, LatencySample
from .._txn import bypasses
from .._txn import open_marks as _open_marks
from .._types import TypeDrift, loader_site
from . import (
    _batches,
    _capabilities,
    _channel,
    _conditional,
    _entries,
    _observed,
    _refresh,
    _revalidation,
)
from ._access import AsyncRedisAccess
from ._broadcast import AsyncBroadcastSubscriber
from ._cluster_io import AsyncClusterL2
from ._concurrency import (
    EXPIRED,
    SCHEDULED,
    BackgroundRefreshes,
    Flight,
    LeaderGone,
    Loader,
    ManyLoader,
    SourceBulkhead,
    call_later,
    call_loader,
    current_loop,
    on_loop_end,
    sleep,
)
from ._decorator import AsyncCachedFunction, cached_decorator
from ._invalidations import AsyncInvalidations
from ._lease_keeper import AsyncLeaseKeeper
from ._loaders import conformed, watched
from ._redis_io import (
    PROBE_TRIES,
    REDIS_ERRORS,
    AsyncL2,
    CircuitOpen,
    PoolExhausted,
    build_client,
    client_like,
    is_cluster,
    new_token,
)
from ._stamps import AsyncStampBook

__all__ = ["AsyncCache"]

log = logging.getLogger("veneer")

P = ParamSpec("P")
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

_UNAVAILABLE: Any = object()
_CORRUPT: Any = object()
_LEASED: Any = object()  # a miss, and this caller's lease-get took the lease
_HELD: Any = object()  # a miss, and another caller holds the lease
_NONE: Any = object()
_NOT_GIVEN: Any = object()
_monotonic = time.monotonic
_wall = time.time

Versions = tuple[int, dict[str, int]]


def _endpoint(client: Any) -> str:
    pool = client.connection_pool
    if hasattr(pool, "service_name"):
        return f"sentinel:{pool.service_name}"
    kwargs = pool.connection_kwargs
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"


class AsyncCache:
    """A two-tier cache (in-process L1, Redis L2) in front of a source of truth.

    Build it with :meth:`from_url`, or from an existing redis-py client (its
    connection settings are copied; the client itself is left alone).
    """

    def __init__(self, client: Any, /, *, namespace: str, **options: Any) -> None:
        opts = CacheOptions.build(namespace, options)
        copied, owned = client_like(
            client,
            redis_timeout=opts.redis_timeout,
            connect_timeout=opts.connect_timeout,
            max_connections=opts.max_connections,
        )
        self._setup(copied, opts, owns_client=owned)

    @classmethod
    def from_url(cls, url: str, /, *, namespace: str, **options: Any) -> AsyncCache:
        """A cache on the Redis at ``url``: ``redis://[user:pass@]host:port[/db]``,
        ``rediss://...`` (TLS, certificates verified), ``unix://[user:pass@]/path.sock``,
        ``redis+cluster://host:port[,host:port...]`` (``rediss+cluster://``) or
        ``redis+sentinel://host:port[,...]/service[/db]`` (``rediss+sentinel://``).

        Options and their defaults: docs/options.md. A bad URL or option raises
        ConfigurationError (never showing the password)."""
        opts = CacheOptions.build(namespace, options)
        client = build_client(
            url,
            redis_timeout=opts.redis_timeout,
            connect_timeout=opts.connect_timeout,
            read_from_replicas=opts.read_from_replicas,
            max_connections=opts.max_connections,
        )
        self = cls.__new__(cls)
        self._setup(client, opts, owns_client=True)
        return self

    def _setup(self, client: Any, opts: CacheOptions, *, owns_client: bool) -> None:
        self.options = opts
        self._layout = KeyLayout(opts.namespace)
        try:
            codec = codec_from_option(opts.codec)
            self._envelopes = EnvelopeCodec(
                codec,
                compression=opts.compression,
                compress_above=opts.compress_above,
                max_bytes=opts.max_value_bytes,
            )
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        self._drift = TypeDrift(codec.encode, codec.decode)

        def breaker(name: str) -> CircuitBreaker:
            return CircuitBreaker(
                name,
                failures=opts.breaker_failures,
                slot=opts.redis_timeout,
                cooldown=opts.breaker_cooldown,
                # A probe that never reported (its task was cancelled) is replaced after this.
                probe_timeout=1.0 + PROBE_TRIES * (opts.redis_timeout + opts.connect_timeout),
            )

        self._l2: AsyncL2
        if is_cluster(client):
            # One breaker per node: a dead shard degrades only the keys on it.
            self._l2 = AsyncClusterL2(
                client,
                breaker,
                owns_client=owns_client,
                read_from_replicas=opts.read_from_replicas,
                replica_wait=opts.redis_timeout / 2,
                max_connections=opts.max_connections,
                pool_timeout=opts.pool_timeout,
                sharded_pubsub=opts.sharded_pubsub,
            )
        else:
            self._l2 = AsyncL2(
                client,
                breaker(_endpoint(client)),
                owns_client=owns_client,
                replica_wait=opts.redis_timeout / 2,
                max_connections=opts.max_connections,
                pool_timeout=opts.pool_timeout,
                sharded_pubsub=opts.sharded_pubsub,
            )
        # What this Redis refuses although it answers (out of memory, ACL): see _capabilities.
        self._refusals = self._l2.refusals = Refusals(warn_every=opts.error_log_interval)
        self._l2.on_refused = partial(_capabilities.refused, self)
        self._l2.unrenewed_px = max(1, int(opts.lease_ttl * 1000))
        self._bulkhead = SourceBulkhead(opts.source_concurrency, opts.source_queue_timeout)
        self._run_id: str | None = None
        self._warm_until = 0.0
        self._l1 = L1Store(opts.l1_size, opts.l1_max_bytes if opts.l1_size else 0)
        self._l1_map = self._l1.map
        self._counters = Counters()
        self._l2_latency = LatencySample()
        self._load_latency = LatencySample()
        self._stamps = AsyncStampBook(
            self._l2,
            self._layout,
            trust_seconds=opts.stamp_ttl,
            redis_expiry=stamp_expiry_seconds(opts.max_ttl),
            errors=REDIS_ERRORS,
            on_error=self._redis_failed,
        )
        self._sender = f"{rng.getrandbits(64):016x}"
        self._invalidations = AsyncInvalidations(
            self._l2,
            self._layout,
            self._stamps,
            self._counters,
            sender=self._sender,
            broadcast=opts.broadcast,
            errors=REDIS_ERRORS,
            on_error=self._redis_failed,
            warn=self._warn,
            monitor_every=opts.monitor_every,
            monitor_delay=opts.monitor_delay,
            still_in_l1=self._still_in_l1,
            on_broadcast_back=partial(_capabilities.broadcast_back, self),
        )
        self._flights: dict[str, Flight] = {}
        self._refreshes = BackgroundRefreshes()
        heartbeat = opts.lease_heartbeat_seconds
        self._lease_px = max(1, int(heartbeat * 1000))
        self._keeper = AsyncLeaseKeeper(
            self._l2,
            heartbeat=heartbeat,
            longest=opts.lease_ttl,
            errors=REDIS_ERRORS,
            on_error=self._redis_failed,
        )
        # A miss takes its lease in the round trip that reads the key (replicas cannot).
        self._lease_on_read = opts.leases and not opts.read_from_replicas
        self._registry_key = self._layout.registry_key.encode()
        self._fills = 0
        # Bumped on every invalidation this process applies (its own or received):
        # a fill that started before a bump must not put its value into L1.
        self._inv_seq = 0
        # The bumps of _inv_seq that are no invalidation: the channel lost or regained
        # (invalidations maybe missed). L1 must not keep a copy loaded across one, but
        # a caller may still share a load in flight: it knows of no newer write.
        # Flights compare _inv_seq - _resyncs (issue 17: a reconnect doubled loads).
        self._resyncs = 0
        self._last_error_log = 0.0
        self._closed = False
        self._subscriber: AsyncBroadcastSubscriber | None = None
        # Without a broadcast channel L1 is trusted for l1_ttl alone; with one,
        # only while subscribed (a process that cannot hear invalidations must not
        # serve its copies as fresh).
        self._l1_live = opts.l1_size > 0 and not opts.broadcast
        # Invalidations published in the namespace as this process counts them (the
        # count read at the last subscription, plus every message since): see _channel.
        self._published: int | None = None
        self._subscribed_before = False
        # L1 copies are served as fresh only until this moment (monotonic): the last
        # proof that this process had every invalidation published (a pong, see
        # _channel.on_current) plus the subscriber's health timeout. A process that stalls
        # (a pause, a starved thread, SIGSTOP) with invalidations unread in its socket
        # stops serving L1 from its own clock, without waiting for the subscriber to run.
        self._trust_seconds = max(1.0, 4 * opts.redis_timeout)
        self._l1_trust = 0.0 if opts.broadcast else math.inf
        if opts.broadcast:
            self._subscriber = AsyncBroadcastSubscriber(
                self._l2.subscriber,
                self._l2.release_subscriber,
                self._layout.channel,
                on_message=partial(_channel.on_message, self),
                on_live=partial(_channel.on_live, self),
                on_lost=partial(_channel.on_lost, self),
                on_tick=partial(_channel.on_tick, self),
                on_heard=self._l2.hint_alive,
                on_current=partial(_channel.on_current, self),
                health_timeout=self._trust_seconds,
                sharded=self._l2.sharded_broadcast,
            )
        self._started = False
        self._loop: object = None  # the event loop this cache's connections belong to
        self._stop_guard: Callable[[], None] = lambda: None
        if opts.observer is not None:
            # Metrics and tracing, chosen here once: see veneer._observe.
            _observed.install(self, check_observer(opts.observer))
        _fork.register(self)

    def _after_fork(self) -> None:
        """In a forked child (gunicorn --preload, multiprocessing): the parent's threads,
        tasks, loads, locks and sockets are not this process's. Called by ``_fork``."""
        self._l1.after_fork()
        self._forget_context()
        # The parent keeps retrying its own queued invalidations; sending them from
        # every child too would only repeat them.
        self._invalidations.pending.clear()

    def _forget_context(self) -> None:
        """Drop what belongs to another process (after a fork) or another event loop."""
        self._flights = {}  # their leaders are threads or tasks that do not exist here
        self._bulkhead = SourceBulkhead(self._bulkhead.limit, self._bulkhead.timeout)
        self._refreshes = BackgroundRefreshes()
        self._l2.after_fork()
        self._keeper.after_fork()
        self._stamps.after_fork()
        if self._subscriber is not None:
            self._subscriber.after_fork()
            self._started = False  # the next call subscribes this process
            _channel.on_lost(self)  # until then, L1 copies are not trusted as fresh

    def _bind_loop(self) -> None:
        """The first call on an event loop (asyncio.run called again, a loop per test): what
        belonged to the previous loop is forgotten, and this loop's end closes what it
        opened. The threaded shell has one binding for the process."""
        if self._loop is not None:
            self._forget_context()
        self._loop = current_loop()
        self._stop_guard()
        self._stop_guard = on_loop_end(self._loop_ending)

    async def _loop_ending(self) -> None:
        """The loop shuts down (asyncio.run cancels every task at its end): close this loop's
        connections and background work while it can still run them."""
        try:
            await self._refreshes.close()
            await self._keeper.close()
            if self._subscriber is not None:
                await self._subscriber.close()
                self._started = False
            await self._l2.release_loop()
        except Exception:  # a failing close must not fail the loop's shutdown
            log.debug("veneer: closing the connections of an ending loop failed", exc_info=True)
        self._loop = None

    # ------------------------------------------------------------------ reads

    async def get(self, key: str, /, *, type: Any = None, default: Any = None) -> Any:
        """The cached value, or ``default`` on a miss. Never calls the source.

        A stale entry (past its TTL, within ``stale_ttl``) is returned as is.
        """
        entry = self._l1_map.get(key)
        # One clock read for both: the entry's l1_ttl, and the channel's trust (on_current).
        if (
            entry is not None
            and entry.expires > _monotonic() < self._l1_trust
            and not _open_marks.get()
        ):
            entry.visited = True
            self._counters.l1_hits += 1
            return entry.value
        self._counters.l1_misses += 1
        check_key(key)
        marks = _open_marks.get()
        if marks and bypasses(marks, self.options.namespace, key):
            return default
        self._start()
        seq = self._inv_seq
        envelope = await self._read(key, type)
        if envelope is _UNAVAILABLE:
            stale = self._l1_stale(key)
            return default if stale is _NONE else stale
        if envelope is None or envelope is _CORRUPT:
            return default
        verdict = await self._judge(envelope, xfetch=False)
        if verdict is None or not verdict.serveable:
            return default
        self._take(key, envelope, verdict, seq)
        return envelope.value

    async def get_or_load(
        self,
        key: str,
        loader: Loader[T],
        /,
        *,
        ttl: float | Callable[[T], float | None] | None = None,
        tags: Sequence[str] = (),
        type: Any = None,
    ) -> T:
        """The cached value; on a miss, ``loader()``'s result, cached with ``ttl``.

        ``ttl`` may be a function of the loaded value (``None`` or <= 0: the value is
        returned, not stored), for values that carry their own lifetime.

        Concurrent misses of one key share one load, in this process (single-flight)
        and across processes (a lease in Redis). A loader returning ``None`` is
        cached as a negative entry (``negative_ttl``).
        """
        entry = self._l1_map.get(key)
        if (
            entry is not None
            and entry.expires > _monotonic() < self._l1_trust
            and not _open_marks.get()
        ):
            entry.visited = True
            self._counters.l1_hits += 1
            return cast(T, entry.value)
        return cast(T, await self._miss(key, loader, ttl, tags, type))

    async def _miss(
        self, key: str, loader: Callable[[], Any], ttl: Ttl | None, tags: Sequence[str], type: Any
    ) -> Any:
        self._counters.l1_misses += 1
        check_key(key)
        ttl_s = ttl if callable(ttl) else self.options.resolve_ttl(ttl)
        tag_list = check_tags(tags)
        if type is not None:
            loader = conformed(loader, type, key)
        else:
            site = loader_site(loader)
            if self._drift.watching(site):
                loader = watched(loader, self._drift, site, key, self.options.namespace)
        marks = _open_marks.get()
        if marks and bypasses(marks, self.options.namespace, key, tag_list):
            # This context's open transaction will invalidate the key: read the source.
            return (await self._load(loader))[0]
        self._start()
        patience = self.options.lease_wait_seconds
        deadline = 0.0
        while True:
            flight = Flight(self._inv_seq - self._resyncs, _monotonic())
            leader = self._flights.setdefault(key, flight)
            if leader is not flight and (
                leader.seq != flight.seq or flight.started - leader.started > patience
            ):
                # That load began before an invalidation (its value may be the old one:
                # the in-process stale-set race), or has run longer than anyone waits
                # for it (lease_wait): lead a new load instead of sharing it.
                self._flights[key] = leader = flight
            if leader is not flight:
                self._counters.shared_loads += 1
                if not deadline:
                    deadline = flight.started + patience
                try:
                    value = await leader.wait(deadline - _monotonic())
                except LeaderGone:
                    continue  # the leader was cancelled: try again, maybe as the leader
                if value is EXPIRED:
                    return await self._past_patience(key, loader, patience)
                return value
            try:
                value, refresh = await self._lead_or_stale(key, loader, ttl_s, tag_list, type)
            except Exception as exc:
                flight.fail(exc)
                raise
            except BaseException:
                flight.fail(LeaderGone())
                raise
            finally:
                if self._flights.get(key) is flight:
                    del self._flights[key]
            flight.resolve(value)
            if refresh is None:
                return value
            # Waiters already have the stale value; the refresh runs in the background
            # (asyncio) or here, for this caller only (threads).
            outcome = self._refreshes.run(refresh)
            return value if outcome is SCHEDULED or outcome is _revalidation.FAILED else outcome

    async def _past_patience(self, key: str, loader: Callable[[], Any], waited: float) -> Any:
        """A caller waited ``lease_wait`` for another caller's load of ``key`` here (as long
        as for another process's fill): a copy within max_stale, else a load of its own
        if a bulkhead slot is free now (returned, not filled: the leader holds the lease),
        else SourceTimeout. Never an unbounded wait behind a slow or hung loader."""
        self._counters.lease_wait_timeouts += 1
        stale = self._l1_stale(key)
        if stale is not _NONE:
            return stale
        if not await self._bulkhead.try_acquire():
            self._counters.source_shed += 1
            raise SourceTimeout(key, waited, self._bulkhead.limit)
        return (await self._load(loader, acquired=True))[0]

    async def _lead_or_stale(
        self, key: str, loader: Callable[[], Any], ttl: Ttl, tags: tuple[str, ...], type: Any
    ) -> tuple[Any, Callable[[], Awaitable[Any]] | None]:
        try:
            return await self._lead(key, loader, ttl, tags, type)
        except SourceOverloaded:
            # The bulkhead is full: an in-process copy within max_stale beats an error.
            stale = self._l1_stale(key)
            if stale is _NONE:
                raise
            return stale, None

    async def _lead(
        self, key: str, loader: Callable[[], Any], ttl: Ttl, tags: tuple[str, ...], type: Any
    ) -> tuple[Any, Callable[[], Awaitable[Any]] | None]:
        """The read of the one caller per process that goes past L1 for ``key``: the value
        for every waiter, and the refresh this caller must run after handing it out."""
        seq = self._inv_seq
        refusals = self._refusals
        if (
            self._lease_on_read
            and self._l2.lease_on_read
            # Writes refused (out of memory): a plain GET, with a lease-get once a second.
            and (not refusals.writes_until or refusals.allows(WRITES))
        ):
            leased = new_token()
            envelope = await self._read_or_lease(key, type, leased)
            token: bytes | None = leased
        else:
            token = None
            envelope = await self._read(key, type)
        if envelope is _UNAVAILABLE:
            return await self._without_redis(key, loader, ttl, seq), None
        if envelope is _LEASED or envelope is _HELD:
            if self._warming():
                # Redis came back empty: serve the in-process copy (within max_stale)
                # while one caller per key refills it (see below).
                stale = self._l1_stale(key)
                if stale is not _NONE:
                    if envelope is _HELD:
                        return stale, None  # another caller is refilling it
                    return stale, _revalidation.held(self, key, loader, ttl, tags, seq, token)
            if envelope is _LEASED:
                return await self._load_and_fill(
                    key, loader, ttl, tags, type, seq, token=token
                ), None
            return await self._load_and_fill(key, loader, ttl, tags, type, seq, held=True), None
        force_lease = envelope is _CORRUPT  # unusable bytes sit there: lease past them
        if envelope is not None and envelope is not _CORRUPT:
            verdict = await self._judge(envelope, xfetch=True)
            if verdict is None:
                return await self._without_redis(key, loader, ttl, seq), None
            if verdict is Verdict.FRESH:
                self._take(key, envelope, verdict, seq)
                return envelope.value, None
            if verdict.wants_refresh:
                self._take(key, envelope, verdict, seq)
                return envelope.value, await _revalidation.claim(
                    self, key, loader, ttl, tags, seq, envelope.raw[:HEADER_SIZE]
                )
            force_lease = True  # an invalidated entry sits there: lease past it
        elif self._warming():
            # Redis came back empty: serve the in-process copy (within max_stale) while
            # one caller per key refills it. Every copy predates the restart, so none
            # is trusted: invalidations sent while this process was not subscribed
            # (a queue replayed at the restart) may have missed it.
            stale = self._l1_stale(key)
            if stale is not _NONE:
                return stale, await _revalidation.claim(self, key, loader, ttl, tags, seq, b"")
        return await self._load_and_fill(key, loader, ttl, tags, type, seq, force=force_lease), None

    async def _without_redis(self, key: str, loader: Callable[[], Any], ttl: Ttl, seq: int) -> Any:
        """Redis is unreachable: an in-process copy within max_stale, else the source.

        A value loaded here is kept in L1 as not-fresh (it cannot be invalidated
        while Redis is out), servable for max_stale counted from the moment the
        load began (a commit after that may be missing from it): one load per key
        per max_stale of outage, not one per read, and never a copy older than that.
        """
        stale = self._l1_stale(key)
        if stale is not _NONE:
            return stale
        began = _wall()
        value = (await self._load(loader))[0]
        stored = self.options.ttl_for(ttl, value) is not None
        if stored and self.options.l1_size and self.options.max_stale and seq == self._inv_seq:
            try:
                size = len(self._envelopes.codec.encode(value))
            except Exception:
                return value  # not encodable: not cacheable either
            # Like any fill: not if an invalidation arrived while it loaded (it may be
            # older), checked again under L1's lock right before the put.
            self._l1.put(
                key,
                value,
                expires=_monotonic(),
                fresh_until=began,
                size=size,
                unless=lambda: seq != self._inv_seq,
            )
        return value

    def _l1_stale(self, key: str) -> Any:
        """This process's copy of ``key`` if it is at most ``max_stale`` past fresh."""
        entry = self._l1_map.get(key)
        if entry is None or _wall() - entry.fresh_until > self.options.max_stale:
            return _NONE
        self._counters.stale_fallbacks += 1
        return entry.value

    def _warming(self) -> bool:
        """Whether Redis may be refilling after a restart (or before we could tell)."""
        if _monotonic() < self._warm_until:
            return True
        return self._started and self._subscriber is not None and not self._subscriber.live

    async def _load_and_fill(
        self,
        key: str,
        loader: Callable[[], Any],
        ttl: Ttl,
        tags: tuple[str, ...],
        type: Any,
        seq: int,
        *,
        force: bool = False,
        token: bytes | None = None,
        held: bool = False,
    ) -> Any:
        """Load ``key`` and fill it: with the lease ``token`` already taken by the read,
        or after taking one (waiting for another holder's fill, bounded)."""
        versions = await self._stamps.versions(tags)
        if versions is None:
            if token is not None:
                self._release_soon(key, token)
            return await self._without_redis(key, loader, ttl, seq)
        refused = False
        if self.options.leases and token is None:
            refusals = self._refusals
            if refusals.writes_until and not refusals.allows(WRITES):
                outcome, found = "refused", None  # no lease can be written: do not try
            else:
                outcome, found = await self._acquire_lease(key, type, seq, force, held)
            if outcome == "value":
                return found
            token = found
            # Nobody can fill while Redis refuses writes: the fill below keeps the value
            # in process (L1) instead, so the next reads do not load it again.
            refused = outcome == "refused"
        if token is None:
            value, seconds = await self._load(loader)
        else:
            value, seconds = await self._load_leased(key, loader, token)
        if value is None and not self.options.cache_none:
            if token is not None:
                await self._release(key, token)
            return value
        if token is not None or not self.options.leases or refused:
            await self._fill(key, value, ttl, tags, versions, seconds, seq, token, strict=False)
        return value

    async def _load_leased(
        self, key: str, loader: Callable[[], Any], token: bytes
    ) -> tuple[Any, float]:
        """Load while the keeper renews the lease; a failed load frees the key for the next
        caller now, and a cancelled one without making its caller wait for Redis."""
        value_key, lease_key = self._guarded_keys(key)
        handle = self._keeper.hold(value_key, lease_key, token, lease_mark(token))
        try:
            return await self._load(loader)
        except Exception:
            self._keeper.drop(handle)
            await self._release(key, token)
            raise
        except BaseException:
            self._keeper.drop(handle)
            self._release_soon(key, token)
            raise
        finally:
            self._keeper.drop(handle)

    async def _acquire_lease(
        self, key: str, type: Any, seq: int, force: bool, held: bool = False
    ) -> tuple[str, Any]:
        """Take the fill lease, or wait (bounded) for its holder's fill.

        ``("lease", token)``: this caller loads and fills. ``("value", value)``: the
        holder's fill (or a stale value) arrived. ``("none", None)``: Redis failed
        or the wait ran out: load without filling. ``("refused", None)``: Redis
        refuses writes, so no lease (nor fill) is possible. ``held``: the caller just saw
        another caller's lease (so it waits before asking again). A cancelled caller
        stops within one backoff step (every wait here is a plain await).
        """
        value_key, lease_key = self._guarded_keys(key)
        token = new_token()
        mark = lease_mark(token)
        deadline = _monotonic() + self.options.lease_wait_seconds
        attempt = 0
        if held:
            self._counters.lease_waits += 1
            await sleep(lease_backoff(attempt, rng.random()))
            attempt += 1
        while True:
            try:
                if force:
                    got, raw = await self._l2.get_or_lease(
                        value_key, lease_key, token, self._lease_px, True
                    )
                else:
                    raw, refreshing = await self._l2.poll_lease(
                        value_key, lease_key, mark, self._lease_px
                    )
                    got = raw is None and not refreshing
            except REDIS_ERRORS as exc:
                if self._redis_failed(exc) == WRITES:
                    return "refused", None
                return "none", None
            if raw is not None and is_lease_mark(raw):
                force = False  # someone's lease in the value slot: wait for its fill
            elif raw is not None:
                envelope = self._decode(raw, type, count=False)
                verdict = None if envelope is None else await self._judge(envelope, xfetch=False)
                if envelope is not None and verdict is not None and verdict.serveable:
                    if got:
                        await self._release(key, token)
                    self._take(key, envelope, verdict, seq)
                    return "value", envelope.value
                force = True  # unusable bytes in Redis: do not wait for them to expire
            if got:
                return "lease", token
            if attempt == 0:
                self._counters.lease_waits += 1
            if _monotonic() >= deadline:
                self._counters.lease_wait_timeouts += 1
                return "none", None
            await sleep(lease_backoff(attempt, rng.random()))
            attempt += 1

    async def _read(self, key: str, type: Any) -> Any:
        """One GET: an :class:`Envelope`, ``None`` on a miss, ``_CORRUPT`` for bytes that
        do not decode, or ``_UNAVAILABLE``."""
        started = time.perf_counter()
        try:
            raw = await self._l2.get(self._layout.value(key).encode())
        except REDIS_ERRORS as exc:
            self._redis_failed(exc)
            return _UNAVAILABLE
        self._l2_latency.record(time.perf_counter() - started)
        if raw is None or is_lease_mark(raw):  # a mark: someone is loading it
            self._counters.l2_misses += 1
            return None
        envelope = self._decode(raw, type)
        return _CORRUPT if envelope is None else envelope

    async def _read_or_lease(self, key: str, type: Any, token: bytes) -> Any:
        """The lease-get: like :meth:`_read`, but a miss takes the lease in the same round
        trip (``_LEASED``), or finds another caller's (``_HELD``)."""
        started = time.perf_counter()
        try:
            raw, refreshing = await self._l2.lease_get(
                *self._guarded_keys(key), lease_mark(token), self._lease_px
            )
        except RefusedByRedis as exc:
            # Redis refuses the write (out of memory, no permission): plain reads, which
            # still serve what is cached, with a lease-get once a second (see _lead).
            _capabilities.refused(self, classify(exc) or WRITES, exc)
            return await self._read(key, type)
        except REDIS_ERRORS as exc:
            self._redis_failed(exc)
            return _UNAVAILABLE
        self._l2_latency.record(time.perf_counter() - started)
        if self._refusals.writes_until:
            self._refusals.accepted(WRITES)  # it took our lease (or found an entry): back
        if raw is None or is_lease_mark(raw):
            self._counters.l2_misses += 1
            return _LEASED if raw is None and not refreshing else _HELD
        envelope = self._decode(raw, type)
        return _CORRUPT if envelope is None else envelope

    def _decode(self, raw: bytes, type: Any, *, count: bool = True) -> Envelope | None:
        try:
            envelope = self._envelopes.decode(raw, type)
        except CorruptEntry as exc:
            if count:  # a lease attempt re-reads the same bytes: count them once
                self._counters.corrupt_entries += 1
                self._counters.l2_misses += 1
            log.debug("veneer: unreadable entry treated as a miss: %s", exc)
            return None
        envelope.size = len(raw)
        envelope.raw = raw
        return envelope

    async def _judge(self, envelope: Envelope, *, xfetch: bool) -> Verdict | None:
        """The entry's verdict, or None when Redis failed while fetching stamps."""
        versions = await self._stamps.versions(tuple(envelope.tags))
        if versions is None:
            return None
        beta = self.options.xfetch_beta if xfetch else 0.0
        verdict = judge(envelope, _wall(), *versions, beta, 1.0 - rng.random())
        if verdict is Verdict.INVALID:
            self._counters.stale_rejected += 1
            self._counters.l2_misses += 1
        return verdict

    def _take(self, key: str, envelope: Envelope, verdict: Verdict, seq: int) -> None:
        """Count a served entry; a fresh one also goes into L1."""
        if verdict is Verdict.STALE:
            self._counters.stale_served += 1
            return
        self._counters.l2_hits += 1
        if self._l1_live:
            _entries.remember(
                self,
                key,
                envelope.value,
                envelope.fresh_until - _wall(),
                envelope.size,
                tuple(envelope.tags),
                seq,
            )

    async def _load(
        self, loader: Callable[[], Any], *, acquired: bool = False
    ) -> tuple[Any, float]:
        """Call the source through the bulkhead (``source_concurrency`` at once);
        ``acquired``: the caller already holds a slot."""
        bulkhead = self._bulkhead
        if not acquired and not await bulkhead.acquire():
            self._counters.source_shed += 1
            raise SourceOverloaded(bulkhead.limit, bulkhead.timeout)
        self._counters.source_loads += 1
        started = time.perf_counter()
        try:
            value = await call_loader(loader)
        except BaseException:
            self._counters.load_errors += 1
            raise
        finally:
            bulkhead.release()
        seconds = time.perf_counter() - started
        self._load_latency.record(seconds)
        return value, seconds

    # ------------------------------------------------------------------ batches

    async def get_many(self, keys: Iterable[str], /, *, type: Any = None) -> dict[str, Any]:
        """The cached values of ``keys`` that are hits, in one Redis round trip (one per
        shard on a cluster). A negative entry is a hit whose value is ``None``."""
        return await _batches.get_many(self, keys, type)

    async def get_or_load_many(
        self,
        keys: Iterable[str],
        loader_many: ManyLoader,
        /,
        *,
        ttl: float | None = None,
        tags: Sequence[str] = (),
        type: Any = None,
    ) -> dict[str, Any]:
        """Every key's value; ``loader_many(missing_keys)`` returns a mapping for the misses.

        Keys the loader leaves out are cached as negative entries and returned as ``None``.
        Each missing key is leased; keys another process is loading are loaded here
        too but not filled (a batch does not wait).
        """
        return await _batches.get_or_load_many(self, keys, loader_many, ttl, tags, type)

    async def refresh(
        self,
        key: str,
        loader: Loader[T],
        /,
        *,
        ttl: float | Callable[[T], float | None] | None = None,
        tags: Sequence[str] = (),
        default: Any = None,
    ) -> T | Any:
        """Load ``key`` from the source now and replace its entry (a revalidation).

        Readers keep getting the current entry until the new one lands. The fill is
        guarded like a miss's: it takes the key's lease, so an invalidation during the
        load refuses it. Returns the loaded value, or ``default`` when another caller
        (in any process) holds the key's lease. With Redis unreachable the value is
        loaded and returned, not stored.
        """
        return await _refresh.refresh(self, key, loader, ttl, tags, default)

    # ------------------------------------------------------------------ writes

    async def set(
        self, key: str, value: Any, /, *, ttl: float | None = None, tags: Sequence[str] = ()
    ) -> None:
        """Write a value (from your source of truth) with a TTL; raises :class:`ValueTooLarge`.

        The write revokes any fill in flight for the key, and other processes drop
        their L1 copy. If Redis is unreachable the write is skipped and an
        invalidation of the key is queued, so no process keeps the old value.
        """
        check_key(key)
        ttl_s = self.options.resolve_ttl(ttl)
        tag_list = check_tags(tags)
        # Every check that can refuse the value runs before anything changes.
        payload = _entries.prepare(self, key, value, strict=True)
        site = sys._getframe(1).f_code
        if self._drift.watching(site):
            self._drift.check(site, key, value, self.options.namespace)
        self._start()
        self._inv_seq += 1
        self._l1.discard(key)
        versions = await self._stamps.versions(tag_list)
        if versions is None:
            self._invalidations.queue(("k", key))
            return
        encoded = _entries.encode(
            self, key, value, ttl_s, tag_list, versions, 0.0, strict=True, payload=payload
        )
        assert encoded is not None  # strict: raises instead
        data, px, _fresh = encoded
        try:
            await self._l2.set_and_revoke(*self._guarded_keys(key), data, px)
        except REDIS_ERRORS as exc:
            self._redis_failed(exc)
            self._invalidations.queue(("k", key))
            return
        finally:
            # Reads that began before the write landed may hold the old value.
            self._inv_seq += 1
            self._l1.discard(key)
        await self._invalidations.publish("k", key, 0)

    async def add(
        self, key: str, value: Any, /, *, ttl: float | None = None, tags: Sequence[str] = ()
    ) -> bool:
        """Write ``value`` only if ``key`` holds no live entry; True when written.

        Atomic across processes (a compare-and-set on the key's slot). An entry
        invalidated by its tag or the namespace counts as absent. False when Redis
        is unreachable: nothing was written."""
        return await _conditional.add(self, key, value, ttl, tags)

    async def touch(self, key: str, /, *, ttl: float | None = None) -> bool:
        """Give the live entry of ``key`` a new TTL from now; False when there is none
        (or Redis is unreachable)."""
        return await _conditional.touch(self, key, ttl)

    async def incr(self, key: str, delta: int = 1, /) -> int:
        """Add ``delta`` to the int entry of ``key`` atomically, keeping its expiry; the
        new value. Raises KeyError (no live entry), TypeError (not an int) or
        RedisUnavailable (Redis did not answer)."""
        return await _conditional.incr(self, key, delta)

    def get_local(self, key: str, /, default: Any = None) -> Any:
        """This process's fresh in-process (L1) copy of ``key``, or ``default``. Never
        waits: for callers that must not block (an event loop in front of a thread)."""
        return _conditional.get_local(self, key, default)

    async def _fill(
        self,
        key: str,
        value: Any,
        ttl: Ttl,
        tags: tuple[str, ...],
        versions: Versions,
        seconds: float,
        seq: int,
        token: bytes | None,
        *,
        strict: bool,
    ) -> bool:
        """Write a loaded value; with a token, only while that token is still the lease."""
        encoded = _entries.encode(self, key, value, ttl, tags, versions, seconds, strict=strict)
        if encoded is None:
            if token is not None:
                await self._release(key, token)
            return False
        data, px, fresh_seconds = encoded
        value_key, lease_key = self._guarded_keys(key)
        refusals = self._refusals
        if token is None and refusals.writes_until and not refusals.allows(WRITES):
            # Redis refuses writes (out of memory): keep it in process, try again later.
            _entries.remember(self, key, value, fresh_seconds, len(data), tags, seq)
            return False
        try:
            if token is None:
                await self._l2.set(value_key, data, px)
            elif not await self._l2.fill_with_lease(
                value_key, lease_key, token, lease_mark(token), data, px
            ):
                # Revoked by an invalidation (or expired): the value may predate it.
                self._counters.fills_refused += 1
                return False
        except REDIS_ERRORS as exc:
            if self._redis_failed(exc) == WRITES:
                # Loaded and judged like any fill (an invalidation since bumped seq, and
                # one heard later discards it): L1 holds it so reads do not load again.
                _entries.remember(self, key, value, fresh_seconds, len(data), tags, seq)
            return False
        if refusals.writes_until:
            refusals.accepted(WRITES)
        _entries.remember(self, key, value, fresh_seconds, len(data), tags, seq)
        await self._record_fill(key)
        return True

    async def _release(self, key: str, token: bytes) -> None:
        try:
            await self._l2.release_lease(*self._guarded_keys(key), token, lease_mark(token))
        except REDIS_ERRORS as exc:
            self._redis_failed(exc)  # the lease expires by itself after lease_heartbeat

    def _release_soon(self, key: str, token: bytes) -> None:
        """Release in the background: for a caller that must not wait on Redis (cancelled)."""

        async def release() -> None:
            await self._release(key, token)

        call_later(0.0, release)

    async def _record_fill(self, key: str) -> None:
        """Keep 1 in ``registry_every`` filled keys in a bounded registry for ``veneer verify``."""
        every = self.options.registry_every
        if not every:
            return
        self._fills += 1
        if self._fills % every:
            return
        try:
            await self._l2.record_key(self._registry_key, key, _wall(), self._stamps.redis_expiry)
        except REDIS_ERRORS as exc:
            self._redis_failed(exc)

    async def recent_keys(self, limit: int = 1000) -> list[str]:
        """Keys recently filled by any process (1 in ``registry_every`` fills, newest first,
        at most 1000): the bounded sample ``veneer verify`` checks. No SCAN involved."""
        try:
            return await self._l2.recent_keys(self._registry_key, min(limit, 1000))
        except REDIS_ERRORS as exc:
            self._redis_failed(exc)
            return []

    def _guarded_keys(self, key: str) -> tuple[bytes, bytes]:
        value_key = self._layout.value(key).encode()
        return value_key, value_key + b":lease"  # the lease key is the value key + ":lease"

    # ------------------------------------------------------------ invalidation

    async def invalidate(self, key: str, /) -> bool:
        """Drop ``key`` from Redis and from every process's L1, and revoke its fills in flight.

        Returns True when Redis applied it now and told the other processes; False
        when Redis was unreachable and the invalidation was queued (it is retried
        until applied), or when Redis applied it but refused to broadcast it (an ACL
        user without ``PUBLISH``: other processes keep their L1 copies up to
        ``l1_ttl``; ``stats().degraded`` lists ``publish``).
        """
        check_key(key)
        entry = self._l1_map.get(key)
        # The sequence moves before the discard: a guarded put either lands before the
        # discard (and is removed) or sees the new sequence (see L1Store.put).
        self._inv_seq += 1
        self._l1.discard(key)
        self._start()
        applied = await self._invalidations.apply(
            ("k", key), l1_value=None if entry is None else entry.value
        )
        # A read that started after the first bump may have read the old value from
        # Redis before the delete landed: bump again so it cannot enter L1 either.
        self._inv_seq += 1
        self._l1.discard(key)
        return applied

    async def invalidate_tag(self, tag: str, /) -> bool:
        """Invalidate every entry written with ``tag``: one command, however many entries.

        Returns False when the invalidation had to be queued (see :meth:`invalidate`).
        """
        check_tag(tag)
        self._inv_seq += 1
        self._l1.discard_tag(tag)
        self._start()
        applied = await self._invalidations.apply(("t", tag))
        self._inv_seq += 1
        self._l1.discard_tag(tag)
        return applied

    async def invalidate_all(self) -> bool:
        """Invalidate the whole namespace: one command (a new namespace epoch).

        Returns False when the invalidation had to be queued (see :meth:`invalidate`).
        """
        self._inv_seq += 1
        self._l1.clear()
        self._start()
        applied = await self._invalidations.apply(("e", ""))
        self._inv_seq += 1
        self._l1.clear()
        return applied

    def _still_in_l1(self, key: str, value: Any) -> bool:
        entry = self._l1_map.get(key)
        return entry is not None and entry.value is value and entry.expires > _monotonic()

    # --------------------------------------------------------------- broadcast

    def _start(self) -> None:
        if self._loop is not current_loop():
            self._bind_loop()
        if not self._started and self._subscriber is not None and not self._closed:
            self._started = True
            self._subscriber.start()

    async def check(self) -> tuple[str, ...]:
        """Ping Redis now; raise :class:`RedisUnavailable` saying why it does not answer.

        Reads never raise for Redis (they fall back to the source): call this at
        start-up or from a health check to see why the cache is being bypassed.
        Redis may answer and still refuse part of what veneer sends (out of memory
        with ``noeviction``; an ACL user without ``EVALSHA`` or ``PUBLISH``): the
        answer is one sentence per refusal (empty when nothing is refused), each
        also logged as a warning (rate-limited) and listed in ``stats().degraded``.
        """
        return await _capabilities.check(self)

    async def ready(self, timeout: float = 5.0) -> bool:
        """Wait until this process hears other processes' invalidations (or ``timeout``)."""
        return await _channel.ready(self, timeout)

    # ------------------------------------------------------------- components

    def redis_access(self, component: str, /) -> AsyncRedisAccess:
        """Redis for one of veneer's components (rate limits, counters, flags), behind this
        cache's deadlines and circuit breakers; see ``veneer._async._access``."""
        return AsyncRedisAccess(
            self._l2,
            self._layout,
            component,
            redis_timeout=self.options.redis_timeout,
            on_failure=self._redis_failed,
        )

    # -------------------------------------------------------------- decorator

    def cached(
        self,
        *,
        ttl: float | None = _NOT_GIVEN,
        tags: Sequence[str] = (),
        key: str | None = None,
        type: Any = None,
    ) -> Callable[[Callable[P, Awaitable[T]]], AsyncCachedFunction[P, T]]:
        """Cache a function's results. The key is ``module.qualname:args``, or ``key``
        formatted with the arguments (``key="user:{uid}"``); tags may be templates too."""
        call_ttl = None if ttl is _NOT_GIVEN else ttl
        self.options.resolve_ttl(call_ttl)  # no TTL anywhere: fail at decoration time
        return cached_decorator(self, call_ttl, tuple(tags), key, type)

    # --------------------------------------------------------------- plumbing

    def _redis_failed(self, exc: BaseException) -> str | None:
        """Count and report a failed Redis call; the capability Redis refused, if that is
        what it was (an answer, not an outage: see veneer._refusals)."""
        if isinstance(exc, CircuitOpen):
            self._counters.breaker_rejections += 1
            return None
        if isinstance(exc, PoolExhausted):  # counted by the pool (stats().pool_timeouts)
            self._warn(f"{exc}; served without Redis")
            return None
        refused = classify(exc)
        if refused is not None:
            _capabilities.refused(self, refused, exc)
            return refused
        self._counters.redis_errors += 1
        self._warn(f"Redis call failed ({exc.__class__.__name__}: {exc}); served from the source")
        return None

    def _warn(self, message: str) -> None:
        now = _monotonic()
        if now - self._last_error_log >= self.options.error_log_interval:
            self._last_error_log = now
            log.warning("veneer[%s]: %s", self.options.namespace, message)

    def stats(self) -> CacheStats:
        c = self._counters
        breaker_state, breaker_opened, breaker_open_seconds = self._l2.breaker_summary()
        l2_p50, l2_p99 = self._l2_latency.percentiles()
        pool_waits, pool_timeouts = self._l2.pool_summary()
        load_p50, load_p99 = self._load_latency.percentiles()
        return CacheStats(
            **c.as_dict(),
            invalidations_pending=len(self._invalidations.pending),
            l1_entries=len(self._l1),
            l1_bytes=self._l1.bytes,
            l1_evictions=self._l1.evictions,
            broadcast_connected=bool(self._subscriber and self._subscriber.live),
            breaker_state=breaker_state,
            breaker_opened=breaker_opened,
            breaker_open_seconds=breaker_open_seconds,
            source_active=self._bulkhead.active,
            source_waiting=self._bulkhead.waiting,
            source_peak=self._bulkhead.peak,
            pool_waits=pool_waits,
            pool_timeouts=pool_timeouts,
            degraded=self._refusals.degraded(),
            l2_read_p50_ms=l2_p50 * 1000,
            l2_read_p99_ms=l2_p99 * 1000,
            load_p50_ms=load_p50 * 1000,
            load_p99_ms=load_p99 * 1000,
        )

    async def close(self) -> None:
        """Stop background work and close veneer's connections."""
        if self._closed:
            return
        if self._loop is not current_loop():
            self._bind_loop()  # (a close from another loop than the last call's)
        self._closed = True
        self._stop_guard()
        await self._refreshes.close()
        await self._keeper.close()
        if self._invalidations.pending:
            await self._invalidations.drain()
        if self._subscriber is not None:
            await self._subscriber.close()
        await self._l2.close()

    async def __aenter__(self) -> AsyncCache:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
