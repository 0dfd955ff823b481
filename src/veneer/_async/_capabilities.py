"""What a Redis that answers still refuses a cache, and what the cache does about it
(``veneer/_sync/_capabilities.py`` is generated from this file).

A refusal (out of memory with ``noeviction``; an ACL user without ``EVALSHA`` or
``PUBLISH``) is an answer, not an outage: ``veneer._refusals`` names it and paces
the retries; this module probes for refusals at ``check()`` and applies what a
refused capability means to the cache's in-process tier.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from redis.exceptions import ResponseError as RefusedByRedis

from .. import _refusals
from .._errors import RedisUnavailable, describe_redis_failure
from .._refusals import WRITES, classify
from . import _redis_io
from ._redis_io import REDIS_ERRORS
from ._stamps import new_version

if TYPE_CHECKING:
    from ._cache import AsyncCache

__all__ = ["broadcast_back", "check", "refused"]

log = logging.getLogger("veneer")


async def check(cache: AsyncCache) -> tuple[str, ...]:
    """Ping, then probe for refusals: one sentence per refused capability."""
    try:
        await cache._l2.ping()
    except Exception as exc:
        where = cache._l2.describe()
        raise RedisUnavailable(describe_redis_failure(exc, where)) from exc
    await _probe(cache)
    return cache._refusals.reasons()


async def _probe(cache: AsyncCache) -> None:
    """One round trip of what reads, fills and invalidations need: the namespace stamp's
    ``SET NX`` (a write, refused out of memory), an ``EVALSHA`` of a script that is not
    loaded (``NOSCRIPT`` if scripts are allowed) and an empty ``PUBLISH`` on the
    channel (other processes ignore it)."""
    layout = cache._layout
    epoch = layout.epoch_key.encode()
    probes: list[tuple[str, bytes, bytes]] = [
        (
            WRITES,
            epoch,
            _redis_io.pack("SET", epoch, new_version(), "NX", "EX", cache._stamps.redis_expiry),
        ),
        (_refusals.SCRIPTS, epoch, _redis_io.pack("EVALSHA", "0" * 40, 0)),
    ]
    if cache.options.broadcast:
        publish = "SPUBLISH" if await cache._l2.sharded_broadcast() else "PUBLISH"
        probes.append(
            (
                _refusals.PUBLISH,
                layout.published_key.encode(),
                _redis_io.pack(publish, layout.channel.encode(), b""),
            )
        )
    try:
        replies = await cache._l2.answers([(key, packed) for _, key, packed in probes])
    except REDIS_ERRORS as exc:
        cache._redis_failed(exc)
        return
    for (capability, _, _), reply in zip(probes, replies, strict=True):
        found = classify(reply) if isinstance(reply, RefusedByRedis) else None
        if found is not None:
            refused(cache, found, reply)
        elif cache._refusals.refusing(capability):
            cache._refusals.accepted(capability)
            if capability == _refusals.PUBLISH:
                broadcast_back(cache)


def refused(cache: AsyncCache, capability: str, exc: BaseException) -> None:
    """Redis answered with a refusal: counted apart from errors, and warned about once
    per ``error_log_interval`` per capability (a full Redis refuses every write)."""
    cache._counters.redis_refusals += 1
    message = cache._refusals.refused(capability, exc)
    if message is not None:
        log.warning("veneer[%s]: %s", cache.options.namespace, message)
    if capability == _refusals.PUBLISH and cache._subscriber is not None:
        # Our invalidations reach no other process, and theirs (the same user's,
        # most likely) none: in-process copies could outlive a write by l1_ttl.
        # Every read goes to Redis instead, until a PUBLISH is taken again.
        cache._l1_live = False
        cache._inv_seq += 1
        cache._l1.clear()


def broadcast_back(cache: AsyncCache) -> None:
    """PUBLISH is taken again: L1 as usual once subscribed."""
    subscriber = cache._subscriber
    if subscriber is not None and subscriber.live:
        cache._l1_live = cache.options.l1_size > 0
