"""The flusher: moves buffered counters from Redis to the database, exactly once.

One pass, for every shard of every buffered counter:

1. claim the shard's buffer under a new flush id, with the shard's lease (one script:
   the buffer is renamed, so increments go on into a fresh one); a claim left by a
   flusher that died is handed out again under its old flush id;
2. read the claimed buffer; in ONE database transaction, skip the flush ids the ledger
   already has, add the others' deltas to the totals and write their ledger rows;
3. after the commit, invalidate the cached totals, then delete the claimed buffers.

A crash before 2 commits leaves the claim for a replay; a crash after it leaves the
ledger row, so the replay applies nothing and only deletes. The lease keeps two
flushers off one shard; the ledger's primary key makes that a matter of efficiency,
not of correctness.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable

from sqlalchemy.exc import SQLAlchemyError

from ..._async._cache import AsyncCache
from ..._async._concurrency import Background, sleep, spawn
from ..._errors import RedisDown
from .._spec import GUARD_ABOVE, CounterSpec, CounterStoreError, read_tag
from .._stats import FlushReport
from .._tables import AsyncEngine, AsyncEngines, CounterTables, counter_tables
from ._buffer import AsyncBuffer, Claim
from ._store import AsyncCounterStore, ClaimedFlush

__all__ = ["AsyncCounterFlusher"]

log = logging.getLogger("veneer")

Hook = Callable[[str], None]


class AsyncCounterFlusher:
    """Flushes the buffered counters recorded in the counter tables (or only ``counters``).

    Run :meth:`run_forever` in a worker (``veneer counters flush``), :meth:`start` it
    in the background of this process, or call :meth:`run_once`. ``hook(point)`` is
    called at ``"claimed"`` and ``"committed"`` (tests stop a flusher exactly there).
    """

    def __init__(
        self,
        cache: AsyncCache,
        engine: AsyncEngine | str,
        /,
        *,
        counters: Iterable[str] | None = None,
        tables: CounterTables | None = None,
        interval: float = 1.0,
        lease_ttl: float = 10.0,
        buffer_ttl: float = 7 * 86400.0,
        compact_batch: int = 10_000,
        hook: Hook | None = None,
    ) -> None:
        built, self._owns_engine = AsyncEngines.build(engine)
        store = AsyncCounterStore(built, tables if tables is not None else counter_tables())
        buffer = AsyncBuffer(cache.redis_access("counters"), ttl=buffer_ttl)
        self._setup(cache, store, buffer, None, interval, lease_ttl, compact_batch, hook)
        self._only = None if counters is None else set(counters)

    @classmethod
    def _from_parts(
        cls,
        cache: AsyncCache,
        store: AsyncCounterStore,
        buffer: AsyncBuffer,
        specs: dict[str, CounterSpec],
        *,
        interval: float = 1.0,
        lease_ttl: float = 10.0,
    ) -> AsyncCounterFlusher:
        """A flusher sharing a ``Counters``' store and buffer (its counters only)."""
        self = cls.__new__(cls)
        self._owns_engine = False
        self._only = None
        self._setup(cache, store, buffer, specs, interval, lease_ttl, 10_000, None)
        return self

    def _setup(
        self,
        cache: AsyncCache,
        store: AsyncCounterStore,
        buffer: AsyncBuffer,
        specs: dict[str, CounterSpec] | None,
        interval: float,
        lease_ttl: float,
        compact_batch: int,
        hook: Hook | None,
    ) -> None:
        self.cache = cache
        self._store = store
        self._buffer = buffer
        self._specs = specs
        self.interval = interval
        self.lease_ttl = lease_ttl
        self.compact_batch = compact_batch
        self._hook = hook or (lambda point: None)
        self._token = secrets.token_hex(8)
        self._stopping = False
        self._running = False
        self._background: Background | None = None
        self._last_prune = 0.0
        self.passes = 0
        self.totals = FlushReport()

    # ------------------------------------------------------------------ a pass

    async def _buffered(self) -> dict[str, CounterSpec]:
        specs = self._specs if self._specs is not None else await self._store.definitions()
        return {
            name: spec
            for name, spec in specs.items()
            if spec.mode == "buffered" and (self._only is None or name in self._only)
        }

    async def run_once(self) -> FlushReport:
        """One pass over every shard; errors are reported, never raised (the claims they
        leave are replayed by the next pass once the lease expires)."""
        report = FlushReport()
        try:
            specs = await self._buffered()
            shards = [(name, s) for name, spec in specs.items() for s in range(spec.shards)]
            claims = await self._buffer.claim(shards, self._token, self.lease_ttl)
            if claims:
                await self._flush(claims, report)
        except RedisDown as exc:
            report.errors.append(f"Redis: {exc}")
        except (SQLAlchemyError, CounterStoreError) as exc:
            report.errors.append(f"database: {exc.__class__.__name__}: {exc}")
        try:
            report.compacted = await self._store.compact(self.compact_batch)
            await self._prune()
        except (SQLAlchemyError, CounterStoreError) as exc:
            report.errors.append(f"compaction: {exc.__class__.__name__}: {exc}")
        self._account(report)
        return report

    async def _flush(self, claims: list[Claim], report: FlushReport) -> None:
        report.claimed = len(claims)
        report.replays = sum(claim.replay for claim in claims)
        self._hook("claimed")
        for claim in claims:
            claim.deltas = await self._buffer.claimed_deltas(claim)
        done, totals = await self._store.apply_flushes(
            [ClaimedFlush(c.name, c.shard, c.flush_id, c.deltas) for c in claims]
        )
        self._hook("committed")
        report.already_applied = len(done)
        for claim in claims:
            if claim.flush_id not in done:
                report.applied += 1
                report.keys += len(claim.deltas)
                report.increments += sum(claim.deltas.values())
        # Readers add a claimed buffer unless their cached total already includes its
        # flush: drop the cached totals before the buffers, never the other way round.
        for name in sorted({claim.name for claim in claims}):
            if not await self.cache.invalidate_tag(read_tag(name)):
                report.errors.append(
                    f"cached totals of {name!r} not invalidated yet (Redis unreachable): "
                    "its claimed buffers stay until the next pass"
                )
                claims = [claim for claim in claims if claim.name != name]
        finished = []
        for claim in claims:
            guards: list[tuple[str, str]] = []
            for key in claim.deltas:
                total = totals.get((claim.name, key))
                if total is not None and abs(total) >= GUARD_ABOVE:
                    guards.append((key, str(total)))
                elif claim.guarded:
                    guards.append((key, ""))
            finished.append((claim, guards))
        await self._buffer.finish(finished, self._token)

    async def _prune(self) -> None:
        now = time.monotonic()
        if now - self._last_prune >= 3600:
            self._last_prune = now
            # A replay can only come from a claim still in Redis (buffer_ttl at most).
            await self._store.prune_ledger(2 * self._buffer.ttl_ms / 1000)

    def _account(self, report: FlushReport) -> None:
        self.passes += 1
        t = self.totals
        t.claimed += report.claimed
        t.replays += report.replays
        t.already_applied += report.already_applied
        t.applied += report.applied
        t.keys += report.keys
        t.increments += report.increments
        t.compacted += report.compacted
        if report.errors:
            t.errors = (t.errors + report.errors)[-20:]
            log.warning("veneer counters flush: %s", "; ".join(report.errors))

    # ------------------------------------------------------------------ a loop

    async def run_forever(self) -> None:
        """Flush every ``interval`` seconds until :meth:`request_stop` (the pass in progress
        finishes first)."""
        self._stopping = False
        self._running = True
        try:
            await self._loop()
        finally:
            self._running = False

    async def _loop(self) -> None:
        while not self._stopping:
            started = time.monotonic()
            try:
                await self.run_once()
            except Exception:  # never let one bad pass end the worker
                log.exception("veneer counters flush: unexpected error")
            while not self._stopping and time.monotonic() - started < self.interval:
                await sleep(min(0.05, self.interval))

    def request_stop(self) -> None:
        """Ask the loop to stop after the pass in progress (safe from a signal handler)."""
        self._stopping = True

    def start(self) -> None:
        """Run :meth:`run_forever` in the background of this process."""
        if self._background is None:
            self._background = spawn(self.run_forever, "veneer-counters-flusher")

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop the background loop once its pass in progress is done (at most
        ``timeout`` seconds; an interrupted pass is replayed by the next flusher)."""
        self.request_stop()
        background, self._background = self._background, None
        if background is None:
            return
        deadline = time.monotonic() + timeout
        while self._running and time.monotonic() < deadline:
            await sleep(0.01)
        await background.stop()

    async def close(self) -> None:
        await self.stop()
        if self._owns_engine:
            await self._store.engine.dispose()

    def _after_fork(self) -> None:
        self._background = None
        self._token = secrets.token_hex(8)  # never hold the parent's leases
