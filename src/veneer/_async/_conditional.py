"""Conditional writes of the asyncio front: ``add``, ``touch`` and ``incr``
(``veneer/_sync/_conditional.py`` is generated from this file).

Each one reads the entry, judges it like a read does (an entry of an older
namespace epoch or tag version is not there), and writes with a compare-and-set
script on the entry's slot: the write lands only if the entry is still the one
judged. So they stay atomic across processes on one Redis and on a cluster
(one key, one slot), without teaching a script the envelope or the stamps.

The envelope header identifies a write (its ``fresh_until`` is a wall-clock
instant of that write): ``add`` and ``touch`` compare the header only. ``incr``
keeps the entry's expiry, so its header does not change: it compares the whole
entry (a number, a few bytes).
"""

from __future__ import annotations

import struct
import time
import weakref
from typing import TYPE_CHECKING, Any

from .._codec import HEADER_SIZE
from .._errors import RedisUnavailable, VeneerError
from .._keys import check_key, check_tags
from .._policy import lease_backoff, plan_fill
from .._random import rng
from .._txn import open_marks as _open_marks
from . import _entries, _reads
from ._concurrency import sleep
from ._redis_io import REDIS_ERRORS

if TYPE_CHECKING:
    from ._cache import AsyncCache

__all__ = ["add", "get_local", "incr", "touch"]

_monotonic = time.monotonic
_wall = time.time

# fresh_until (f64) follows the format version and flags bytes (see veneer._codec).
_FRESH_OFFSET = 2
_FRESH = struct.Struct("<d")

