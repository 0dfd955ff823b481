"""Django's cache API: VeneerCache against Django's RedisCache and django-redis.

    python benchmarks/django_cache.py        # a private redis-server, loopback

All four backends talk to the same private redis-server in the same run (each in
a database or namespace of its own); rounds interleave the cases, medians of 7.
Every case goes through ``django.core.cache.caches[alias]``: key making and
validation, serialization and the backend's own work, as a view pays them.

- Django's ``RedisCache`` (the baseline) and django-redis, both pickling;
- ``VeneerCache`` with L1 off (``l1_size=0``: every read is a Redis read);
- ``VeneerCache`` with L1 on (a hit is in-process), copying on read (the
  default: each read decodes its own copy), and with ``copy_on_read=False``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _timing import compare

from servers import RedisServer

ROW = {f"field_{i}": f"value number {i} " * 2 for i in range(24)}  # about 1 KiB
SMALL = {"id": 7, "name": "ada", "tags": ["a", "b"]}  # about 40 B
TEXT = "x" * 64

BACKENDS = {
    "Django RedisCache (baseline)": "rediscache",
    "django-redis": "djangoredis",
    "VeneerCache, L1 off": "veneer_l2",
    "VeneerCache, L1 on": "veneer_l1",
    "VeneerCache, L1 on, copy_on_read=False": "veneer_shared",
}
BASELINE = "Django RedisCache (baseline)"


def configure(url: str) -> None:
    import django
    from django.conf import settings

    veneer = "veneer.integrations.django.VeneerCache"
    settings.configure(
        CACHES={
            "rediscache": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": url + "/1",
            },
            "djangoredis": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url + "/2"},
            "veneer_l2": {
                "BACKEND": veneer,
                "LOCATION": url + "/0",
                "OPTIONS": {"namespace": "bench-l2", "l1_size": 0},
            },
            "veneer_l1": {
                "BACKEND": veneer,
                "LOCATION": url + "/0",
                "OPTIONS": {"namespace": "bench-l1", "l1_ttl": 3600},
            },
            "veneer_shared": {
                "BACKEND": veneer,
                "LOCATION": url + "/0",
                "OPTIONS": {"namespace": "bench-shared", "l1_ttl": 3600, "copy_on_read": False},
            },
        },
    )
    django.setup()


def cases_for(operation: str) -> tuple[dict[str, Callable[[], Any]], int]:
    from django.core.cache import caches

    backends = {name: caches[alias] for name, alias in BACKENDS.items()}
    for cache in backends.values():
        veneer = getattr(cache, "veneer", None)
        if veneer is not None:
            assert veneer.ready(), "no subscription: L1 would stay empty"
    if operation == "get hit, 64 B str":
        for cache in backends.values():
            cache.set("text", TEXT, 3600)
        return {n: (lambda c=c: c.get("text")) for n, c in backends.items()}, 4000
    if operation == "get hit, 1 KiB dict":
        for cache in backends.values():
            cache.set("row", ROW, 3600)
        return {n: (lambda c=c: c.get("row")) for n, c in backends.items()}, 4000
    if operation == "get_many(100), 40 B dicts":
        keys = [f"k{i}" for i in range(100)]
        for cache in backends.values():
            cache.set_many(dict.fromkeys(keys, SMALL), 3600)
        return {n: (lambda c=c: c.get_many(keys)) for n, c in backends.items()}, 400
    if operation == "set, 1 KiB dict":
        return {n: (lambda c=c: c.set("w", ROW, 3600)) for n, c in backends.items()}, 2000
    raise ValueError(operation)


def async_hits() -> dict[str, float]:
    """``aget`` hits of the 1 KiB dict, in one event loop (Django's RedisCache runs every
    ``a*`` call through ``sync_to_async``; VeneerCache answers L1 hits on the loop)."""
    from django.core.cache import caches

    async def run() -> dict[str, float]:
        backends = {name: caches[alias] for name, alias in BACKENDS.items()}
        samples: dict[str, list[float]] = {name: [] for name in backends}
        for cache in backends.values():
            await cache.aget("row")
        for _ in range(7):
            for name, cache in backends.items():
                started = time.perf_counter()
                for _ in range(1000):
                    await cache.aget("row")
                samples[name].append((time.perf_counter() - started) / 1000)
        return {name: statistics.median(values) for name, values in samples.items()}

    return asyncio.run(run())


def main() -> None:
    server = RedisServer()
    try:
        configure(f"redis://127.0.0.1:{server.port}")
        table: dict[str, dict[str, float]] = {}
        for operation in (
            "get hit, 64 B str",
            "get hit, 1 KiB dict",
            "get_many(100), 40 B dicts",
            "set, 1 KiB dict",
        ):
            cases, number = cases_for(operation)
            for fn in cases.values():
                fn()
            table[operation] = compare(cases, number=number, rounds=7)
        table["aget hit, 1 KiB dict"] = async_hits()
        names = list(BACKENDS)
        print("\n| operation | " + " | ".join(names) + " |")
        print("| --- |" + " ---: |" * len(names))
        for operation, results in table.items():
            base = results[BASELINE]
            cells = [
                f"{results[n] * 1e6:.1f} us ({results[n] / base:.2f}x)"
                if results[n] * 1e6 < 100
                else f"{results[n] * 1e6:.0f} us ({results[n] / base:.2f}x)"
                for n in names
            ]
            print(f"| {operation} | " + " | ".join(cells) + " |")
        for operation in ("get hit, 64 B str", "get hit, 1 KiB dict"):
            r = table[operation]
            base = r[BASELINE]
            copying = base / r["VeneerCache, L1 on"]
            shared = base / r["VeneerCache, L1 on, copy_on_read=False"]
            print(
                f"\n{operation}: Redis tier {r['VeneerCache, L1 off'] / base:.2f}x of RedisCache "
                f"(goal <= 1); L1 hit {copying:.0f}x faster copying, {shared:.0f}x shared "
                "(goal >= 50x)"
            )
    finally:
        from veneer.integrations.django import _config

        _config.close_all()
        server.stop()


if __name__ == "__main__":
    main()
