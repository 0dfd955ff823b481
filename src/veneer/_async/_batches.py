"""Batched reads and fills: ``get_many`` and ``get_or_load_many`` of the asyncio front
(``veneer/_sync/_batches.py`` is generated from this file).

One MGET for the keys L1 lacks (one per slot, one buffer per shard on a cluster),
one stamp lookup for the batch, one pipeline of leases and one of fills.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._codec import Envelope, is_lease_mark, lease_mark
from .._keys import check_key, check_tags
from .._policy import judge
from .._refusals import WRITES
from .._txn import bypasses
from .._txn import open_marks as _open_marks
from .._types import conform
from . import _entries, _reads, _writes
from ._concurrency import ManyLoader
from ._redis_io import REDIS_ERRORS, new_token

if TYPE_CHECKING:
    from ._cache import AsyncCache, Versions

__all__ = ["get_many", "get_or_load_many"]

_monotonic = time.monotonic
_wall = time.time


async def get_many(cache: AsyncCache, keys: Iterable[str], type: Any) -> dict[str, Any]:
    found, _missing, _available, _seq = await _lookup_many(cache, list(dict.fromkeys(keys)), type)
    return found


async def get_or_load_many(
    cache: AsyncCache,
    keys: Iterable[str],
    loader_many: ManyLoader,
    ttl: float | None,
    tags: Sequence[str],
    type: Any,
) -> dict[str, Any]:
    ttl_s = cache.options.resolve_ttl(ttl)
    ordered = list(dict.fromkeys(keys))
    tag_list = check_tags(tags)
    found, missing, available, seq = await _lookup_many(cache, ordered, type)
    if not missing:
        return {key: found[key] for key in ordered}
    versions = await cache._stamps.versions(tag_list) if available else None
    fillable: dict[str, bytes | None] = {}
    if versions is not None:
        marks = _open_marks.get()
        namespace = cache.options.namespace
        candidates = [k for k in missing if not (marks and bypasses(marks, namespace, k, tag_list))]
        fillable = await _lease_many(cache, candidates, found, type, seq)
        missing = [key for key in missing if key not in found]
    held = [
        cache._keeper.hold(*cache._guarded_keys(key), token, lease_mark(token))
        for key, token in fillable.items()
        if token is not None
    ]
    try:
        if missing:
            await _load_many(
                cache, found, missing, loader_many, fillable, ttl_s, tag_list, type, versions, seq
            )
    except Exception:
        for key, token in fillable.items():  # free the keys for the next callers now
            if token is not None:
                await _writes.release(cache, key, token)
        raise
    except BaseException:
        for key, token in fillable.items():
            if token is not None:
                _writes.release_soon(cache, key, token)
        raise
    finally:
        for handle in held:
            cache._keeper.drop(handle)
    return {key: found[key] for key in ordered}


async def _load_many(
    cache: AsyncCache,
    found: dict[str, Any],
    missing: list[str],
    loader_many: ManyLoader,
    fillable: dict[str, bytes | None],
    ttl_s: float,
    tag_list: tuple[str, ...],
    type: Any,
    versions: Versions | None,
    seq: int,
) -> None:
    """Load the keys no one else had, and fill those this caller holds the lease of."""
    loaded, seconds = await cache._load(lambda: loader_many(list(missing)))
    if not isinstance(loaded, Mapping):
        raise TypeError(
            f"loader_many must return a mapping of key -> value, got {loaded.__class__.__name__}"
        )
    values = {key: loaded.get(key) for key in missing}
    if type is not None:
        values = {key: conform(value, type, key) for key, value in values.items()}
    if versions is not None:
        await _fill_many(
            cache,
            {k: v for k, v in values.items() if k in fillable},
            fillable,
            ttl_s,
            tag_list,
            versions,
            seconds,
            seq,
        )
        if cache._refusals.writes_until:
            # Redis refuses writes: no lease was taken and nothing filled; L1 keeps the
            # values so the next batch does not load them again (as a single miss does).
            for key, value in values.items():
                if key not in fillable:
                    _entries.keep_in_l1(cache, key, value, ttl_s, tag_list, versions, seconds, seq)
    found.update(values)


async def _lease_many(
    cache: AsyncCache, keys: list[str], found: dict[str, Any], type: Any, seq: int
) -> dict[str, bytes | None]:
    """Lease each key (one round trip); returns the keys this caller may fill
    (with its token, or None when leases are off). Fills that landed meanwhile
    go into ``found``."""
    if not cache.options.leases:
        return dict.fromkeys(keys)
    refusals = cache._refusals
    if refusals.writes_until and not refusals.allows(WRITES):
        return {}  # Redis refuses writes: no lease can be taken (tried once a second)
    token = new_token()
    try:
        replies = await cache._l2.lease_get_many(
            [cache._guarded_keys(k) for k in keys], lease_mark(token), cache._lease_px
        )
    except REDIS_ERRORS as exc:
        cache._redis_failed(exc)
        return {}
    fillable: dict[str, bytes | None] = {}
    for key, (raw, refreshing) in zip(keys, replies, strict=True):
        got = raw is None and not refreshing  # refreshing: a refresh holds it
        if raw is not None and not is_lease_mark(raw):  # a mark: another caller loads it
            envelope = _reads.decode(cache, raw, type)
            if envelope is not None:
                verdict = await _reads.judge(cache, envelope, xfetch=False)
                if verdict is not None and verdict.serveable:
                    _reads.take(cache, key, envelope, verdict, seq)
                    found[key] = envelope.value
                    if got:
                        await _writes.release(cache, key, token)
                    continue
        if got:
            fillable[key] = token
    return fillable


async def _lookup_many(
    cache: AsyncCache, keys: list[str], type: Any
) -> tuple[dict[str, Any], list[str], bool, int]:
    found: dict[str, Any] = {}
    missing: list[str] = []
    now = _monotonic()
    l1 = cache._l1_map
    requested = keys
    marks = _open_marks.get()
    if marks:
        for key in keys:
            check_key(key)  # the bypassed keys never reach the batch encoder's check
        # Keys an open transaction will invalidate are misses, whatever the tiers hold.
        namespace = cache.options.namespace
        keys = [key for key in keys if not bypasses(marks, namespace, key)]
    trusted = now < cache._l1_trust
    for key in keys:
        entry = l1.get(key)
        if entry is not None and entry.expires > now and trusted:
            entry.visited = True
            found[key] = entry.value
        else:
            missing.append(key)
    cache._counters.l1_hits += len(found)
    cache._counters.l1_misses += len(missing)
    if len(keys) != len(requested):
        found, missing, available, seq = await _lookup_l2(cache, found, missing, type)
        return found, [key for key in requested if key not in found], available, seq
    return await _lookup_l2(cache, found, missing, type)


async def _lookup_l2(
    cache: AsyncCache, found: dict[str, Any], missing: list[str], type: Any
) -> tuple[dict[str, Any], list[str], bool, int]:
    if not missing:
        return found, missing, True, cache._inv_seq
    cache._start()
    seq = cache._inv_seq
    started = time.perf_counter()
    try:
        raws = await cache._l2.mget(cache._layout.encoded_values(missing))
    except REDIS_ERRORS as exc:
        cache._redis_failed(exc)
        return found, missing, False, seq
    cache._l2_latency.record(time.perf_counter() - started)
    epoch_only = await cache._stamps.versions(())
    if epoch_only is None:
        return found, missing, False, seq
    epoch = epoch_only[0]
    now = _wall()
    remember = cache._l1_live
    counters = cache._counters
    hits_before = len(found)
    envelopes: list[tuple[str, Envelope]] = []
    still: list[str] = []
    # The common entry (no tags, not compressed) is judged inline, without
    # building an Envelope: this loop is most of get_many's Python time.
    plain = cache._envelopes.decode_plain_many(raws, type)
    for key, raw, decoded in zip(missing, raws, plain, strict=True):
        if decoded is not None and decoded[2] == epoch and decoded[1] > now:
            found[key] = decoded[0]
            if remember:
                _entries.remember(
                    cache, key, decoded[0], decoded[1] - now, len(raw or b""), (), seq
                )
            continue
        if raw is None or is_lease_mark(raw):  # a mark: someone is loading it
            counters.l2_misses += 1
            still.append(key)
            continue
        envelope = _reads.decode(cache, raw, type)
        if envelope is not None:
            envelopes.append((key, envelope))
        else:
            still.append(key)
    counters.l2_hits += len(found) - hits_before
    if not envelopes:
        return found, still, True, seq
    # One stamp lookup for the whole batch, then a pure judgement per entry.
    all_tags = tuple(dict.fromkeys(tag for _, env in envelopes for tag in env.tags))
    versions = await cache._stamps.versions(all_tags)
    if versions is None:
        return found, [key for key in missing if key not in found], False, seq
    for key, envelope in envelopes:
        verdict = judge(envelope, now, *versions)
        if verdict.serveable:
            _reads.take(cache, key, envelope, verdict, seq)
            found[key] = envelope.value
        else:
            counters.stale_rejected += 1
            counters.l2_misses += 1
    return found, [key for key in missing if key not in found], True, seq


async def _fill_many(
    cache: AsyncCache,
    values: dict[str, Any],
    tokens: dict[str, bytes | None],
    ttl: float,
    tags: tuple[str, ...],
    versions: Versions,
    seconds: float,
    seq: int,
) -> None:
    """Fill a batch in one round trip: leased keys with their (shared) token."""
    plain_keys: list[str] = []
    plain: list[tuple[bytes, bytes, int]] = []
    leased_keys: list[str] = []
    leased: list[tuple[bytes, bytes, bytes, int]] = []
    written: dict[str, tuple[Any, float, int]] = {}
    batch_token: bytes | None = None
    for key, value in values.items():
        token = tokens.get(key)
        encoded = None
        if value is not None or cache.options.cache_none:
            encoded = _entries.encode(cache, key, value, ttl, tags, versions, seconds, strict=False)
        if encoded is None:
            if token is not None:
                await _writes.release(cache, key, token)
            continue
        data, px, fresh_seconds = encoded
        value_key, lease_key = cache._guarded_keys(key)
        written[key] = (value, fresh_seconds, len(data))
        if token is None:
            plain_keys.append(key)
            plain.append((value_key, data, px))
        else:
            batch_token = token
            leased_keys.append(key)
            leased.append((value_key, lease_key, data, px))
    try:
        landed = [True] * len(plain)
        if plain:
            await cache._l2.set_many(plain)
        if leased and batch_token is not None:
            landed += await cache._l2.fill_many_with_lease(
                leased, batch_token, lease_mark(batch_token)
            )
    except REDIS_ERRORS as exc:
        if cache._redis_failed(exc) == WRITES:
            for key, (value, fresh_seconds, size) in written.items():
                _entries.remember(cache, key, value, fresh_seconds, size, tags, seq)
        return
    for key, ok in zip(plain_keys + leased_keys, landed, strict=True):
        if ok:
            value, fresh_seconds, size = written[key]
            _entries.remember(cache, key, value, fresh_seconds, size, tags, seq)
        else:
            cache._counters.fills_refused += 1
