"""Refreshes of a stale entry (or one XFetch finds due early, or one missing after
an empty restart) that a reader triggers and does not wait for, for the asyncio front
(``veneer/_sync/_revalidation.py`` is generated from this file).

One caller per key wins the refresh lease (``claim``) or already holds it from its
read (``held``); the others keep serving the old value. A refresh that fails keeps
the old value until its stale TTL runs out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from . import _writes
from ._redis_io import REDIS_ERRORS, new_token

if TYPE_CHECKING:
    from .._options import Ttl
    from ._cache import AsyncCache

__all__ = ["FAILED", "claim", "held"]

FAILED: Any = object()  # what a refresh returns when it failed (the old value stays)


async def claim(
    cache: AsyncCache,
    key: str,
    loader: Callable[[], Any],
    ttl: Ttl,
    tags: tuple[str, ...],
    seq: int,
    expected_head: bytes,
) -> Callable[[], Awaitable[Any]] | None:
    """For an entry that is stale (or due early, XFetch), or missing after a restart:
    the refresh this caller won, or None when another caller holds the refresh lease,
    the entry changed since it was read, or Redis failed."""
    token = new_token()
    if cache.options.leases:
        try:
            claimed = await cache._l2.claim_refresh(
                *cache._guarded_keys(key), token, cache._lease_px, expected_head
            )
            if not claimed:
                return None
        except REDIS_ERRORS as exc:
            cache._redis_failed(exc)
            return None
    return held(cache, key, loader, ttl, tags, seq, token if cache.options.leases else None)


async def _run(
    cache: AsyncCache,
    key: str,
    loader: Callable[[], Any],
    ttl: Ttl,
    tags: tuple[str, ...],
    seq: int,
    token: bytes | None,
) -> Any:
    """Load and fill; a failure keeps the old value (until its stale TTL runs out)."""
    versions = await cache._stamps.versions(tags)
    try:
        if versions is None:
            if token is not None:
                await _writes.release(cache, key, token)
            raise ConnectionError("Redis unavailable for the refresh")
        # Under its lease, a failed load frees the key at once.
        value, seconds = await _writes.load_for_fill(cache, key, loader, token)
    except Exception as exc:
        cache._counters.refresh_errors += 1
        cache._warn(f"refresh of {key!r} failed, the old value stays: {exc!r}")
        return FAILED
    await cache._fill(key, value, ttl, tags, versions, seconds, seq, token, strict=False)
    return value


def held(
    cache: AsyncCache,
    key: str,
    loader: Callable[[], Any],
    ttl: Ttl,
    tags: tuple[str, ...],
    seq: int,
    token: bytes | None,
) -> Callable[[], Awaitable[Any]]:
    """The refresh of a key whose lease this caller already holds."""
    cache._counters.refreshes += 1

    async def refresh() -> Any:
        return await _run(cache, key, loader, ttl, tags, seq, token)

    return refresh
