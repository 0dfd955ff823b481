"""``refresh``: load a key now and replace its entry, the current entry staying readable
(``veneer/_sync/_refresh.py`` is generated from this file).

This is the revalidation a caller decides on by itself (an HTTP cache whose
response went stale by its own rules, say), where ``get_or_load`` would return
the stored value. The fill is guarded exactly like a miss's: tag and namespace
versions are read before the load, the key's lease is taken, and an
invalidation during the load refuses the fill.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .._keys import check_key, check_tags
from .._txn import bypasses
from .._txn import open_marks as _open_marks
from . import _writes
from ._redis_io import REDIS_ERRORS, new_token

if TYPE_CHECKING:
    from .._options import Ttl
    from ._cache import AsyncCache

__all__ = ["refresh"]


async def refresh(
    cache: AsyncCache,
    key: str,
    loader: Callable[[], Any],
    ttl: Ttl | None,
    tags: Sequence[str],
    default: Any,
) -> Any:
    check_key(key)
    ttl_s: Ttl = ttl if callable(ttl) else cache.options.resolve_ttl(ttl)
    tag_list = check_tags(tags)
    marks = _open_marks.get()
    if marks and bypasses(marks, cache.options.namespace, key, tag_list):
        return (await cache._load(loader))[0]
    cache._start()
    seq = cache._inv_seq
    versions = await cache._stamps.versions(tag_list)
    if versions is None:
        # Redis is unreachable: nothing can be coordinated or stored; the caller
        # asked for the source's answer, so it gets it.
        return (await cache._load(loader))[0]
    token: bytes | None = None
    if cache.options.leases:
        token = new_token()
        value_key, lease_key = cache._guarded_keys(key)
        try:
            # force=True: take the lease whatever the entry holds (it is being replaced).
            got, _raw = await cache._l2.get_or_lease(
                value_key, lease_key, token, cache._lease_px, True
            )
        except REDIS_ERRORS as exc:
            cache._redis_failed(exc)
            return (await cache._load(loader))[0]
        if not got:
            return default  # another caller is loading this key right now
    cache._counters.refreshes += 1
    value, seconds = await _writes.load_for_fill(cache, key, loader, token)
    if value is None and not cache.options.cache_none:
        if token is not None:
            await _writes.release(cache, key, token)
        return value
    # As ``set`` does: this process's copy of the old value is dropped before and after
    # the write (a read racing the write cannot put the old value back), and the other
    # processes drop theirs when the new one has landed.
    cache._inv_seq += 1
    cache._l1.discard(key)
    try:
        filled = await cache._fill(
            key, value, ttl_s, tag_list, versions, seconds, seq, token, strict=False
        )
    finally:
        cache._inv_seq += 1
        cache._l1.discard(key)
    if filled:
        await cache._invalidations.publish("k", key, 0)
    return value