# Writes ARGV[2] (PX ARGV[3]) if the entry is absent or still starts with the header
# ARGV[1] ('' means: only if absent); revokes fills in flight like every write.
ADD = """
local v = redis.call('GET', KEYS[1])
if v and (ARGV[1] == '' or string.sub(v, 1, string.len(ARGV[1])) ~= ARGV[1]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[2])
return 1
"""
# Replaces the entry ARGV[1] by ARGV[2], keeping its expiry.
REPLACE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
redis.call('DEL', KEYS[2])
return 1
"""
# Gives the entry whose header is ARGV[1] the fresh_until ARGV[2] and the expiry ARGV[3].
TOUCH = """
if redis.call('GETRANGE', KEYS[1], 0, string.len(ARGV[1]) - 1) ~= ARGV[1] then return 0 end
redis.call('SETRANGE', KEYS[1], 2, ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

_ADD_TRIES = 3
_INCR_SECONDS = 2.0

_scripts: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def _script(cache: AsyncCache, source: str) -> Any:
    """The client's registered script (EVALSHA, loaded on first use)."""
    scripts = _scripts.get(cache._l2)
    if scripts is None:
        scripts = _scripts[cache._l2] = {}
    script = scripts.get(source)
    if script is None:
        script = scripts[source] = cache._l2.client.register_script(source)
    return script


def get_local(cache: AsyncCache, key: str, default: Any) -> Any:
    """This process's fresh L1 copy of ``key``, or ``default``: never any I/O."""
    entry = cache._l1_map.get(key)
    if (
        entry is not None
        and entry.expires > _monotonic() < cache._l1_trust
        and not _open_marks.get()
    ):
        entry.visited = True
        cache._counters.l1_hits += 1
        return entry.value
    return default


class _NoStamps(Exception):
    """The tag or namespace stamps could not be read (already counted by the stamp book)."""


async def _current(cache: AsyncCache, key: str) -> tuple[Any, Any]:
    """``(raw, envelope)`` of the entry as a read would judge it: ``envelope`` is None when
    no live entry is there (absent, unreadable, or invalidated). Raises REDIS_ERRORS."""
    keys = cache._guarded_keys(key)
    raw = await cache._l2.get(keys[0])
    if raw is None:
        return None, None
    envelope = _reads.decode(cache, raw, None, count=False)
    if envelope is None:
        return raw, None
    verdict = await _reads.judge(cache, envelope, xfetch=False)
    if verdict is None:
        raise _NoStamps
    return raw, envelope if verdict.serveable else None


async def _written(cache: AsyncCache, key: str, ok: bool) -> bool:
    # Reads that began before the write may hold the old value: keep it out of L1.
    cache._inv_seq += 1
    cache._l1.discard(key)
    if ok:
        await cache._invalidations.publish("k", key, 0)
    return ok


async def add(cache: AsyncCache, key: str, value: Any, ttl: float | None, tags: Any, /) -> bool:
    check_key(key)
    ttl_s = cache.options.resolve_ttl(ttl)
    tag_list = check_tags(tags)
    payload = _entries.prepare(cache, key, value, strict=True)
    assert payload is not None  # strict: raises instead
    cache._start()
    value_key, lease_key = cache._guarded_keys(key)
    try:
        for _ in range(_ADD_TRIES):
            raw, envelope = await _current(cache, key)
            if envelope is not None:
                return False
            versions = await cache._stamps.versions(tag_list)
            if versions is None:
                return False
            encoded = _entries.encode(
                cache, key, value, ttl_s, tag_list, versions, 0.0, strict=True, payload=payload
            )
            assert encoded is not None
            data, px, _fresh = encoded
            cache._inv_seq += 1
            cache._l1.discard(key)
            expected = b"" if raw is None else raw[:HEADER_SIZE]
            ok = await cache._l2._call_on(
                [value_key],
                _script(cache, ADD),
                keys=[value_key, lease_key],
                args=[expected, data, px],
            )
            if await _written(cache, key, bool(ok)):
                return True
            # Another write landed between the read and the script: judge it again.
    except _NoStamps:
        pass
    except REDIS_ERRORS as exc:
        cache._redis_failed(exc)
    return False


async def touch(cache: AsyncCache, key: str, ttl: float | None, /) -> bool:
    check_key(key)
    ttl_s = cache.options.resolve_ttl(ttl)
    cache._start()
    value_key = cache._guarded_keys(key)[0]
    opts = cache.options
    try:
        raw, envelope = await _current(cache, key)
        if envelope is None:
            return False
        plan = plan_fill(
            now=_wall(),
            ttl=ttl_s,
            jitter=opts.jitter,
            negative=envelope.negative,
            negative_ttl=opts.negative_ttl,
            stale_ttl=opts.stale_ttl,
        )
        ok = await cache._l2._call_on(
            [value_key],
            _script(cache, TOUCH),
            keys=[value_key],
            args=[raw[:HEADER_SIZE], _FRESH.pack(plan.fresh_until), plan.px],
        )
    except _NoStamps:
        return False
    except REDIS_ERRORS as exc:
        cache._redis_failed(exc)
        return False
    return await _written(cache, key, bool(ok))


async def incr(cache: AsyncCache, key: str, delta: int, /) -> int:
    check_key(key)
    if isinstance(delta, bool) or not isinstance(delta, int):
        raise TypeError(f"incr takes an int delta, got {delta.__class__.__name__}: {delta!r}")
    cache._start()
    value_key, lease_key = cache._guarded_keys(key)
    deadline = _monotonic() + _INCR_SECONDS
    attempt = 0
    while True:
        try:
            raw, envelope = await _current(cache, key)
        except (_NoStamps, *REDIS_ERRORS) as exc:
            if not isinstance(exc, _NoStamps):
                cache._redis_failed(exc)
            raise RedisUnavailable(f"incr of key {key!r}: Redis did not answer") from None
        if envelope is None:
            raise KeyError(key)
        current = envelope.value
        if envelope.negative or isinstance(current, bool) or not isinstance(current, int):
            shown = "None" if envelope.negative else current.__class__.__name__
            raise TypeError(f"key {key!r} holds a {shown}, not an int: it cannot be incremented")
        new = current + delta
        payload = _entries.prepare(cache, key, new, strict=True)
        assert payload is not None
        data = cache._envelopes.seal(
            payload,
            fresh_until=envelope.fresh_until,
            load_seconds=envelope.load_seconds,
            ns_epoch=envelope.ns_epoch,
            tags=list(envelope.tags.items()),
        )
        cache._inv_seq += 1
        cache._l1.discard(key)
        try:
            ok = await cache._l2._call_on(
                [value_key], _script(cache, REPLACE), keys=[value_key, lease_key], args=[raw, data]
            )
        except REDIS_ERRORS as exc:
            cache._redis_failed(exc)
            # Unknown whether it landed: the key is invalidated, never left half-known.
            cache._invalidations.queue(("k", key))
            raise RedisUnavailable(
                f"incr of key {key!r}: Redis did not answer; the key was invalidated ({exc})"
            ) from None
        if await _written(cache, key, bool(ok)):
            return new
        # Another write landed in between: read it and try again (lock-free).
        if _monotonic() >= deadline:
            raise VeneerError(
                f"incr of key {key!r} lost to concurrent writes for {_INCR_SECONDS:.0f} s; "
                "a hot counter belongs in veneer.counters"
            )
        await sleep(lease_backoff(min(attempt, 4), rng.random()))
        attempt += 1
