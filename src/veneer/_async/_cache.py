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
from typing import (
    Any,
    ParamSpec,
    TypeVar,
    cast,
    overload,  # async-only
)

from .. import _fork
from .._codec import (
    EnvelopeCodec,
    codec_from_option,
)
from .._errors import (
    ConfigurationError,
    SourceOverloaded,
)
from .._keys import KeyLayout, check_key, check_tag, check_tags
from .._l1 import L1Store
from .._observe import check_observer
from .._options import CacheOptions, Ttl
from .._policy import stamp_expiry_seconds
from .._random import rng
from .._refusals import Refusals, classify
from .._stats import CacheStats, Counters, LatencySample
from .._txn import bypasses
from .._txn import open_marks as _open_marks
from .._types import TypeDrift, loader_site
from . import (
    _batches,
    _capabilities,
    _channel,
    _conditional,
    _connect,
    _misses,
    _observed,
    _reads,
    _refresh,
    _revalidation,
    _writes,
)
from ._access import AsyncRedisAccess
from ._broadcast import AsyncBroadcastSubscriber
from ._concurrency import (
    EXPIRED,
    SCHEDULED,
    BackgroundRefreshes,
    Flight,
    LeaderGone,
    Loader,
    ManyLoader,
    SourceBulkhead,
    call_loader,
    current_loop,
    on_loop_end,
)
from ._decorator import AsyncCachedFunction, cached_decorator
from ._invalidations import AsyncInvalidations
from ._lease_keeper import AsyncLeaseKeeper
from ._loaders import conformed, watched
from ._redis_io import (
    REDIS_ERRORS,
    AsyncL2,
    CircuitOpen,
    PoolExhausted,
    build_client,
    client_like,
)
from ._stamps import AsyncStampBook

__all__ = ["AsyncCache"]

log = logging.getLogger("veneer")

P = ParamSpec("P")
T = TypeVar("T")

_NOT_GIVEN: Any = object()
_monotonic = time.monotonic

Versions = tuple[int, dict[str, int]]


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

        self._l2: AsyncL2 = _connect.build_l2(client, opts, owns_client=owns_client)
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
        envelope = await _reads.read(self, key, type)
        if envelope is _reads.UNAVAILABLE:
            stale = _misses.l1_stale(self, key)
            return default if stale is _misses.NONE else stale
        if envelope is None or envelope is _reads.CORRUPT:
            return default
        verdict = await _reads.judge(self, envelope, xfetch=False)
        if verdict is None or not verdict.serveable:
            return default
        _reads.take(self, key, envelope, verdict, seq)
        return envelope.value

    # async-only: begin
    @overload
    async def get_or_load(
        self,
        key: str,
        loader: Callable[[], Awaitable[T]],
        /,
        *,
        ttl: float | Callable[[T], float | None] | None = None,
        tags: Sequence[str] = (),
        type: Any = None,
    ) -> T: ...

    @overload
    async def get_or_load(
        self,
        key: str,
        loader: Callable[[], T],
        /,
        *,
        ttl: float | Callable[[T], float | None] | None = None,
        tags: Sequence[str] = (),
        type: Any = None,
    ) -> T: ...

    # async-only: end
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
                    return await _misses.past_patience(self, key, loader, patience)
                return value
            try:
                value, refresh = await _misses.lead_or_stale(
                    self, key, loader, ttl_s, tag_list, type
                )
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
        return await _misses.acquire_lease(self, key, type, seq, force, held)

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

    # async-only: begin
    @overload
    async def refresh(
        self,
        key: str,
        loader: Callable[[], Awaitable[T]],
        /,
        *,
        ttl: float | Callable[[T], float | None] | None = None,
        tags: Sequence[str] = (),
        default: Any = None,
    ) -> T | Any: ...

    @overload
    async def refresh(
        self,
        key: str,
        loader: Callable[[], T],
        /,
        *,
        ttl: float | Callable[[T], float | None] | None = None,
        tags: Sequence[str] = (),
        default: Any = None,
    ) -> T | Any: ...

    # async-only: end
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
        await _writes.write(self, key, value, ttl, tags, sys._getframe(1).f_code)

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
        """Write a loaded value; with a token, only while that token is still the lease
        (a method, so that tracing can wrap it)."""
        return await _writes.fill(
            self, key, value, ttl, tags, versions, seconds, seq, token, strict=strict
        )

    async def recent_keys(self, limit: int = 1000) -> list[str]:
        """Keys recently filled by any process (1 in ``registry_every`` fills, newest first,
        at most 1000): the bounded sample ``veneer verify`` checks. No SCAN involved."""
        return await _writes.recent_keys(self, limit)

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
