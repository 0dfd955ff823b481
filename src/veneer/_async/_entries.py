"""Entries: a value encoded and sealed for Redis, and a loaded value kept in L1, for
the asyncio front (``veneer/_sync/_entries.py`` is generated from this file).

What goes in an entry is decided in ``veneer._policy`` (``plan_fill``) and
``veneer._codec``; these functions apply the cache's options, count what was not
cached, and decide whether an L1 copy may still go in (no invalidation since the read).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .._codec import EntryTooLarge, Payload
from .._errors import UnencodableValue, ValueTooLarge
from .._options import Ttl
from .._policy import plan_fill

if TYPE_CHECKING:
    from ._cache import AsyncCache, Versions

__all__ = ["encode", "keep_in_l1", "prepare", "remember", "too_large"]

_monotonic = time.monotonic
_wall = time.time


def prepare(cache: AsyncCache, key: str, value: Any, *, strict: bool) -> Payload | None:
    """The codec's work on ``value``. Whatever it raises (TypeError, OverflowError for
    an int msgpack cannot hold, RecursionError for deep nesting, a custom codec's own
    error), a fill does not cache the value and returns it (None here); an explicit
    ``set`` (strict) raises UnencodableValue or ValueTooLarge."""
    try:
        return cache._envelopes.prepare(value)
    except EntryTooLarge as exc:
        too_large(cache, key, exc.size, strict)
        return None
    except Exception as exc:
        if strict:
            raise UnencodableValue(
                f"value for key {key!r} cannot be encoded with codec "
                f"{cache._envelopes.codec.name!r}: {exc.__class__.__name__}: {exc}"
            ) from None
        cache._counters.not_cached_unencodable += 1
        cache._warn(f"value for key {key!r} not cached: codec cannot encode it ({exc!r})")
        return None


def too_large(cache: AsyncCache, key: str, size: int, strict: bool) -> None:
    limit = cache.options.max_value_bytes
    if strict:
        raise ValueTooLarge(key, size, limit)
    cache._counters.not_cached_too_large += 1
    cache._warn(
        f"value for key {key!r} not cached: {size} bytes encoded, above max_value_bytes={limit}"
    )


def encode(
    cache: AsyncCache,
    key: str,
    value: Any,
    ttl: Ttl,
    tags: tuple[str, ...],
    versions: Versions,
    seconds: float,
    *,
    strict: bool,
    payload: Payload | None = None,
) -> tuple[bytes, int, float] | None:
    opts = cache.options
    ttl_s = opts.ttl_for(ttl, value)
    if ttl_s is None:
        return None  # the TTL function chose not to store this value
    epoch, tag_versions = versions
    plan = plan_fill(
        now=_wall(),
        ttl=ttl_s,
        jitter=opts.jitter,
        negative=value is None,
        negative_ttl=opts.negative_ttl,
        stale_ttl=opts.stale_ttl,
    )
    if payload is None:
        payload = prepare(cache, key, value, strict=strict)
        if payload is None:
            return None
    try:
        data = cache._envelopes.seal(
            payload,
            fresh_until=plan.fresh_until,
            load_seconds=seconds,
            ns_epoch=epoch,
            tags=[(tag, tag_versions[tag]) for tag in tags],
        )
    except EntryTooLarge as exc:
        too_large(cache, key, exc.size, strict)
        return None
    return data, plan.px, plan.fresh_seconds


def keep_in_l1(
    cache: AsyncCache,
    key: str,
    value: Any,
    ttl: Ttl,
    tags: tuple[str, ...],
    versions: Versions,
    seconds: float,
    seq: int,
) -> None:
    """A loaded value that Redis would not take (it refuses writes): into L1 only."""
    if value is None and not cache.options.cache_none:
        return
    encoded = encode(cache, key, value, ttl, tags, versions, seconds, strict=False)
    if encoded is not None:
        data, _px, fresh_seconds = encoded
        remember(cache, key, value, fresh_seconds, len(data), tags, seq)


def remember(
    cache: AsyncCache,
    key: str,
    value: Any,
    fresh_seconds: float,
    size: int,
    tags: tuple[str, ...],
    seq: int,
) -> None:
    """A value read or loaded at invalidation sequence ``seq`` into L1, unless an
    invalidation came since then or L1 is not trusted now."""
    if cache._l1_live and seq == cache._inv_seq and fresh_seconds > 0:
        now = _wall()
        cache._l1.put(
            key,
            value,
            expires=_monotonic() + min(cache.options.l1_ttl, fresh_seconds),
            # Without a broadcast nothing vouches for the copy after this read, so
            # as an outage fallback it counts as stale from now (max_stale from here).
            fresh_until=now + fresh_seconds if cache._subscriber is not None else now,
            size=size,
            tags=tags,
            # Checked again under L1's lock: an invalidation between the check
            # above and the put must not let the older value in.
            unless=lambda: seq != cache._inv_seq or not cache._l1_live,
        )
