"""zstd against lz4 for veneer's payloads: ratio and speed, in one run.

python benchmarks/compression.py
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import lz4.frame
import msgspec
import zstandard


def rows(n: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "id": i,
            "name": f"product {i}",
            "description": "A fine product with words " * rng.randint(1, 5),
            "price": rng.random() * 100,
            "tags": ["a", "bb", "ccc"][: rng.randint(0, 3)],
        }
        for i in range(n)
    ]


def per_call(fn: Callable[[], Any], number: int = 2000) -> float:
    fn()
    started = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - started) / number * 1e6


def main() -> None:
    zc, zd = zstandard.ZstdCompressor(level=1), zstandard.ZstdDecompressor()
    print(f"{'payload':<22} {'codec':<8} {'bytes':>8} {'ratio':>6} {'comp us':>8} {'dec us':>8}")
    for n in (10, 100, 1000):
        data = msgspec.msgpack.encode(rows(n))
        for name, comp, dec in (
            ("zstd-1", zc.compress, zd.decompress),
            ("lz4", lz4.frame.compress, lz4.frame.decompress),
        ):
            packed = comp(data)
            c_us = per_call(lambda c=comp, raw=data: c(raw), 500)  # type: ignore[misc]
            d_us = per_call(lambda d=dec, p=packed: d(p), 500)  # type: ignore[misc]
            print(
                f"{n:>5} rows {len(data):>9} B {name:<8} {len(packed):>8} "
                f"{len(data) / len(packed):>6.1f} {c_us:>8.1f} {d_us:>8.1f}"
            )


if __name__ == "__main__":
    main()
