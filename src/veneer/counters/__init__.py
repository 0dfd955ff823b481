"""Counters and usage metering kept in the database, with Redis taking the write rate.

- ``exact`` counters: an acknowledged increment is committed to the database (an
  append-only journal, written in group commits, compacted into totals in batches);
  losing all of Redis loses none.
- ``buffered`` counters: acknowledged once Redis has them (one script call into a
  hash-tagged buffer); a flusher moves them to the database exactly once. What can be
  lost is what Redis itself loses before a flush (see docs/counters.md).

Reads are the durable total, read through the cache, plus what Redis buffers.
"""

from __future__ import annotations

from ._async._counters import AsyncCounters
from ._async._flusher import AsyncCounterFlusher
from ._spec import CounterOverflow, CounterSpec, CounterStoreError, UnknownCounter
from ._stats import CounterStats, FlushReport
from ._sync._counters import Counters
from ._sync._flusher import CounterFlusher
from ._tables import CounterTables, counter_tables, counters_ddl, create_counter_tables

__all__ = [
    "AsyncCounterFlusher",
    "AsyncCounters",
    "CounterFlusher",
    "CounterOverflow",
    "CounterSpec",
    "CounterStats",
    "CounterStoreError",
    "CounterTables",
    "Counters",
    "FlushReport",
    "UnknownCounter",
    "counter_tables",
    "counters_ddl",
    "create_counter_tables",
]
