"""The asyncio cache front; ``veneer/_sync/_cache.py`` is generated from this file.

The front moves bytes between the tiers and the source; what an entry means
and what a fill writes is decided in ``veneer._policy``.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, ParamSpec, Protocol, TypeVar, cast

import msgspec
from redis.exceptions import RedisError

from .._codec import CorruptEntry, Envelope, EnvelopeCodec, codec_from_option
from .._errors import ConfigurationError, UnencodableValue, ValueTooLarge
from .._keyfunc import KeyBuilder
from .._keys import KeyLayout
from .._l1 import L1Store
from .._options import CacheOptions
from .._policy import Verdict, judge, plan_fill, stamp_expiry_seconds
from .._stats import CacheStats, Counters, LatencySample
from .._txn import bypasses
from .._txn import open_marks as _open_marks
from ._broadcast import AsyncBroadcastSubscriber
from ._concurrency import KIND_HINT, Loader, ManyLoader, call_loader, is_our_kind, sleep
from ._redis_io import AsyncL2, build_client, client_like

__all__ = ["AsyncCache", "AsyncCachedFunction"]

log = logging.getLogger("veneer")

P = ParamSpec("P")
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

# What a failing Redis raises through redis-py: its own errors, socket errors and
# (asyncio) timeouts. None of them may reach a caller on a read path.
_REDIS_ERRORS = (RedisError, OSError, TimeoutError)
_UNAVAILABLE: Any = object()
_NOT_GIVEN: Any = object()
_MAX_STAMPS = 10_000
_monotonic = time.monotonic
_wall = time.time
_message_encoder = msgspec.msgpack.Encoder()
_message_decoder = msgspec.msgpack.Decoder(tuple[str, str, str, int])


def _new_version() -> int:
    return random.getrandbits(63) | 1


class AsyncCachedFunction(Protocol[P, T_co]):
    """What ``@cache.cached(...)`` returns: the function, plus its cache handles."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[T_co]: ...

    def key_for(self, *args: P.args, **kwargs: P.kwargs) -> str: ...

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[None]: ...


