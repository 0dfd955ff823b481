"""Keep the notable keys of a sample in bounded memory: the biggest, the longest, the hottest.

A sample can hold millions of keys; only the top few per type and the keys over
the big-key thresholds are worth naming in a report, so each list is a bounded
heap.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

from ._estimate import KeySample
from ._model import TopKey

__all__ = ["BIG_KEY_LIMITS", "KeyRanking", "big_key_limit", "to_top_key"]

# RedisInsight's thresholds (strings in bytes, the rest in elements); streams are
# not in its list, 10,000 entries is where XRANGE over a whole stream starts to hurt.
BIG_KEY_LIMITS: dict[str, int] = {
    "string": 100 * 1024,
    "hash": 5_000,
    "list": 1_000,
    "set": 1_000,
    "zset": 1_000,
    "stream": 10_000,
}

# How many offenders are kept by name; the rest are only counted.
MAX_BIG_KEYS = 500


def big_key_limit(type_: str) -> int | None:
    return BIG_KEY_LIMITS.get(type_)


def is_big(s: KeySample) -> bool:
    limit = BIG_KEY_LIMITS.get(s.type)
    return limit is not None and s.length is not None and s.length > limit


def to_top_key(s: KeySample) -> TopKey:
    return TopKey(
        key=s.key.decode("utf-8", "backslashreplace"),
        type=s.type,
        db=s.db,
        node=s.node,
        bytes=s.bytes,
        length=s.length,
        ttl_s=None if s.ttl_ms < 0 else round(s.ttl_ms / 1000.0, 3),
        freq=s.freq,
    )


class _Top:
    """The ``size`` largest items by a score; ties keep the first seen."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._heap: list[tuple[float, int, KeySample]] = []
        self._tick = itertools.count()

    def offer(self, score: float, s: KeySample) -> None:
        # The counter makes heap entries comparable without comparing samples;
        # negated so that, on equal scores, the earlier key stays.
        item = (score, -next(self._tick), s)
        if len(self._heap) < self.size:
            heapq.heappush(self._heap, item)
        elif item > self._heap[0]:
            heapq.heapreplace(self._heap, item)

    def items(self) -> list[KeySample]:
        return [s for _, _, s in sorted(self._heap, reverse=True)]


@dataclass(slots=True)
class KeyRanking:
    """Top keys per type by bytes and by length, big-key offenders, hottest keys."""

    top: int = 10
    by_bytes: dict[str, _Top] = field(default_factory=dict)
    by_length: dict[str, _Top] = field(default_factory=dict)
    big: _Top = field(default_factory=lambda: _Top(MAX_BIG_KEYS))
    big_count: int = 0
    hot: _Top = field(default_factory=lambda: _Top(10))

    def add(self, s: KeySample) -> None:
        if s.bytes is not None:
            self._bucket(self.by_bytes, s.type).offer(s.bytes, s)
        if s.length is not None:
            self._bucket(self.by_length, s.type).offer(s.length, s)
        if is_big(s):
            self.big_count += 1
            assert s.length is not None
            limit = BIG_KEY_LIMITS[s.type]
            self.big.offer(s.length / limit, s)
        if s.freq is not None and s.freq > 0:
            self.hot.offer(s.freq, s)

    def _bucket(self, table: dict[str, _Top], type_: str) -> _Top:
        found = table.get(type_)
        if found is None:
            found = table[type_] = _Top(self.top)
        return found

    def big_keys(self) -> list[KeySample]:
        """Offenders, worst first by how many times over their type's limit they are."""
        return self.big.items()

    def hot_keys(self) -> list[KeySample]:
        return self.hot.items()

    def top_keys(self) -> dict[str, dict[str, list[TopKey]]]:
        types = sorted(set(self.by_bytes) | set(self.by_length))
        out: dict[str, dict[str, list[TopKey]]] = {}
        for t in types:
            out[t] = {
                "by_bytes": [to_top_key(s) for s in self.by_bytes[t].items()]
                if t in self.by_bytes
                else [],
                "by_length": [to_top_key(s) for s in self.by_length[t].items()]
                if t in self.by_length
                else [],
            }
        return out
