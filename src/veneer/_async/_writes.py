"""Writes to Redis, for the asyncio front (``veneer/_sync/_writes.py`` is generated
from this file): an explicit ``set``, the fill of a loaded value (a compare-and-set
on its lease), the lease's release, and the bounded registry of filled keys that
``veneer verify`` samples.

A write that Redis refuses (out of memory) or cannot take (unreachable) keeps what
it can in process and queues an invalidation where a stale copy could survive.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._codec import lease_mark
from .._keys import check_key, check_tags
from .._options import Ttl
from .._refusals import WRITES
from . import _entries
from ._concurrency import call_later
from ._redis_io import REDIS_ERRORS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._cache import AsyncCache, Versions

__all__ = ["fill", "load_for_fill", "recent_keys", "release", "release_soon", "write"]

_wall = time.time


async def write(
    cache: AsyncCache, key: str, value: Any, ttl: float | None, tags: Sequence[str], site: Any
) -> None:
    """:meth:`AsyncCache.set`; ``site`` is the caller's code object (for type drift)."""
    check_key(key)
    ttl_s = cache.options.resolve_ttl(ttl)
    tag_list = check_tags(tags)
    # Every check that can refuse the value runs before anything changes.
    payload = _entries.prepare(cache, key, value, strict=True)
    if cache._drift.watching(site):
        cache._drift.check(site, key, value, cache.options.namespace)
    cache._start()
    cache._inv_seq += 1
    cache._l1.discard(key)
    versions = await cache._stamps.versions(tag_list)
    if versions is None:
        cache._invalidations.queue(("k", key))
        return
    encoded = _entries.encode(
        cache, key, value, ttl_s, tag_list, versions, 0.0, strict=True, payload=payload
    )
    assert encoded is not None  # strict: raises instead
    data, px, _fresh = encoded
    try:
        await cache._l2.set_and_revoke(*cache._guarded_keys(key), data, px)
    except REDIS_ERRORS as exc:
        cache._redis_failed(exc)
        cache._invalidations.queue(("k", key))
        return
    finally:
        # Reads that began before the write landed may hold the old value.
        cache._inv_seq += 1
        cache._l1.discard(key)
    await cache._invalidations.publish("k", key, 0)


async def fill(
    cache: AsyncCache,
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
    encoded = _entries.encode(cache, key, value, ttl, tags, versions, seconds, strict=strict)
    if encoded is None:
        if token is not None:
            await release(cache, key, token)
        return False
    data, px, fresh_seconds = encoded
    value_key, lease_key = cache._guarded_keys(key)
    refusals = cache._refusals
    if token is None and refusals.writes_until and not refusals.allows(WRITES):
        # Redis refuses writes (out of memory): keep it in process, try again later.
        _entries.remember(cache, key, value, fresh_seconds, len(data), tags, seq)
        return False
    try:
        if token is None:
            await cache._l2.set(value_key, data, px)
        elif not await cache._l2.fill_with_lease(
            value_key, lease_key, token, lease_mark(token), data, px
        ):
            # Revoked by an invalidation (or expired): the value may predate it.
            cache._counters.fills_refused += 1
            return False
    except REDIS_ERRORS as exc:
        if cache._redis_failed(exc) == WRITES:
            # Loaded and judged like any fill (an invalidation since bumped seq, and
            # one heard later discards it): L1 holds it so reads do not load again.
            _entries.remember(cache, key, value, fresh_seconds, len(data), tags, seq)
        return False
    if refusals.writes_until:
        refusals.accepted(WRITES)
    _entries.remember(cache, key, value, fresh_seconds, len(data), tags, seq)
    await _record_fill(cache, key)
    return True


async def release(cache: AsyncCache, key: str, token: bytes) -> None:
    """Free the lease ``token`` holds on ``key`` (if it still does)."""
    try:
        await cache._l2.release_lease(*cache._guarded_keys(key), token, lease_mark(token))
    except REDIS_ERRORS as exc:
        cache._redis_failed(exc)  # the lease expires by itself after lease_heartbeat


def release_soon(cache: AsyncCache, key: str, token: bytes) -> None:
    """Release in the background: for a caller that must not wait on Redis (cancelled)."""

    async def release_it() -> None:
        await release(cache, key, token)

    call_later(0.0, release_it)


async def load_for_fill(
    cache: AsyncCache, key: str, loader: Callable[[], Any], token: bytes | None
) -> tuple[Any, float]:
    """Load ``key``'s value to fill it, under the lease ``token`` if there is one: the
    keeper renews the lease while the load runs, a failed load frees the key for the
    next caller now, and a cancelled one without making its caller wait for Redis."""
    if token is None:
        return await cache._load(loader)
    value_key, lease_key = cache._guarded_keys(key)
    handle = cache._keeper.hold(value_key, lease_key, token, lease_mark(token))
    try:
        return await cache._load(loader)
    except Exception:
        cache._keeper.drop(handle)
        await release(cache, key, token)
        raise
    except BaseException:
        cache._keeper.drop(handle)
        release_soon(cache, key, token)
        raise
    finally:
        cache._keeper.drop(handle)


async def _record_fill(cache: AsyncCache, key: str) -> None:
    """Keep 1 in ``registry_every`` filled keys in a bounded registry for ``veneer verify``."""
    every = cache.options.registry_every
    if not every:
        return
    cache._fills += 1
    if cache._fills % every:
        return
    try:
        await cache._l2.record_key(cache._registry_key, key, _wall(), cache._stamps.redis_expiry)
    except REDIS_ERRORS as exc:
        cache._redis_failed(exc)


async def recent_keys(cache: AsyncCache, limit: int) -> list[str]:
    """:meth:`AsyncCache.recent_keys`."""
    try:
        return await cache._l2.recent_keys(cache._registry_key, min(limit, 1000))
    except REDIS_ERRORS as exc:
        cache._redis_failed(exc)
        return []
