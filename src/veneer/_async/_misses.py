"""The read past L1 of the one caller per process that leads a key's flight, for the
asyncio front (``veneer/_sync/_misses.py`` is generated from this file).

It reads Redis (a lease-get where it can), serves what is fresh, hands a stale or
XFetch-due entry out and claims its refresh, waits (bounded) for another caller's
fill, and otherwise loads from the source and fills. With Redis unreachable, or the
source's bulkhead full, an in-process copy within ``max_stale`` beats an error.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .._codec import HEADER_SIZE, is_lease_mark, lease_mark
from .._errors import SourceOverloaded, SourceTimeout
from .._options import Ttl
from .._policy import Verdict, lease_backoff
from .._random import rng
from .._refusals import WRITES
from . import _reads, _revalidation, _writes
from ._concurrency import sleep
from ._redis_io import REDIS_ERRORS, new_token

if TYPE_CHECKING:
    from ._cache import AsyncCache

__all__ = ["NONE", "acquire_lease", "l1_stale", "lead_or_stale", "past_patience"]

NONE: Any = object()  # no in-process copy within max_stale
_monotonic = time.monotonic
_wall = time.time

Lead = tuple[Any, Callable[[], Awaitable[Any]] | None]


async def past_patience(
    cache: AsyncCache, key: str, loader: Callable[[], Any], waited: float
) -> Any:
    """A caller waited ``lease_wait`` for another caller's load of ``key`` here (as long
    as for another process's fill): a copy within max_stale, else a load of its own
    if a bulkhead slot is free now (returned, not filled: the leader holds the lease),
    else SourceTimeout. Never an unbounded wait behind a slow or hung loader."""
    cache._counters.lease_wait_timeouts += 1
    stale = l1_stale(cache, key)
    if stale is not NONE:
        return stale
    if not await cache._bulkhead.try_acquire():
        cache._counters.source_shed += 1
        raise SourceTimeout(key, waited, cache._bulkhead.limit)
    return (await cache._load(loader, acquired=True))[0]


async def lead_or_stale(
    cache: AsyncCache,
    key: str,
    loader: Callable[[], Any],
    ttl: Ttl,
    tags: tuple[str, ...],
    type: Any,
) -> Lead:
    """The value for every waiter of the flight, and the refresh this caller must run
    after handing it out (or None)."""
    try:
        return await _lead(cache, key, loader, ttl, tags, type)
    except SourceOverloaded:
        # The bulkhead is full: an in-process copy within max_stale beats an error.
        stale = l1_stale(cache, key)
        if stale is NONE:
            raise
        return stale, None


async def _lead(
    cache: AsyncCache,
    key: str,
    loader: Callable[[], Any],
    ttl: Ttl,
    tags: tuple[str, ...],
    type: Any,
) -> Lead:
    seq = cache._inv_seq
    refusals = cache._refusals
    if (
        cache._lease_on_read
        and cache._l2.lease_on_read
        # Writes refused (out of memory): a plain GET, with a lease-get once a second.
        and (not refusals.writes_until or refusals.allows(WRITES))
    ):
        leased = new_token()
        envelope = await _reads.read_or_lease(cache, key, type, leased)
        token: bytes | None = leased
    else:
        token = None
        envelope = await _reads.read(cache, key, type)
    if envelope is _reads.UNAVAILABLE:
        return await _without_redis(cache, key, loader, ttl, seq), None
    if envelope is _reads.LEASED or envelope is _reads.HELD:
        if _warming(cache):
            # Redis came back empty: serve the in-process copy (within max_stale)
            # while one caller per key refills it (see below).
            stale = l1_stale(cache, key)
            if stale is not NONE:
                if envelope is _reads.HELD:
                    return stale, None  # another caller is refilling it
                return stale, _revalidation.held(cache, key, loader, ttl, tags, seq, token)
        if envelope is _reads.LEASED:
            filled = await _load_and_fill(cache, key, loader, ttl, tags, type, seq, token=token)
        else:
            filled = await _load_and_fill(cache, key, loader, ttl, tags, type, seq, held=True)
        return filled, None
    force_lease = envelope is _reads.CORRUPT  # unusable bytes sit there: lease past them
    if envelope is not None and envelope is not _reads.CORRUPT:
        verdict = await _reads.judge(cache, envelope, xfetch=True)
        if verdict is None:
            return await _without_redis(cache, key, loader, ttl, seq), None
        if verdict is Verdict.FRESH:
            _reads.take(cache, key, envelope, verdict, seq)
            return envelope.value, None
        if verdict.wants_refresh:
            _reads.take(cache, key, envelope, verdict, seq)
            return envelope.value, await _revalidation.claim(
                cache, key, loader, ttl, tags, seq, envelope.raw[:HEADER_SIZE]
            )
        force_lease = True  # an invalidated entry sits there: lease past it
    elif _warming(cache):
        # Redis came back empty: serve the in-process copy (within max_stale) while
        # one caller per key refills it. Every copy predates the restart, so none
        # is trusted: invalidations sent while this process was not subscribed
        # (a queue replayed at the restart) may have missed it.
        stale = l1_stale(cache, key)
        if stale is not NONE:
            return stale, await _revalidation.claim(cache, key, loader, ttl, tags, seq, b"")
    filled = await _load_and_fill(cache, key, loader, ttl, tags, type, seq, force=force_lease)
    return filled, None


async def _without_redis(
    cache: AsyncCache, key: str, loader: Callable[[], Any], ttl: Ttl, seq: int
) -> Any:
    """Redis is unreachable: an in-process copy within max_stale, else the source.

    A value loaded here is kept in L1 as not-fresh (it cannot be invalidated
    while Redis is out), servable for max_stale counted from the moment the
    load began (a commit after that may be missing from it): one load per key
    per max_stale of outage, not one per read, and never a copy older than that.
    """
    stale = l1_stale(cache, key)
    if stale is not NONE:
        return stale
    began = _wall()
    value = (await cache._load(loader))[0]
    options = cache.options
    stored = options.ttl_for(ttl, value) is not None
    if stored and options.l1_size and options.max_stale and seq == cache._inv_seq:
        try:
            size = len(cache._envelopes.codec.encode(value))
        except Exception:
            return value  # not encodable: not cacheable either
        # Like any fill: not if an invalidation arrived while it loaded (it may be
        # older), checked again under L1's lock right before the put.
        cache._l1.put(
            key,
            value,
            expires=_monotonic(),
            fresh_until=began,
            size=size,
            unless=lambda: seq != cache._inv_seq,
        )
    return value


def l1_stale(cache: AsyncCache, key: str) -> Any:
    """This process's copy of ``key`` if it is at most ``max_stale`` past fresh, else NONE."""
    entry = cache._l1_map.get(key)
    if entry is None or _wall() - entry.fresh_until > cache.options.max_stale:
        return NONE
    cache._counters.stale_fallbacks += 1
    return entry.value


