"""What the invalidation channel tells a cache about its in-process copies
(``veneer/_sync/_channel.py`` is generated from this file).

The subscriber (``_broadcast``) keeps the connection; these are its callbacks,
bound to one cache: a message drops the copies it names, a resubscription
drops every copy if invalidations were missed meanwhile, a pong extends how
long the copies are trusted as fresh, a lost channel stops trusting them. The
state stays on the cache, where the hit path reads it (``_l1_trust``,
``_l1_live``, ``_inv_seq``).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from .. import _refusals
from ._concurrency import sleep
from ._invalidations import decode_message
from ._redis_io import REDIS_ERRORS

if TYPE_CHECKING:
    from ._cache import AsyncCache

__all__ = ["catch_up", "on_current", "on_lost", "on_message", "on_tick", "ready", "resync"]

log = logging.getLogger("veneer")

_monotonic = time.monotonic
_wall = time.time


def on_message(cache: AsyncCache, data: bytes) -> None:
    """An invalidation published by any process, this one's included."""
    message = decode_message(data)
    if message is None:
        return
    if cache._published is not None:
        cache._published += 1  # every message counts, this process's own too
    if message[0] == cache._sender:
        return
    _sender, kind, name, version = message
    cache._counters.invalidations_received += 1
    cache._inv_seq += 1
    if kind == "k":
        cache._l1.discard(name)
    elif kind == "t":
        cache._stamps.learn(cache._layout.tag(name), version)
        cache._l1.discard_tag(name)
    elif kind == "e":
        cache._stamps.learn(cache._layout.epoch_key, version)
        cache._l1.clear()


def resync(cache: AsyncCache) -> None:
    """Invalidations may have been missed (the channel lost, regained, or behind): no L1
    copy loaded before this may be kept. Counted apart in ``_resyncs``, so that a caller
    still shares a load in flight (it knows of no newer write)."""
    cache._resyncs += 1
    cache._inv_seq += 1


async def on_live(cache: AsyncCache) -> None:
    """Subscribed (again): catch up, learn whether Redis restarted, trust L1 again."""
    resync(cache)
    await catch_up(cache)
    subscriber = cache._subscriber
    assert subscriber is not None
    # Subscribed since ``heard``: what was published before is covered by catch_up.
    on_current(cache, subscriber.heard)
    try:
        run_id = await cache._l2.run_id()
    except REDIS_ERRORS as exc:
        cache._redis_failed(exc)
        run_id = ""
    if run_id:
        if cache._run_id is not None and run_id != cache._run_id:
            # Restarted, so probably empty: keep serving L1 copies while keys refill.
            cache._counters.cold_restarts += 1
            cache._warm_until = _monotonic() + cache.options.restart_warmup
            log.warning("veneer[%s]: Redis restarted; refilling", cache.options.namespace)
        cache._run_id = run_id
    cache._l1_live = cache.options.l1_size > 0 and not cache._refusals.refusing(_refusals.PUBLISH)
    await on_tick(cache)


async def catch_up(cache: AsyncCache) -> None:
    """On a resubscription: drop every L1 copy if invalidations were published while
    this process was not subscribed (a queue replayed by another process right after
    Redis came back, say). The published count tells: it moved by more than the
    messages this process received. Nothing missed: the copies stay, for warm-up."""
    try:
        published: int | None = await cache._l2.published(cache._layout.published_key.encode())
    except REDIS_ERRORS as exc:
        cache._redis_failed(exc)
        published = None
    if cache._subscribed_before and (published is None or published != cache._published):
        cache._counters.invalidations_missed += 1
        resync(cache)
        cache._l1.clear()
    cache._subscribed_before = True
    cache._published = published


def on_current(cache: AsyncCache, sent: float) -> None:
    """Every invalidation published before ``sent`` (monotonic) has been applied."""
    cache._l1_trust = max(cache._l1_trust, sent + cache._trust_seconds)


def on_lost(cache: AsyncCache) -> None:
    """The channel is gone: L1 copies are not fresh any more, from when it last answered."""
    cache._l1_live = False
    cache._l1_trust = 0.0
    resync(cache)
    cache._stamps.forget()
    # The copies were vouched for until the channel last answered, not until the
    # loss was noticed (up to max(1 s, 4 x redis_timeout) later): max_stale counts
    # from then.
    now = _monotonic()
    subscriber = cache._subscriber
    heard = now if subscriber is None else min(now, subscriber.heard)
    cache._l1.expire_all(now, _wall() - (now - heard))


async def on_tick(cache: AsyncCache) -> None:
    """Periodic work of the subscriber: retry queued invalidations."""
    if cache._invalidations.pending:
        await cache._invalidations.drain()


async def ready(cache: AsyncCache, timeout: float) -> bool:
    """Wait until the cache hears other processes' invalidations (or ``timeout``)."""
    cache._start()
    subscriber = cache._subscriber
    if subscriber is None:
        return True
    deadline = _monotonic() + timeout
    while not subscriber.live:
        if _monotonic() >= deadline:
            return False
        await sleep(0.005)
    return True
