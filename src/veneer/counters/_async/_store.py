"""The database side of counters for the asyncio shell: reads, journal appends, flushes
and compaction, each one transaction."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ..._async._concurrency import current_loop
from ..._errors import ConfigurationError
from .._spec import CounterSpec, CounterStoreError
from .._sql import JournalInsert, Pair, durable_select, fits, journal_rows, totals_upsert
from .._tables import AsyncConnection, AsyncEngine, CounterTables

__all__ = ["AsyncCounterStore", "ClaimedFlush", "Durable"]

# How many (name, key) pairs go into one IN list.
_CHUNK = 500

# A kept journal connection idle this long goes back to the pool (whose recycling and
# pre-ping settings then apply) rather than being used again.
_HELD_IDLE = 10.0


@dataclass(frozen=True, slots=True)
class Durable:
    total: int
    last_flush: str | None


@dataclass(slots=True)
class ClaimedFlush:
    """One shard's claimed buffer, to be applied under ``flush_id``."""

    name: str
    shard: int
    flush_id: str
    deltas: dict[str, int]


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class AsyncCounterStore:
    """The counter tables on one engine. ``transactions`` counts the ones it committed."""

    def __init__(self, engine: AsyncEngine, tables: CounterTables) -> None:
        self.engine = engine
        self.tables = tables
        self.dialect = engine.dialect.name
        self.transactions = 0
        self._skip_locked = self.dialect == "postgresql"
        # One statement is one transaction: a journal append that needs no read goes out
        # as a single autocommit INSERT (one round trip, no BEGIN and no COMMIT), on a
        # connection the store keeps checked out (no pool checkout, isolation change and
        # reset per group commit: a third of the append's CPU).
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._journal_insert = JournalInsert(engine.dialect, tables.journal)
        self._held: list[tuple[AsyncConnection, object, float]] = []  # idle, with loop, since

    # ------------------------------------------------------------------ reads

    async def durable(self, pairs: Sequence[Pair]) -> dict[Pair, Durable]:
        """Each pair's durable total (a missing pair is 0) in one snapshot per chunk."""
        out = {pair: Durable(0, None) for pair in pairs}
        try:
            async with self.engine.connect() as conn:
                for chunk in _chunks(list(pairs)):
                    for name, key, total, last in await conn.execute(
                        durable_select(self.tables, chunk)
                    ):
                        out[(name, key)] = Durable(int(total), last)
        except SQLAlchemyError as exc:
            raise CounterStoreError(f"could not read counters: {exc}") from exc
        return out

    async def _current(self, conn: AsyncConnection, pairs: Sequence[Pair]) -> dict[Pair, int]:
        totals: dict[Pair, int] = dict.fromkeys(pairs, 0)
        for chunk in _chunks(sorted(pairs)):
            for name, key, total, _last in await conn.execute(durable_select(self.tables, chunk)):
                totals[(name, key)] = int(total)
        return totals

    async def _lock_totals(self, conn: AsyncConnection, pairs: Sequence[Pair]) -> dict[Pair, int]:
        """The compacted totals of ``pairs``, their rows locked (in key order, so flushes
        and compactions never deadlock on each other)."""
        t = self.tables.totals.c
        totals: dict[Pair, int] = {}
        for chunk in _chunks(sorted(pairs)):
            stmt = (
                sa.select(t.name, t.key, t.total)
                .where(sa.tuple_(t.name, t.key).in_(chunk))
                .order_by(t.name, t.key)
                .with_for_update()
            )
            for name, key, total in await conn.execute(stmt):
                totals[(name, key)] = int(total)
        return totals

    # ---------------------------------------------------------------- journal

    async def append(
        self, batches: Sequence[Sequence[tuple[Pair, int]]], check: set[Pair]
    ) -> tuple[list[bool], dict[Pair, int]]:
        """Append the batches in one transaction. For the pairs in ``check`` the durable
        totals are read first and a batch that would take one past 64 bits is refused.
        Returns, per batch, whether it was appended, and the checked totals after it."""
        if not check:
            return await self._append_unchecked(batches)
        accepted = [False] * len(batches)
        try:
            async with self.engine.begin() as conn:
                running = await self._current(conn, sorted(check)) if check else {}
                sums: dict[Pair, int] = defaultdict(int)
                for index, batch in enumerate(batches):
                    trial: dict[Pair, int] = {}
                    for pair, n in batch:
                        if pair in running:
                            total = trial.get(pair, running[pair]) + n
                            if not fits(total):
                                break
                            trial[pair] = total
                    else:
                        running.update(trial)
                        accepted[index] = True
                        for pair, n in batch:
                            sums[pair] += n
                rows = journal_rows((pair, delta) for pair, delta in sums.items() if delta)
                if rows:
                    await conn.execute(sa.insert(self.tables.journal), rows)
        except SQLAlchemyError as exc:
            raise CounterStoreError(f"the database refused the increments: {exc}") from exc
        self.transactions += 1
        return accepted, running

    async def _append_unchecked(
        self, batches: Sequence[Sequence[tuple[Pair, int]]]
    ) -> tuple[list[bool], dict[Pair, int]]:
        """Every batch accepted, one row per pair, in ONE statement (atomic on its own)."""
        sums: dict[Pair, int] = defaultdict(int)
        for batch in batches:
            for pair, n in batch:
                sums[pair] += n
        rows = [(name, key, delta) for (name, key), delta in sums.items() if delta]
        accepted = [True] * len(batches)
        if not rows:
            return accepted, {}
        sql = self._journal_insert.sql(len(rows))
        if sql is None:  # too many rows for one statement: a transaction of several
            return await self._append_many(rows, accepted)
        conn = await self._take_held()
        try:
            await conn.exec_driver_sql(sql, self._journal_insert.params(rows))
        except BaseException as exc:
            await self._discard(conn)
            if isinstance(exc, SQLAlchemyError):
                raise CounterStoreError(f"the database refused the increments: {exc}") from exc
            raise
        self._give_back(conn)
        self.transactions += 1
        return accepted, {}

    async def _take_held(self) -> AsyncConnection:
        loop, now = current_loop(), time.monotonic()
        while self._held:
            try:
                conn, bound, since = self._held.pop()
            except IndexError:  # another thread took the last one
                break
            if bound is not loop:
                continue  # bound to an event loop that is gone: leave it to the GC
            if now - since < _HELD_IDLE:
                return conn
            await self._discard(conn)  # idle a while: back to the pool (its recycling)
        return await self._autocommit.connect()

    def _give_back(self, conn: AsyncConnection) -> None:
        self._held.append((conn, current_loop(), time.monotonic()))

    async def _discard(self, conn: AsyncConnection) -> None:
        try:
            await conn.close()
        except Exception:  # a broken connection: the pool has invalidated it already
            pass

    async def close(self) -> None:
        """Return the connections the journal writer keeps to the pool."""
        held, self._held = self._held, []
        loop = current_loop()
        for conn, bound, _since in held:
            if bound is loop:
                await self._discard(conn)

    def after_fork(self) -> None:
        """In a forked child: the parent's connections are the parent's (never used here)."""
        self._held = []

    async def _append_many(
        self, rows: list[tuple[str, str, int]], accepted: list[bool]
    ) -> tuple[list[bool], dict[Pair, int]]:
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    sa.insert(self.tables.journal),
                    [{"name": name, "key": key, "delta": delta} for name, key, delta in rows],
                )
        except SQLAlchemyError as exc:
            raise CounterStoreError(f"the database refused the increments: {exc}") from exc
        self.transactions += 1
        return accepted, {}

    # ----------------------------------------------------------------- flushes

    async def apply_flushes(
        self, flushes: Sequence[ClaimedFlush]
    ) -> tuple[set[str], dict[Pair, int]]:
        """Apply every flush not in the ledger yet, with its ledger row, in one transaction.

        Returns the flush ids that were already applied (a replay) and the new compacted
        totals of the pairs this call changed. A concurrent replay of the same flush id
        loses on the ledger's primary key and rolls back whole.
        """
        if not flushes:
            return set(), {}
        ledger = self.tables.flushes
        ids = [f.flush_id for f in flushes]
        async with self.engine.begin() as conn:
            found = await conn.execute(
                sa.select(ledger.c.flush_id).where(ledger.c.flush_id.in_(ids))
            )
            done = {row[0] for row in found}
            todo = [f for f in flushes if f.flush_id not in done]
            new_totals: dict[Pair, int] = {}
            if todo:
                pairs = [(f.name, key) for f in todo for key in f.deltas]
                current = await self._lock_totals(conn, pairs)
                upserts: list[dict[str, Any]] = []
                spill: list[tuple[Pair, int]] = []
                for flush in todo:
                    for key, delta in flush.deltas.items():
                        pair = (flush.name, key)
                        total = current.get(pair, 0) + delta
                        if fits(total):
                            new_totals[pair] = total
                            upserts.append(
                                {"name": flush.name, "key": key, "total": delta,
                                 "last_flush": flush.flush_id}
                            )  # fmt: skip
                        else:
                            # Never lost: kept in the journal (reads add it), compacted
                            # once the total has room again.
                            spill.append((pair, delta))
                if upserts:
                    await conn.execute(
                        totals_upsert(self.dialect, self.tables, with_flush=True), upserts
                    )
                if spill:
                    await conn.execute(sa.insert(self.tables.journal), journal_rows(spill))
                await conn.execute(
                    sa.insert(ledger),
                    [
                        {"flush_id": f.flush_id, "name": f.name, "shard": f.shard,
                         "keys": len(f.deltas), "delta": sum(f.deltas.values())}
                        for f in todo
                    ],
                )  # fmt: skip
        self.transactions += 1
        return done, new_totals

    # -------------------------------------------------------------- compaction

    async def compact(self, limit: int = 10_000) -> int:
        """Fold up to ``limit`` journal rows into totals in one transaction; returns how
        many rows it folded. Rows whose total would overflow stay in the journal."""
        j = self.tables.journal
        stmt = sa.select(j.c.id, j.c.name, j.c.key, j.c.delta).order_by(j.c.id).limit(limit)
        if self._skip_locked:
            stmt = stmt.with_for_update(skip_locked=True)
        async with self.engine.begin() as conn:
            rows = (await conn.execute(stmt)).all()
            if not rows:
                return 0
            sums: dict[Pair, int] = defaultdict(int)
            ids: dict[Pair, list[int]] = defaultdict(list)
            for row_id, name, key, delta in rows:
                sums[(name, key)] += delta
                ids[(name, key)].append(row_id)
            current = await self._lock_totals(conn, list(sums))
            merged = [pair for pair, delta in sums.items() if fits(current.get(pair, 0) + delta)]
            if merged:
                await conn.execute(
                    totals_upsert(self.dialect, self.tables, with_flush=False),
                    [
                        {"name": n, "key": k, "total": sums[(n, k)], "last_flush": None}
                        for n, k in merged
                    ],
                )
                gone = [row_id for pair in merged for row_id in ids[pair]]
                for chunk in _chunks(gone, 5000):
                    await conn.execute(sa.delete(j).where(j.c.id.in_(chunk)))
        self.transactions += 1
        return sum(len(ids[pair]) for pair in merged)

    async def prune_ledger(self, older_than_seconds: float) -> int:
        """Drop ledger rows older than the Redis keys a replay could come from."""
        ledger = self.tables.flushes
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
        if self.dialect == "sqlite":  # CURRENT_TIMESTAMP: naive UTC text
            cutoff = cutoff.replace(tzinfo=None)
        async with self.engine.begin() as conn:
            result = await conn.execute(sa.delete(ledger).where(ledger.c.applied_at < cutoff))
        self.transactions += 1
        return int(result.rowcount or 0)

    # ------------------------------------------------------------ definitions

    async def register(self, specs: dict[str, CounterSpec]) -> None:
        """Record each counter's mode and shards; refuse a process that disagrees."""
        defs = self.tables.defs
        try:
            async with self.engine.begin() as conn:
                known = {
                    name: CounterSpec(mode, shards)
                    for name, mode, shards in await conn.execute(
                        sa.select(defs.c.name, defs.c.mode, defs.c.shards).where(
                            defs.c.name.in_(list(specs))
                        )
                    )
                }
                for name, spec in specs.items():
                    if name in known and known[name] != spec:
                        raise ConfigurationError(
                            f"counter {name!r} is declared {spec} here but the database "
                            f"records {known[name]}: every process must declare it the same "
                            "way (changing a mode or shard count needs a migration, see "
                            "docs/counters.md)"
                        )
                new = [
                    {"name": n, "mode": s.mode, "shards": s.shards}
                    for n, s in specs.items()
                    if n not in known
                ]
                if new:
                    await conn.execute(sa.insert(defs), new)
        except IntegrityError:
            # Another process registered them at the same moment: check against its rows.
            await self.register(specs)
            return
        except SQLAlchemyError as exc:
            raise CounterStoreError(f"could not register counters: {exc}") from exc
        self.transactions += 1

    async def definitions(self) -> dict[str, CounterSpec]:
        defs = self.tables.defs
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(defs.c.name, defs.c.mode, defs.c.shards))
            return {name: CounterSpec(mode, shards) for name, mode, shards in rows}

    async def recent_keys(self, name: str, limit: int) -> list[str]:
        """The keys of ``name`` whose totals changed last (for ``verify``'s sample)."""
        t = self.tables.totals.c
        stmt = sa.select(t.key).where(t.name == name).order_by(t.updated_at.desc()).limit(limit)
        async with self.engine.connect() as conn:
            return [row[0] for row in await conn.execute(stmt)]

    async def ledger_has(self, flush_ids: Sequence[str]) -> set[str]:
        ledger = self.tables.flushes
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(ledger.c.flush_id).where(ledger.c.flush_id.in_(list(flush_ids)))
            )
            return {row[0] for row in rows}
