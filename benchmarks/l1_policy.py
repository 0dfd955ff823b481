"""Hit ratio of the L1 eviction policy (SIEVE) against plain LRU on skewed workloads.

    python benchmarks/l1_policy.py

Same key stream for both, for several Zipf skews and cache sizes (as a share of
the key space). A scan (one pass over cold keys) is mixed in at 10% of the
reads in the last rows: that is where LRU loses its hot set.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Iterator

from veneer._l1 import L1Store

KEYS = 100_000
READS = 400_000


def zipf_stream(alpha: float, seed: int, scan_share: float = 0.0) -> Iterator[str]:
    rng = random.Random(seed)
    weights = [1.0 / (rank**alpha) for rank in range(1, KEYS + 1)]
    picks = rng.choices(range(KEYS), weights=weights, k=READS)
    scan = KEYS  # cold keys outside the Zipf space
    for pick in picks:
        if scan_share and rng.random() < scan_share:
            scan += 1
            yield f"k{scan}"
        yield f"k{pick}"


def lru_hits(stream: Iterator[str], capacity: int) -> float:
    cache: OrderedDict[str, None] = OrderedDict()
    hits = total = 0
    for key in stream:
        total += 1
        if key in cache:
            hits += 1
            cache.move_to_end(key)
        else:
            cache[key] = None
            if len(cache) > capacity:
                cache.popitem(last=False)
    return hits / total


def sieve_hits(stream: Iterator[str], capacity: int) -> float:
    store = L1Store(max_entries=capacity, max_bytes=1 << 40)
    hits = total = 0
    for key in stream:
        total += 1
        entry = store.map.get(key)
        if entry is not None:
            hits += 1
            entry.visited = True
        else:
            store.put(key, None, expires=1e18, fresh_until=1e18, size=1)
    return hits / total


def main() -> None:
    print(f"{'workload':<28} {'size':>6} {'LRU':>8} {'SIEVE':>8} {'diff':>8}")
    for alpha, scan in ((0.8, 0.0), (1.0, 0.0), (1.2, 0.0), (1.0, 0.1)):
        for share in (0.01, 0.1):
            capacity = int(KEYS * share)
            lru = lru_hits(zipf_stream(alpha, 1, scan), capacity)
            sieve = sieve_hits(zipf_stream(alpha, 1, scan), capacity)
            name = f"zipf {alpha}" + (f" + {scan:.0%} scan" if scan else "")
            print(
                f"{name:<28} {share:>6.0%} {lru:>8.2%} {sieve:>8.2%} {(sieve - lru) * 100:>+7.2f}pp"
            )


if __name__ == "__main__":
    main()
