"""The asyncio counters front; ``_sync/_counters.py`` is generated from this file.

Exact counters: an increment returns once it is committed to the journal (group
commits). Buffered counters: once Redis has it in the shard's buffer (one script
call); a flusher moves buffers to the database exactly once. Reads are the durable
total, read through the cache, plus what is buffered in Redis.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..._async._cache import AsyncCache
from ..._async._concurrency import Background, sleep, spawn
from ..._errors import RedisDown
from .._spec import (
    CounterOverflow,
    CounterSpec,
    Mode,
    UnknownCounter,
    check_amount,
    check_counter_key,
    read_key,
    read_tag,
    shard_of,
    specs_from,
)
from .._sql import Pair
from .._stats import CounterStats, FlushReport
from .._tables import AsyncEngine, AsyncEngines, CounterTables, counter_tables
from ._buffer import AsyncBuffer, ShardCall, Writer
from ._flusher import AsyncCounterFlusher
from ._group import AsyncGroupCommit, Slot
from ._journal import AsyncJournalWriter
from ._store import AsyncCounterStore
from ._versions import AsyncReadVersions

__all__ = ["AsyncCounters"]

log = logging.getLogger("veneer")

_live: weakref.WeakSet[AsyncCounters] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for counters in list(_live):
        counters._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)

_RESOLVE_EVERY = 0.1


def _interrupted(exc: BaseException) -> BaseException:
    return RuntimeError(
        f"the Redis call carrying this increment was interrupted ({exc.__class__.__name__})"
    )


@dataclass(slots=True)
class _InDoubt:
    """A buffered call that got no answer: applied or not, only Redis can tell."""

    call: ShardCall


class AsyncCounters:
    """Counters kept in the database, with Redis taking the write rate.

    ``counters`` names every counter and its mode: ``{"views": "buffered",
    "credits": "exact"}`` (or a :class:`CounterSpec` for a shard count). ``engine``
    is an async SQLAlchemy engine or a URL. The tables must exist
    (:func:`create_counter_tables`). ``flusher=True`` runs a flusher in this
    process (every ``flush_interval`` seconds); otherwise run ``veneer counters
    flush`` next to the application.
    """

    def __init__(
        self,
        cache: AsyncCache,
        engine: AsyncEngine | str,
        counters: Mapping[str, Mode | CounterSpec],
        /,
        *,
        tables: CounterTables | None = None,
        read_ttl: float = 60.0,
        flusher: bool = False,
        flush_interval: float = 1.0,
        lease_ttl: float = 10.0,
        buffer_ttl: float = 7 * 86400.0,
    ) -> None:
        self.specs = specs_from(counters)
        self.cache = cache
        self.tables = tables if tables is not None else counter_tables()
        self._engine, self._owns_engine = AsyncEngines.build(engine)
        self._store = AsyncCounterStore(self._engine, self.tables)
        self._buffer = AsyncBuffer(cache.redis_access("counters"), ttl=buffer_ttl)
        self._versions = AsyncReadVersions(cache.redis_access("counters"), ttl=read_ttl)
        self._journal = AsyncJournalWriter(self._store, self._after_commit)
        self._redis_group = AsyncGroupCommit(
            self._incr_batch, leaders=1, gather=0.0001, interrupted=_interrupted
        )
        self.read_ttl = read_ttl
        self._stats = CounterStats()
        self._lock = threading.Lock()  # statistics, from several threads in the sync shell
        self._writers: deque[Writer] = deque()
        self._epochs: dict[tuple[str, int], bytes] = {}
        self._in_doubt: list[_InDoubt] = []
        # Increments taken out of _in_doubt by a resolver still settling them: in doubt
        # until it is done, so resolve() from another caller does not report them settled.
        self._settling = 0
        self._resolver: Background | None = None
        self._registered = False
        self._closed = False
        self._flusher = (
            AsyncCounterFlusher._from_parts(
                cache, self._store, self._buffer, self.specs,
                interval=flush_interval, lease_ttl=lease_ttl,
            )
            if flusher
            else None
        )  # fmt: skip
        self._flusher_started = False
        _live.add(self)

    # ------------------------------------------------------------------ writes

    async def incr(self, name: str, key: str, n: int = 1, /) -> None:
        """Add ``n`` to ``name[key]``; returns once the increment is acknowledged (exact:
        committed to the database; buffered: in Redis, or in the database if Redis is down).

        Raises ``TypeError`` for a non-int ``n``, :class:`CounterOverflow` past 64 bits,
        :class:`UnknownCounter`; nothing is counted then.
        """
        spec = self._spec(name)
        check_counter_key(key)
        check_amount(n)
        await self._start()
        if spec.mode == "exact":
            await self._journal.write([((name, key), n)])
            with self._lock:
                self._stats.exact_increments += 1
            return
        await self._buffered([(name, shard_of(key, spec.shards), key, n)])

    async def incr_many(self, items: Iterable[tuple[str, str, int]], /) -> None:
        """Add many ``(name, key, n)`` at once: exact ones in one transaction, buffered ones
        in one Redis round trip (one per node on a cluster). Every item is checked first:
        one bad item refuses the whole call."""
        exact: list[tuple[Pair, int]] = []
        buffered: list[tuple[str, int, str, int]] = []
        for name, key, n in items:
            spec = self._spec(name)
            check_counter_key(key)
            check_amount(n)
            if spec.mode == "exact":
                exact.append(((name, key), n))
            else:
                buffered.append((name, shard_of(key, spec.shards), key, n))
        await self._start()
        if exact:
            await self._journal.write(exact)
            with self._lock:
                self._stats.exact_increments += len(exact)
        if buffered:
            await self._buffered(buffered)

    async def _buffered(self, items: list[tuple[str, int, str, int]]) -> None:
        """Concurrent callers' buffered increments share one script call per shard."""
        overflow, direct = await self._redis_group.submit(items)
        if direct:
            await self._direct(direct)
        if overflow:
            raise CounterOverflow(
                f"increment refused: it would take {', '.join(overflow)} past a signed "
                "64-bit count (9223372036854775807); those shards counted nothing"
            )

    def _writer(self) -> Writer:
        try:
            return self._writers.pop()
        except IndexError:
            return Writer()

    async def _incr_batch(self, batch: list[Slot]) -> None:
        """Send a batch of callers' buffered increments: one group per caller and shard."""
        calls: dict[tuple[str, int], ShardCall] = {}
        for index, slot in enumerate(batch):
            mine: dict[tuple[str, int], list[tuple[str, int]]] = {}
            for name, shard, key, n in slot.items:
                mine.setdefault((name, shard), []).append((key, n))
            for where, group in mine.items():
                call = calls.get(where)
                if call is None:
                    call = calls[where] = ShardCall(where[0], where[1], self._writer())
                    call.writer.seq += 1
                    call.seq = call.writer.seq
                    call.epoch = self._epochs.get(where)
                call.groups.append(group)
                call.owners.append(index)
            slot.result = ([], [])
        sent = list(calls.values())
        try:
            replies = await self._buffer.incr(sent)
        except RedisDown as down:
            with self._lock:
                self._stats.redis_errors += 1
            if down.breaker_open and len(sent) == 1:
                # Refused before anything was sent: certainly not applied.
                self._writers.append(sent[0].writer)
                self._to_direct(batch, sent)
                return
            # Sent, no answer: Redis may or may not have applied it. Never guess: the
            # resolver asks Redis (fencing the writer) once it answers again.
            with self._lock:
                for call in sent:
                    self._in_doubt.append(_InDoubt(call))
                    self._stats.in_doubt += len(call.items)
            self._start_resolver()
            return
        applied = 0
        fenced: list[ShardCall] = []
        for call, reply in zip(sent, replies, strict=True):
            if int(reply[0]) == 0:
                fenced.append(call)  # a fenced writer: certainly not applied
                continue
            self._epochs[(call.name, call.shard)] = reply[1]
            self._writers.append(call.writer)
            for group, owner, outcome in zip(call.groups, call.owners, reply[2:], strict=True):
                if outcome == 1:
                    applied += len(group)
                else:
                    key = outcome.decode() if isinstance(outcome, bytes) else str(outcome)
                    batch[owner].result[0].append(f"{call.name}[{key!r}]")
        with self._lock:
            self._stats.buffered_increments += applied
        self._to_direct(batch, fenced)

    @staticmethod
    def _to_direct(batch: list[Slot], calls: list[ShardCall]) -> None:
        """The increments of ``calls`` go to the journal, each by its own caller."""
        for call in calls:
            for group, owner in zip(call.groups, call.owners, strict=True):
                batch[owner].result[1].extend(((call.name, key), n) for key, n in group)

    async def _direct(self, items: list[tuple[Pair, int]]) -> None:
        """Buffered increments Redis certainly did not take: into the journal now."""
        await self._journal.write(items)
        with self._lock:
            self._stats.direct_increments += len(items)

    async def _after_commit(self, pairs: list[Pair]) -> None:
        """Before the callers of a group commit return: exact keys get new read versions
        (one round trip), buffered ones written straight to the journal are invalidated."""
        exact = [pair for pair in pairs if self.specs[pair[0]].mode == "exact"]
        if exact:
            try:
                await self._versions.bump(exact, self._shards)
            except RedisDown:
                # Maybe applied, maybe not: drop every cached total of these counters
                # instead (the cache retries an invalidation until Redis takes it).
                for name in sorted({name for name, _ in exact}):
                    await self.cache.invalidate_tag(read_tag(name))
        for name, key in pairs:
            if self.specs[name].mode != "exact":
                await self.cache.invalidate(read_key(name, key))

    def _shards(self, name: str) -> int:
        return self.specs[name].shards

    # ----------------------------------------------------------------- in doubt

    def _start_resolver(self) -> None:
        if self._resolver is None and not self._closed:
            self._resolver = spawn(self._resolve_loop, "veneer-counters-resolver")

    async def _resolve_loop(self) -> None:
        try:
            while self._in_doubt and not self._closed:
                await self.resolve()
                if self._in_doubt:
                    await sleep(_RESOLVE_EVERY)
        finally:
            self._resolver = None

    async def resolve(self) -> int:
        """Settle the increments in doubt that Redis can answer for now; returns how many
        remain. Runs by itself in the background; call it to settle before a shutdown."""
        for _ in range(len(self._in_doubt)):
            try:
                doubt = self._in_doubt.pop(0)  # taken out, so no two resolvers share one
            except IndexError:
                break
            count = len(doubt.call.items)
            with self._lock:
                self._settling += count
            settled = False  # a cancelled settle puts the doubt back
            try:
                settled = await self._settle(doubt.call)
            finally:
                if not settled:
                    self._in_doubt.append(doubt)
                with self._lock:
                    self._settling -= count
            if not settled:
                break
        with self._lock:
            settling = self._settling
        return settling + sum(len(d.call.items) for d in self._in_doubt)

    async def _settle(self, call: ShardCall) -> bool:
        """Whether ``call`` is settled: applied by Redis, written to the database, or lost
        with Redis's data. False when Redis (or the database) cannot answer yet."""
        try:
            mark, epoch = await self._buffer.fence(call.name, call.shard, call.writer.id)
        except RedisDown:
            return False
        count = len(call.items)
        outcome = "in_doubt_applied"
        if mark is not None and mark >= call.seq:
            pass
        elif call.epoch is not None and epoch == call.epoch:
            # Same Redis incarnation, never applied, and fenced now: it never will be.
            items = [((call.name, key), n) for key, n in call.items]
            try:
                await self._journal.write(items)
            except CounterOverflow:
                log.error("veneer counters: %d increment(s) in doubt overflow; dropped", count)
            except Exception as exc:
                log.warning("veneer counters: could not write increments in doubt: %s", exc)
                return False
            outcome = "in_doubt_written"
        else:
            outcome = "in_doubt_lost"
            log.warning(
                "veneer counters: %d buffered increment(s) in doubt lost: Redis lost its data "
                "before it could say whether it had applied them",
                count,
            )
        with self._lock:
            setattr(self._stats, outcome, getattr(self._stats, outcome) + count)
            self._stats.in_doubt -= count
        return True

    # ------------------------------------------------------------------- reads

    async def get(self, name: str, key: str, /) -> int:
        """The durable total (read through the cache) plus the deltas buffered in Redis."""
        return (await self.get_many(name, [key]))[key]

    async def get_many(self, name: str, keys: Iterable[str], /) -> dict[str, int]:
        """Several keys of one counter: one cache batch and one Redis round trip."""
        spec = self._spec(name)
        wanted = [check_counter_key(key) for key in keys]
        if not wanted:
            return {}
        prefix = read_tag(name)
        if spec.mode == "exact":
            return await self._exact_totals(name, spec, wanted)

        async def load_many(missing: list[str]) -> dict[str, list[Any]]:
            found = await self._store.durable([(name, k[len(prefix) :]) for k in missing])
            return {prefix + key: [d.total, d.last_flush] for (_, key), d in found.items()}

        cached = await self.cache.get_or_load_many(
            [prefix + key for key in wanted], load_many, ttl=self.read_ttl, tags=[prefix]
        )
        durable = {key: cached[prefix + key] or [0, None] for key in wanted}
        totals = {key: int(durable[key][0]) for key in wanted}
        groups: dict[int, list[str]] = defaultdict(list)
        for key in wanted:
            groups[shard_of(key, spec.shards)].append(key)
        order = list(groups.items())
        try:
            replies = await self._buffer.read([(name, shard, ks) for shard, ks in order])
        except RedisDown:
            self._stats.redis_errors += 1
            return totals  # what is buffered is out of sight while Redis is
        for (_shard, ks), (flush_id, buffered, claimed) in zip(order, replies, strict=True):
            for key, b, c in zip(ks, buffered, claimed, strict=True):
                # A claimed buffer whose flush this total already includes counts once.
                already = flush_id is not None and durable[key][1] == flush_id
                totals[key] += b + (0 if already else c)
        return totals

    async def _exact_totals(
        self, name: str, spec: CounterSpec, wanted: list[str]
    ) -> dict[str, int]:
        """Durable totals read through the cache under each key's read version (see
        ``_versions``): the version first, then the cache, then the database."""
        prefix = read_tag(name)
        try:
            versions = await self._versions.read(name, wanted, spec.shards)
        except RedisDown:
            # Through the cache all the same, unversioned: its outage handling applies
            # (in-process copies within max_stale, the source bulkhead), and so does its
            # staleness bound. A bump that failed dropped the counter's tag meanwhile.
            with self._lock:
                self._stats.redis_errors += 1
            by_cache_key = {prefix + key: key for key in wanted}
        else:
            by_cache_key = {f"{prefix}{key}@{versions[key]}": key for key in wanted}

        async def load_many(missing: list[str]) -> dict[str, list[Any]]:
            found = await self._store.durable([(name, by_cache_key[k]) for k in missing])
            back = {key: cache_key for cache_key, key in by_cache_key.items()}
            return {back[key]: [d.total, d.last_flush] for (_, key), d in found.items()}

        cached = await self.cache.get_or_load_many(
            list(by_cache_key), load_many, ttl=self.read_ttl, tags=[prefix]
        )
        return {
            key: int((cached[cache_key] or [0, None])[0]) for cache_key, key in by_cache_key.items()
        }

    # ---------------------------------------------------------------- plumbing

    def _spec(self, name: str) -> CounterSpec:
        spec = self.specs.get(name)
        if spec is None:
            raise UnknownCounter(name, self.specs)
        return spec

    async def _start(self) -> None:
        if not self._registered:
            await self._store.register(self.specs)
            self._registered = True
        if self._flusher is not None and not self._flusher_started and not self._closed:
            self._flusher_started = True
            self._flusher.start()

    async def flush(self) -> FlushReport:
        """One flush pass over this instance's buffered counters, now (with the lease, so
        it never collides with a running flusher)."""
        flusher = self._flusher or AsyncCounterFlusher._from_parts(
            self.cache, self._store, self._buffer, self.specs
        )
        return await flusher.run_once()

    async def compact(self, limit: int = 10_000) -> int:
        """Fold up to ``limit`` journal rows into totals now; returns how many."""
        return await self._store.compact(limit)

    def stats(self) -> CounterStats:
        stats = CounterStats(**self._stats.as_dict())
        stats.journal_batches = self._journal.batches
        stats.db_transactions = self._store.transactions
        return stats

    def _after_fork(self) -> None:
        # The parent owns what it had in flight: its doubts, writers and waiting callers.
        self._writers = deque()
        self._in_doubt = []
        self._settling = 0
        self._resolver = None
        self._journal.after_fork()
        self._store.after_fork()
        self._redis_group.after_fork()
        self._versions.after_fork()
        self._buffer.after_fork()
        self._flusher_started = False
        if self._flusher is not None:
            self._flusher._after_fork()
        if self._owns_engine:
            AsyncEngines.after_fork(self._engine)

    async def close(self, timeout: float = 5.0) -> None:
        """Stop the background work; settles the increments in doubt Redis can answer for
        within ``timeout`` seconds (the rest are logged)."""
        if self._closed:
            return
        waited = 0.0
        while self._in_doubt and waited < timeout and await self.resolve():
            await sleep(_RESOLVE_EVERY)
            waited += _RESOLVE_EVERY
        if self._in_doubt:
            log.warning(
                "veneer counters: closing with %d increment(s) in doubt (Redis unreachable)",
                sum(len(d.call.items) for d in self._in_doubt),
            )
        self._closed = True
        resolver, self._resolver = self._resolver, None
        if resolver is not None:
            await resolver.stop()
        if self._flusher is not None:
            await self._flusher.stop()
        await self._store.close()
        if self._owns_engine:
            await self._engine.dispose()

    async def __aenter__(self) -> AsyncCounters:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
