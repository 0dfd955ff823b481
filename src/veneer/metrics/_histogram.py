"""A latency histogram cheap enough for every Redis read: a bisect and two additions.

Under threads a rare observation can be lost between a load and a store (like the
cache's own counters); the exported count is the sum of the buckets, so a scrape is
always self-consistent.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

__all__ = ["L2_READ_BUCKETS", "LOAD_BUCKETS", "Histogram"]

# Seconds. Redis reads: loopback is ~0.05-0.2 ms, another zone ~1 ms, the deadline 100 ms.
L2_READ_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
# Source loads: a primary-key query ~1 ms up to slow reports.
LOAD_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    def cumulative(self) -> tuple[list[tuple[float, int]], int, float]:
        """``([(upper bound, observations <= it), ...], count, sum)``; +Inf last."""
        total = 0
        buckets = []
        for bound, n in zip((*self.bounds, float("inf")), list(self.counts), strict=True):
            total += n
            buckets.append((bound, total))
        return buckets, total, self.sum