class AsyncCache:
    """A two-tier cache (in-process L1, Redis L2) in front of a source of truth.

    Build it with :meth:`from_url`, or from an existing redis-py client (its
    connection settings are copied; the client itself is left alone).
    """

    def __init__(self, client: Any, /, *, namespace: str, **options: Any) -> None:
        opts = CacheOptions.build(namespace, options)
        copied = client_like(
            client, redis_timeout=opts.redis_timeout, connect_timeout=opts.connect_timeout
        )
        self._setup(copied, opts)

    @classmethod
    def from_url(cls, url: str, /, *, namespace: str, **options: Any) -> AsyncCache:
        """``redis://host:port/db``, ``rediss://...`` (TLS) or ``unix:///path.sock``."""
        opts = CacheOptions.build(namespace, options)
        client = build_client(
            url, redis_timeout=opts.redis_timeout, connect_timeout=opts.connect_timeout
        )
        self = cls.__new__(cls)
        self._setup(client, opts)
        return self

    def _setup(self, client: Any, opts: CacheOptions) -> None:
        self.options = opts
        self._layout = KeyLayout(opts.namespace)
        try:
            codec = codec_from_option(opts.codec)
            self._envelopes = EnvelopeCodec(
                codec, compression=opts.compression, compress_above=opts.compress_above
            )
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        self._l2 = AsyncL2(client)
        self._l1 = L1Store(opts.l1_size, opts.l1_max_bytes if opts.l1_size else 0)
        self._l1_map = self._l1.map
        self._counters = Counters()
        self._l2_latency = LatencySample()
        self._load_latency = LatencySample()
        self._stamp_ex = stamp_expiry_seconds(opts.max_ttl)
        self._stamps: dict[str, tuple[int, float]] = {}
        # Bumped on every invalidation this process applies (its own or received):
        # a fill that started before a bump must not put its value into L1.
        self._inv_seq = 0
        self._stamp_seq = 0
        self._pending: dict[tuple[str, str], None] = {}
        self._sender = f"{random.getrandbits(64):016x}"
        self._last_error_log = 0.0
        self._closed = False
        self._subscriber: AsyncBroadcastSubscriber | None = None
        # Without a broadcast channel L1 is trusted for l1_ttl alone; with one,
        # only while subscribed (a process that cannot hear invalidations must not
        # serve its copies as fresh).
        self._l1_live = opts.l1_size > 0 and not opts.broadcast
        if opts.broadcast:
            self._subscriber = AsyncBroadcastSubscriber(
                client,
                self._layout.channel,
                on_message=self._on_broadcast,
                on_live=self._on_live,
                on_lost=self._on_lost,
            )
        self._started = False

    # ------------------------------------------------------------------ reads

    async def get(self, key: str, /, *, type: Any = None, default: Any = None) -> Any:
        """The cached value, or ``default`` on a miss. Never calls the source."""
        entry = self._l1_map.get(key)
        if entry is not None and entry.expires > _monotonic() and not _open_marks.get():
            entry.visited = True
            self._counters.l1_hits += 1
            return entry.value
        self._counters.l1_misses += 1
        marks = _open_marks.get()
        if marks and bypasses(marks, self.options.namespace, key):
            return default
        self._start()
        seq = self._inv_seq
        envelope = await self._read(self._layout.value(key), type)
        if envelope is None or envelope is _UNAVAILABLE:
            return default
        if await self._serveable(envelope, key, seq):
            return envelope.value
        return default

    async def get_or_load(
        self,
        key: str,
        loader: Loader[T],
        /,
        *,
        ttl: float | None = None,
        tags: Sequence[str] = (),
        type: Any = None,
    ) -> T:
        """The cached value; on a miss, ``loader()``'s result, cached with ``ttl``.

        A loader returning ``None`` is cached as a negative entry (``negative_ttl``).
        """
        entry = self._l1_map.get(key)
        if entry is not None and entry.expires > _monotonic() and not _open_marks.get():
            entry.visited = True
            self._counters.l1_hits += 1
            return cast(T, entry.value)
        return cast(T, await self._miss(key, loader, ttl, tags, type))

    async def _miss(
        self, key: str, loader: Callable[[], Any], ttl: float | None, tags: Sequence[str], type: Any
    ) -> Any:
        self._counters.l1_misses += 1
        ttl_s = self.options.resolve_ttl(ttl)
        tag_list = tuple(dict.fromkeys(tags))
        marks = _open_marks.get()
        if marks and bypasses(marks, self.options.namespace, key, tag_list):
            # This context's open transaction will invalidate the key: read the source.
            return (await self._load(loader))[0]
        self._start()
        seq = self._inv_seq
        envelope = await self._read(self._layout.value(key), type)
        if (
            envelope is not None
            and envelope is not _UNAVAILABLE
            and await self._serveable(envelope, key, seq)
        ):
            return envelope.value
        versions = None if envelope is _UNAVAILABLE else await self._versions(tag_list)
        value, seconds = await self._load(loader)
        if versions is not None and (value is not None or self.options.cache_none):
            await self._fill(key, value, ttl_s, tag_list, versions, seconds, seq, strict=False)
        return value

    async def _read(self, vkey: str, type: Any) -> Any:
        """One GET: an :class:`Envelope`, ``None`` on a miss, or ``_UNAVAILABLE``."""
        started = time.perf_counter()
        try:
            raw = await self._l2.get(vkey.encode("utf-8", "surrogatepass"))
        except _REDIS_ERRORS as exc:
            self._redis_failed(exc)
            return _UNAVAILABLE
        self._l2_latency.record(time.perf_counter() - started)
        if raw is None:
            self._counters.l2_misses += 1
            return None
        return self._decode(raw, type)

    def _decode(self, raw: bytes, type: Any) -> Envelope | None:
        try:
            envelope = self._envelopes.decode(raw, type)
        except CorruptEntry as exc:
            self._counters.corrupt_entries += 1
            self._counters.l2_misses += 1
            log.debug("veneer: unreadable entry treated as a miss: %s", exc)
            return None
        envelope.size = len(raw)
        return envelope

    async def _serveable(self, envelope: Envelope, key: str, seq: int) -> bool:
        """Judge an entry read from Redis; remember it in L1 when it is fresh."""
        versions = await self._versions(tuple(envelope.tags))
        if versions is None:
            return False
        return self._accept(envelope, key, versions, _wall(), seq)

    def _accept(
        self,
        envelope: Envelope,
        key: str,
        versions: tuple[int, dict[str, int]],
        now: float,
        seq: int,
    ) -> bool:
        epoch, tag_versions = versions
        if judge(envelope, now, epoch, tag_versions) is not Verdict.FRESH:
            self._counters.stale_rejected += 1
            self._counters.l2_misses += 1
            return False
        self._counters.l2_hits += 1
        if self._l1_live:
            self._remember(
                key,
                envelope.value,
                envelope.fresh_until - now,
                envelope.size,
                tuple(envelope.tags),
                seq,
            )
        return True

    async def _load(self, loader: Callable[[], Any]) -> tuple[Any, float]:
        self._counters.source_loads += 1
        started = time.perf_counter()
        try:
            value = await call_loader(loader)
        except BaseException:
            self._counters.load_errors += 1
            raise
        seconds = time.perf_counter() - started
        self._load_latency.record(seconds)
        return value, seconds

    # ------------------------------------------------------------------ batches

    async def get_many(self, keys: Iterable[str], /, *, type: Any = None) -> dict[str, Any]:
        """The cached values of ``keys`` that are hits, in one Redis round trip."""
        found, _missing, _available, _seq = await self._lookup_many(list(dict.fromkeys(keys)), type)
        return found

    async def get_or_load_many(
        self,
        keys: Iterable[str],
        loader_many: ManyLoader,
        /,
        *,
        ttl: float | None = None,
        tags: Sequence[str] = (),
        type: Any = None,
    ) -> dict[str, Any]:
        """Every key's value; ``loader_many(missing_keys)`` returns a mapping for the misses.

        Keys the loader leaves out are cached as negative entries and returned as ``None``.
        """
        ttl_s = self.options.resolve_ttl(ttl)
        ordered = list(dict.fromkeys(keys))
        tag_list = tuple(dict.fromkeys(tags))
        found, missing, available, seq = await self._lookup_many(ordered, type)
        if not missing:
            return {key: found[key] for key in ordered}
        versions = await self._versions(tag_list) if available else None
        loaded, seconds = await self._load(lambda: loader_many(list(missing)))
        if not isinstance(loaded, Mapping):
            raise TypeError(
                "loader_many must return a mapping of key -> value, "
                f"got {loaded.__class__.__name__}"
            )
        values = {key: loaded.get(key) for key in missing}
        if versions is not None:
            marks = _open_marks.get()
            fill = values
            if marks:
                namespace = self.options.namespace
                fill = {
                    k: v for k, v in values.items() if not bypasses(marks, namespace, k, tag_list)
                }
            await self._fill_many(fill, ttl_s, tag_list, versions, seconds, seq)
        found.update(values)
        return {key: found[key] for key in ordered}

    async def _lookup_many(
        self, keys: list[str], type: Any
    ) -> tuple[dict[str, Any], list[str], bool, int]:
        found: dict[str, Any] = {}
        missing: list[str] = []
        now = _monotonic()
        l1 = self._l1_map
        requested = keys
        marks = _open_marks.get()
        if marks:
            # Keys an open transaction will invalidate are misses, whatever the tiers hold.
            namespace = self.options.namespace
            keys = [key for key in keys if not bypasses(marks, namespace, key)]
        for key in keys:
            entry = l1.get(key)
            if entry is not None and entry.expires > now:
                entry.visited = True
                found[key] = entry.value
            else:
                missing.append(key)
        self._counters.l1_hits += len(found)
        self._counters.l1_misses += len(missing)
        if len(keys) != len(requested):
            found, missing, available, seq = await self._lookup_l2(found, missing, type)
            return found, [key for key in requested if key not in found], available, seq
        return await self._lookup_l2(found, missing, type)

    async def _lookup_l2(
        self, found: dict[str, Any], missing: list[str], type: Any
    ) -> tuple[dict[str, Any], list[str], bool, int]:
        if not missing:
            return found, missing, True, self._inv_seq
        self._start()
        seq = self._inv_seq
        started = time.perf_counter()
        try:
            raws = await self._l2.mget(self._layout.encoded_values(missing))
        except _REDIS_ERRORS as exc:
            self._redis_failed(exc)
            return found, missing, False, seq
        self._l2_latency.record(time.perf_counter() - started)
        epoch_only = await self._versions(())
        if epoch_only is None:
            return found, missing, False, seq
        epoch = epoch_only[0]
        now = _wall()
        remember = self._l1_live
        counters = self._counters
        hits_before = len(found)
        envelopes: list[tuple[str, Envelope]] = []
        still: list[str] = []
        plain = self._envelopes.decode_plain_many(raws, type)
        for key, raw, decoded in zip(missing, raws, plain, strict=True):
            if decoded is not None and decoded[2] == epoch and decoded[1] > now:
                found[key] = decoded[0]
                if remember:
                    self._remember(key, decoded[0], decoded[1] - now, len(raw or b""), (), seq)
                continue
            if raw is None:
                counters.l2_misses += 1
                still.append(key)
                continue
            envelope = self._decode(raw, type)
            if envelope is not None:
                envelopes.append((key, envelope))
            else:
                still.append(key)
        counters.l2_hits += len(found) - hits_before
        order, missing = missing, still
        if envelopes:
            # One stamp lookup for the whole batch, then a pure judgement per entry.
            all_tags = tuple(dict.fromkeys(tag for _, env in envelopes for tag in env.tags))
            versions = await self._versions(all_tags)
            if versions is None:
                return found, missing + [key for key, _ in envelopes], False, seq
            for key, envelope in envelopes:
                if self._accept(envelope, key, versions, now, seq):
                    found[key] = envelope.value
            missing = [key for key in order if key not in found]
        return found, missing, True, seq

    # ------------------------------------------------------------------ writes

    async def set(
        self, key: str, value: Any, /, *, ttl: float | None = None, tags: Sequence[str] = ()
    ) -> None:
        """Write a value (from your source of truth) with a TTL; raises :class:`ValueTooLarge`.

        Other processes drop their L1 copy. If Redis is unreachable the write is
        skipped and an invalidation of the key is queued, so no process keeps the
        old value once Redis is back.
        """
        ttl_s = self.options.resolve_ttl(ttl)
        tag_list = tuple(dict.fromkeys(tags))
        self._start()
        self._l1.discard(key)
        self._inv_seq += 1
        versions = await self._versions(tag_list)
        if versions is None:
            self._queue(("k", key))
            return
        seq = self._inv_seq
        if await self._fill(key, value, ttl_s, tag_list, versions, 0.0, seq, strict=True):
            await self._publish("k", key, 0)
        else:
            self._queue(("k", key))

    async def _fill(
        self,
        key: str,
        value: Any,
        ttl: float,
        tags: tuple[str, ...],
        versions: tuple[int, dict[str, int]],
        seconds: float,
        seq: int,
        *,
        strict: bool,
    ) -> bool:
        encoded = self._encode(key, value, ttl, tags, versions, seconds, strict=strict)
        if encoded is None:
            return False
        data, px, fresh_seconds = encoded
        try:
            await self._l2.set(self._layout.value(key).encode("utf-8", "surrogatepass"), data, px)
        except _REDIS_ERRORS as exc:
            self._redis_failed(exc)
            return False
        self._remember(key, value, fresh_seconds, len(data), tags, seq)
        return True

    async def _fill_many(
        self,
        values: dict[str, Any],
        ttl: float,
        tags: tuple[str, ...],
        versions: tuple[int, dict[str, int]],
        seconds: float,
        seq: int,
    ) -> None:
        items: list[tuple[bytes, bytes, int]] = []
        remembered: list[tuple[str, Any, float, int]] = []
        for key, value in values.items():
            if value is None and not self.options.cache_none:
                continue
            encoded = self._encode(key, value, ttl, tags, versions, seconds, strict=False)
            if encoded is None:
                continue
            data, px, fresh_seconds = encoded
            items.append((self._layout.value(key).encode("utf-8", "surrogatepass"), data, px))
            remembered.append((key, value, fresh_seconds, len(data)))
        if not items:
            return
        try:
            await self._l2.set_many(items)
        except _REDIS_ERRORS as exc:
            self._redis_failed(exc)
            return
        for key, value, fresh_seconds, size in remembered:
            self._remember(key, value, fresh_seconds, size, tags, seq)

    def _encode(
        self,
        key: str,
        value: Any,
        ttl: float,
        tags: tuple[str, ...],
        versions: tuple[int, dict[str, int]],
        seconds: float,
        *,
        strict: bool,
    ) -> tuple[bytes, int, float] | None:
        opts = self.options
        epoch, tag_versions = versions
        plan = plan_fill(
            now=_wall(),
            ttl=ttl,
            jitter=opts.jitter,
            negative=value is None,
            negative_ttl=opts.negative_ttl,
        )
        try:
            data = self._envelopes.encode(
                value,
                fresh_until=plan.fresh_until,
                load_seconds=seconds,
                ns_epoch=epoch,
                tags=[(tag, tag_versions[tag]) for tag in tags],
            )
        except (TypeError, ValueError, msgspec.EncodeError) as exc:
            if strict:
                raise UnencodableValue(
                    f"value for key {key!r} cannot be encoded with codec "
                    f"{self._envelopes.codec.name!r}: {exc}"
                ) from None
            self._counters.not_cached_unencodable += 1
            self._warn(f"value for key {key!r} not cached: codec cannot encode it ({exc})")
            return None
        if len(data) > opts.max_value_bytes:
            if strict:
                raise ValueTooLarge(key, len(data), opts.max_value_bytes)
            self._counters.not_cached_too_large += 1
            self._warn(
                f"value for key {key!r} not cached: {len(data)} bytes encoded, above "
                f"max_value_bytes={opts.max_value_bytes}"
            )
            return None
        return data, plan.px, plan.fresh_seconds

    def _remember(
        self, key: str, value: Any, fresh_seconds: float, size: int, tags: tuple[str, ...], seq: int
    ) -> None:
        if self._l1_live and seq == self._inv_seq and fresh_seconds > 0:
            self._l1.put(
                key,
                value,
                expires=_monotonic() + min(self.options.l1_ttl, fresh_seconds),
                fresh_until=_wall() + fresh_seconds,
                size=size,
                tags=tags,
            )

    # ------------------------------------------------------------ invalidation

    async def invalidate(self, key: str, /) -> bool:
        """Drop ``key`` from Redis and from every process's L1.

        Returns True when Redis applied it now; False when Redis was unreachable
        and the invalidation was queued (it is retried until applied).
        """
        self._l1.discard(key)
        self._inv_seq += 1
        return await self._apply(("k", key))

    async def invalidate_tag(self, tag: str, /) -> bool:
        """Invalidate every entry written with ``tag``: one command, however many entries.

        Returns False when the invalidation had to be queued (see :meth:`invalidate`).
        """
        self._l1.discard_tag(tag)
        self._inv_seq += 1
        return await self._apply(("t", tag))

    async def invalidate_all(self) -> bool:
        """Invalidate the whole namespace: one command (a new namespace epoch).

        Returns False when the invalidation had to be queued (see :meth:`invalidate`).
        """
        self._l1.clear()
        self._inv_seq += 1
        return await self._apply(("e", ""))

    async def _apply(self, op: tuple[str, str]) -> bool:
        self._start()
        if self._pending:
            await self._drain()
        if await self._send(op):
            return True
        self._queue(op)
        return False

    async def _send(self, op: tuple[str, str]) -> bool:
        kind, name = op
        version = 0
        try:
            if kind == "k":
                await self._l2.delete(self._layout.value(name).encode("utf-8", "surrogatepass"))
            else:
                stamp = self._layout.epoch_key if kind == "e" else self._layout.tag(name)
                version = _new_version()
                await self._l2.write_stamp(stamp.encode(), version, self._stamp_ex)
                self._stamp_seq += 1
                self._stamps[stamp] = (version, _monotonic() + self.options.stamp_ttl)
        except _REDIS_ERRORS as exc:
            self._redis_failed(exc)
            return False
        await self._publish(kind, name, version)
        return True

    async def _publish(self, kind: str, name: str, version: int) -> None:
        self._counters.invalidations_sent += 1
        if self._subscriber is None:
            return
        message = _message_encoder.encode((self._sender, kind, name, version))
        try:
            await self._l2.publish(self._layout.channel, message)
        except _REDIS_ERRORS as exc:
            # The Redis write is done; other L1s fall back to l1_ttl for this one.
            self._redis_failed(exc)

    def _queue(self, op: tuple[str, str]) -> None:
        if op not in self._pending:
            self._pending[op] = None
            self._counters.invalidations_queued += 1
            self._warn(
                f"Redis unreachable: invalidation {op[0]}:{op[1]!r} queued and retried "
                f"until applied ({len(self._pending)} pending)"
            )

    async def _drain(self) -> None:
        """Apply queued invalidations in order; stop at the first that still fails."""
        for op in list(self._pending):
            if not await self._send(op):
                return
            self._pending.pop(op, None)

    # ------------------------------------------------------------------ stamps

    async def _versions(self, tags: tuple[str, ...]) -> tuple[int, dict[str, int]] | None:
        """The namespace epoch and the versions of ``tags``, or None if Redis failed."""
        now = _monotonic()
        stamps = self._stamps
        layout = self._layout
        wanted = [layout.epoch_key, *[layout.tag(tag) for tag in tags]]
        known: dict[str, int] = {}
        missing: list[str] = []
        for stamp in wanted:
            hit = stamps.get(stamp)
            if hit is not None and hit[1] > now:
                known[stamp] = hit[0]
            else:
                missing.append(stamp)
        if missing:
            seq = self._stamp_seq
            try:
                fetched = await self._l2.read_stamps(
                    [m.encode() for m in missing], [_new_version() for _ in missing], self._stamp_ex
                )
            except _REDIS_ERRORS as exc:
                self._redis_failed(exc)
                return None
            valid_until = _monotonic() + self.options.stamp_ttl
            if len(stamps) > _MAX_STAMPS:
                stamps.clear()
            for stamp, version in zip(missing, fetched, strict=True):
                known[stamp] = version
                # A broadcast that arrived during the fetch is newer than what we read.
                if seq == self._stamp_seq:
                    stamps[stamp] = (version, valid_until)
        return known[wanted[0]], {tag: known[layout.tag(tag)] for tag in tags}

    # --------------------------------------------------------------- broadcast

    def _start(self) -> None:
        if not self._started and self._subscriber is not None and not self._closed:
            self._started = True
            self._subscriber.start()

    def _on_broadcast(self, data: bytes) -> None:
        try:
            sender, kind, name, version = _message_decoder.decode(data)
        except msgspec.DecodeError:
            return
        if sender == self._sender:
            return
        self._counters.invalidations_received += 1
        self._inv_seq += 1
        if kind == "k":
            self._l1.discard(name)
            return
        self._stamp_seq += 1
        valid_until = _monotonic() + self.options.stamp_ttl
        if kind == "t":
            self._stamps[self._layout.tag(name)] = (version, valid_until)
            self._l1.discard_tag(name)
        elif kind == "e":
            self._stamps[self._layout.epoch_key] = (version, valid_until)
            self._l1.clear()

    async def _on_live(self) -> None:
        self._inv_seq += 1
        self._l1_live = self.options.l1_size > 0
        if self._pending:
            await self._drain()

    def _on_lost(self) -> None:
        self._l1_live = False
        self._inv_seq += 1
        self._stamp_seq += 1
        self._stamps.clear()
        self._l1.expire_all(_monotonic())

    async def ready(self, timeout: float = 5.0) -> bool:
        """Wait until this process hears other processes' invalidations (or ``timeout``)."""
        self._start()
        if self._subscriber is None:
            return True
        deadline = _monotonic() + timeout
        while not self._subscriber.live:
            if _monotonic() >= deadline:
                return False
            await sleep(0.005)
        return True

    # -------------------------------------------------------------- decorator

    def cached(
        self,
        *,
        ttl: float | None = _NOT_GIVEN,
        tags: Sequence[str] = (),
        key: str | None = None,
        type: Any = None,
    ) -> Callable[[Callable[P, Awaitable[T]]], AsyncCachedFunction[P, T]]:
        """Cache a function's results. The key is ``module.qualname:args``, or ``key``
        formatted with the arguments (``key="user:{uid}"``); tags may be templates too."""
        call_ttl = None if ttl is _NOT_GIVEN else ttl
        self.options.resolve_ttl(call_ttl)  # no TTL anywhere: fail at decoration time
        static_tags = tuple(tags)

        def decorate(fn: Callable[P, Awaitable[T]]) -> AsyncCachedFunction[P, T]:
            if not is_our_kind(fn):
                raise ConfigurationError(KIND_HINT)
            builder = KeyBuilder(fn, key, static_tags)
            build = builder.compile()
            l1 = self._l1_map
            counters = self._counters

            @functools.wraps(fn)
            async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
                k = build(args, kwargs)
                entry = l1.get(k)
                if entry is not None and entry.expires > _monotonic() and not _open_marks.get():
                    entry.visited = True
                    counters.l1_hits += 1
                    return cast(T, entry.value)
                return cast(
                    T,
                    await self._miss(
                        k,
                        functools.partial(fn, *args, **kwargs),
                        call_ttl,
                        builder.tags(static_tags, args, kwargs),
                        type,
                    ),
                )

            async def invalidate(*args: P.args, **kwargs: P.kwargs) -> None:
                await self.invalidate(build(args, kwargs))

            def key_for(*args: P.args, **kwargs: P.kwargs) -> str:
                return build(args, kwargs)

            wrapper.invalidate = invalidate  # type: ignore[attr-defined]
            wrapper.key_for = key_for  # type: ignore[attr-defined]
            return cast(AsyncCachedFunction[P, T], wrapper)

        return decorate

    # --------------------------------------------------------------- plumbing

    def _redis_failed(self, exc: BaseException) -> None:
        self._counters.redis_errors += 1
        self._warn(f"Redis call failed ({exc.__class__.__name__}: {exc}); served from the source")

    def _warn(self, message: str) -> None:
        now = _monotonic()
        if now - self._last_error_log >= self.options.error_log_interval:
            self._last_error_log = now
            log.warning("veneer[%s]: %s", self.options.namespace, message)

    def stats(self) -> CacheStats:
        c = self._counters
        l2_p50, l2_p99 = self._l2_latency.percentiles()
        load_p50, load_p99 = self._load_latency.percentiles()
        return CacheStats(
            **c.as_dict(),
            invalidations_pending=len(self._pending),
            l1_entries=len(self._l1),
            l1_bytes=self._l1.bytes,
            l1_evictions=self._l1.evictions,
            broadcast_connected=bool(self._subscriber and self._subscriber.live),
            l2_read_p50_ms=l2_p50 * 1000,
            l2_read_p99_ms=l2_p99 * 1000,
            load_p50_ms=load_p50 * 1000,
            load_p99_ms=load_p99 * 1000,
        )

    async def close(self) -> None:
        """Stop the broadcast subscriber and close veneer's connections."""
        if self._closed:
            return
        self._closed = True
        if self._pending:
            await self._drain()
        if self._subscriber is not None:
            await self._subscriber.close()
        await self._l2.close()

    async def __aenter__(self) -> AsyncCache:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