def _warming(cache: AsyncCache) -> bool:
    """Whether Redis may be refilling after a restart (or before we could tell)."""
    if _monotonic() < cache._warm_until:
        return True
    subscriber = cache._subscriber
    return cache._started and subscriber is not None and not subscriber.live


async def _load_and_fill(
    cache: AsyncCache,
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
    versions = await cache._stamps.versions(tags)
    if versions is None:
        if token is not None:
            _writes.release_soon(cache, key, token)
        return await _without_redis(cache, key, loader, ttl, seq)
    refused = False
    if cache.options.leases and token is None:
        refusals = cache._refusals
        if refusals.writes_until and not refusals.allows(WRITES):
            outcome, found = "refused", None  # no lease can be written: do not try
        else:
            outcome, found = await cache._acquire_lease(key, type, seq, force, held)
        if outcome == "value":
            return found
        token = found
        # Nobody can fill while Redis refuses writes: the fill below keeps the value
        # in process (L1) instead, so the next reads do not load it again.
        refused = outcome == "refused"
    value, seconds = await _writes.load_for_fill(cache, key, loader, token)
    if value is None and not cache.options.cache_none:
        if token is not None:
            await _writes.release(cache, key, token)
        return value
    if token is not None or not cache.options.leases or refused:
        await cache._fill(key, value, ttl, tags, versions, seconds, seq, token, strict=False)
    return value


async def acquire_lease(
    cache: AsyncCache, key: str, type: Any, seq: int, force: bool, held: bool
) -> tuple[str, Any]:
    """:meth:`AsyncCache._acquire_lease` (a method, so that tracing can wrap it)."""
    value_key, lease_key = cache._guarded_keys(key)
    token = new_token()
    mark = lease_mark(token)
    deadline = _monotonic() + cache.options.lease_wait_seconds
    attempt = 0
    counters = cache._counters
    if held:
        counters.lease_waits += 1
        await sleep(lease_backoff(attempt, rng.random()))
        attempt += 1
    while True:
        try:
            if force:
                got, raw = await cache._l2.get_or_lease(
                    value_key, lease_key, token, cache._lease_px, True
                )
            else:
                raw, refreshing = await cache._l2.poll_lease(
                    value_key, lease_key, mark, cache._lease_px
                )
                got = raw is None and not refreshing
        except REDIS_ERRORS as exc:
            if cache._redis_failed(exc) == WRITES:
                return "refused", None
            return "none", None
        if raw is not None and is_lease_mark(raw):
            force = False  # someone's lease in the value slot: wait for its fill
        elif raw is not None:
            envelope = _reads.decode(cache, raw, type, count=False)
            verdict = (
                None if envelope is None else await _reads.judge(cache, envelope, xfetch=False)
            )
            if envelope is not None and verdict is not None and verdict.serveable:
                if got:
                    await _writes.release(cache, key, token)
                _reads.take(cache, key, envelope, verdict, seq)
                return "value", envelope.value
            force = True  # unusable bytes in Redis: do not wait for them to expire
        if got:
            return "lease", token
        if attempt == 0:
            counters.lease_waits += 1
        if _monotonic() >= deadline:
            counters.lease_wait_timeouts += 1
            return "none", None
        await sleep(lease_backoff(attempt, rng.random()))
        attempt += 1
