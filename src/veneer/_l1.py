"""L1: the in-process tier, bounded by entries and bytes, evicting with SIEVE.

SIEVE (Zhang et al., NSDI 2024) keeps a FIFO queue and one "visited" bit per
entry; a hit only sets the bit, so the hit path takes no lock and moves no
node. That matters here: an L1 hit must stay under a microsecond in CPython,
and the LRU bookkeeping of ``OrderedDict.move_to_end`` or a TinyLFU sketch
update would cost more than the lookup itself. On skewed (Zipf) workloads SIEVE's
hit ratio is at or above LRU's (``benchmarks/l1_policy.py`` measures it).

Expired entries stay in the map until evicted or invalidated, so a caller may
still serve them as *stale* (the outage path); the fast path only checks
``expires > now``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["L1Entry", "L1Store"]


class L1Entry:
    __slots__ = (
        "expires", "fresh_until", "key", "newer", "older", "size", "tags", "value", "visited",
    )  # fmt: skip

    def __init__(
        self,
        key: str,
        value: Any,
        expires: float,
        fresh_until: float,
        size: int,
        tags: tuple[str, ...],
    ) -> None:
        self.key = key
        self.value = value
        self.expires = expires  # monotonic: past it the entry is not served as fresh
        self.fresh_until = fresh_until  # wall clock, copied from the envelope (SWR)
        self.size = size
        self.tags = tags
        self.visited = False
        self.newer: L1Entry | None = None
        self.older: L1Entry | None = None


class L1Store:
    """A bounded map of key -> :class:`L1Entry`.

    ``map`` is public on purpose: the cache front reads it directly on its hot
    path (one dict lookup, one comparison). Every mutation goes through the
    methods below, under one lock.
    """

    __slots__ = (
        "_hand",
        "_head",
        "_lock",
        "_tag_index",
        "_tail",
        "bytes",
        "evictions",
        "map",
        "max_bytes",
        "max_entries",
    )

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.map: dict[str, L1Entry] = {}
        self.bytes = 0
        self.evictions = 0
        self._tag_index: dict[str, set[str]] = {}
        self._head: L1Entry | None = None  # newest
        self._tail: L1Entry | None = None  # oldest
        self._hand: L1Entry | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.map)

    def put(
        self,
        key: str,
        value: Any,
        *,
        expires: float,
        fresh_until: float,
        size: int,
        tags: tuple[str, ...] = (),
        unless: Callable[[], bool] | None = None,
    ) -> bool:
        """Insert ``key``; with ``unless``, only if ``unless()`` is false under the lock.

        An invalidation changes what ``unless`` sees before it discards (under the
        same lock), so a put guarded this way either lands before the discard, which
        removes it, or sees the invalidation and gives up: no check-then-put window.
        """
        if self.max_entries <= 0 or size > self.max_bytes:
            return False
        entry = L1Entry(key, value, expires, fresh_until, size, tags)
        with self._lock:
            if unless is not None and unless():
                return False
            old = self.map.get(key)
            if old is not None:
                self._unlink(key, old)
            while self.map and (
                len(self.map) >= self.max_entries or self.bytes + size > self.max_bytes
            ):
                self._evict_one()
            self.map[key] = entry
            self.bytes += size
            entry.older = self._head
            if self._head is not None:
                self._head.newer = entry
            self._head = entry
            if self._tail is None:
                self._tail = entry
            for tag in tags:
                self._tag_index.setdefault(tag, set()).add(key)
        return True

    def discard(self, key: str) -> bool:
        with self._lock:
            entry = self.map.get(key)
            if entry is None:
                return False
            self._unlink(key, entry)
            return True

    def discard_tag(self, tag: str) -> int:
        with self._lock:
            keys = self._tag_index.pop(tag, set())
            removed = 0
            for key in keys:
                entry = self.map.get(key)
                if entry is not None:
                    self._unlink(key, entry)
                    removed += 1
            return removed

    def discard_many(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                entry = self.map.get(key)
                if entry is not None:
                    self._unlink(key, entry)

    def clear(self) -> None:
        with self._lock:
            self.map.clear()
            self._tag_index.clear()
            self.bytes = 0
            self._head = self._tail = self._hand = None

    def after_fork(self) -> None:
        """In a forked child: a fresh lock; if a parent thread held the old one it may have
        been mid-update, so the entries are dropped rather than trusted."""
        if self._lock.locked():
            self.map = {}
            self.bytes = 0
            self._tag_index = {}
            self._head = self._tail = self._hand = None
        self._lock = threading.Lock()

    def expire_all(self, now: float, wall_now: float) -> None:
        """Stop trusting every entry as fresh (from ``now``, monotonic); they stay
        available as stale, their staleness counted from ``wall_now`` at the latest."""
        with self._lock:
            for entry in self.map.values():
                entry.expires = min(entry.expires, now)
                entry.fresh_until = min(entry.fresh_until, wall_now)

    def _evict_one(self) -> None:
        node = self._hand or self._tail
        assert node is not None
        while node.visited:
            node.visited = False
            node = node.newer or self._tail
            assert node is not None
        self._hand = node.newer
        self._unlink(node.key, node)
        self.evictions += 1

    def _unlink(self, key: str, entry: L1Entry) -> None:
        del self.map[key]
        self.bytes -= entry.size
        if self._hand is entry:
            self._hand = entry.newer
        if entry.newer is not None:
            entry.newer.older = entry.older
        else:
            self._head = entry.older
        if entry.older is not None:
            entry.older.newer = entry.newer
        else:
            self._tail = entry.newer
        entry.newer = entry.older = None
        for tag in entry.tags:
            keys = self._tag_index.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._tag_index[tag]
