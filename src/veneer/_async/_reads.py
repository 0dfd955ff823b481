"""Reads of one entry from Redis, for the asyncio front (``veneer/_sync/_reads.py`` is
generated from this file): a GET or a lease-get, the envelope decoded (bytes that do
not decode are a counted miss), judged against the stamps, and counted when served.

What an entry means (fresh, stale, invalidated) is decided in ``veneer._policy``;
these functions fetch what it needs and count the outcome.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError as RefusedByRedis

from .._codec import CorruptEntry, Envelope, is_lease_mark, lease_mark
from .._policy import Verdict
from .._policy import judge as judge_entry
from .._random import rng
from .._refusals import WRITES, classify
from . import _capabilities, _entries
from ._redis_io import REDIS_ERRORS

if TYPE_CHECKING:
    from ._cache import AsyncCache

__all__ = [
    "CORRUPT",
    "HELD",
    "LEASED",
    "UNAVAILABLE",
    "decode",
    "judge",
    "read",
    "read_or_lease",
    "take",
]

log = logging.getLogger("veneer")

UNAVAILABLE: Any = object()  # Redis did not answer
CORRUPT: Any = object()  # bytes that do not decode sit under the key
LEASED: Any = object()  # a miss, and this caller's lease-get took the lease
HELD: Any = object()  # a miss, and another caller holds the lease
_wall = time.time


async def read(cache: AsyncCache, key: str, type: Any) -> Any:
    """One GET: an :class:`Envelope`, ``None`` on a miss, ``CORRUPT`` for bytes that
    do not decode, or ``UNAVAILABLE``."""
    started = time.perf_counter()
    try:
        raw = await cache._l2.get(cache._layout.value(key).encode())
    except REDIS_ERRORS as exc:
        cache._redis_failed(exc)
        return UNAVAILABLE
    cache._l2_latency.record(time.perf_counter() - started)
    if raw is None or is_lease_mark(raw):  # a mark: someone is loading it
        cache._counters.l2_misses += 1
        return None
    envelope = decode(cache, raw, type)
    return CORRUPT if envelope is None else envelope


async def read_or_lease(cache: AsyncCache, key: str, type: Any, token: bytes) -> Any:
    """The lease-get: like :func:`read`, but a miss takes the lease in the same round
    trip (``LEASED``), or finds another caller's (``HELD``)."""
    started = time.perf_counter()
    try:
        raw, refreshing = await cache._l2.lease_get(
            *cache._guarded_keys(key), lease_mark(token), cache._lease_px
        )
    except RefusedByRedis as exc:
        # Redis refuses the write (out of memory, no permission): plain reads, which
        # still serve what is cached, with a lease-get once a second (see _misses.lead).
        _capabilities.refused(cache, classify(exc) or WRITES, exc)
        return await read(cache, key, type)
    except REDIS_ERRORS as exc:
        cache._redis_failed(exc)
        return UNAVAILABLE
    cache._l2_latency.record(time.perf_counter() - started)
    if cache._refusals.writes_until:
        cache._refusals.accepted(WRITES)  # it took our lease (or found an entry): back
    if raw is None or is_lease_mark(raw):
        cache._counters.l2_misses += 1
        return LEASED if raw is None and not refreshing else HELD
    envelope = decode(cache, raw, type)
    return CORRUPT if envelope is None else envelope


def decode(cache: AsyncCache, raw: bytes, type: Any, *, count: bool = True) -> Envelope | None:
    """The envelope in ``raw``, or None (a counted miss) for bytes that do not decode."""
    try:
        envelope = cache._envelopes.decode(raw, type)
    except CorruptEntry as exc:
        if count:  # a lease attempt re-reads the same bytes: count them once
            cache._counters.corrupt_entries += 1
            cache._counters.l2_misses += 1
        log.debug("veneer: unreadable entry treated as a miss: %s", exc)
        return None
    envelope.size = len(raw)
    envelope.raw = raw
    return envelope


async def judge(cache: AsyncCache, envelope: Envelope, *, xfetch: bool) -> Verdict | None:
    """The entry's verdict, or None when Redis failed while fetching stamps."""
    versions = await cache._stamps.versions(tuple(envelope.tags))
    if versions is None:
        return None
    beta = cache.options.xfetch_beta if xfetch else 0.0
    verdict = judge_entry(envelope, _wall(), *versions, beta, 1.0 - rng.random())
    if verdict is Verdict.INVALID:
        cache._counters.stale_rejected += 1
        cache._counters.l2_misses += 1
    return verdict


def take(cache: AsyncCache, key: str, envelope: Envelope, verdict: Verdict, seq: int) -> None:
    """Count a served entry; a fresh one also goes into L1."""
    if verdict is Verdict.STALE:
        cache._counters.stale_served += 1
        return
    cache._counters.l2_hits += 1
    if cache._l1_live:
        _entries.remember(
            cache,
            key,
            envelope.value,
            envelope.fresh_until - _wall(),
            envelope.size,
            tuple(envelope.tags),
            seq,
        )
