"""Timing helpers: interleaved repetitions, medians, ratios measured in one run."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any


def per_call(fn: Callable[[], Any], number: int) -> float:
    """Seconds per call of ``fn`` over ``number`` calls."""
    started = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - started) / number


async def per_call_async(fn: Callable[[], Awaitable[Any]], number: int) -> float:
    started = time.perf_counter()
    for _ in range(number):
        await fn()
    return (time.perf_counter() - started) / number


def compare(cases: dict[str, Callable[[], Any]], number: int, rounds: int = 7) -> dict[str, float]:
    """Median seconds per call of each case; rounds interleave the cases so drift hits all."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for fn in cases.values():
        per_call(fn, max(1, number // 10))  # warm up
    for _ in range(rounds):
        for name, fn in cases.items():
            samples[name].append(per_call(fn, number))
    return {name: statistics.median(values) for name, values in samples.items()}


AsyncCases = dict[str, Callable[[], Awaitable[Any]]]


def compare_async(
    setup: Callable[[], Awaitable[tuple[AsyncCases, Callable[[], Awaitable[None]]]]],
    number: int,
    rounds: int = 7,
) -> dict[str, float]:
    """Like :func:`compare`, in one event loop: ``setup`` returns the cases and a cleanup."""

    async def run() -> dict[str, float]:
        cases, cleanup = await setup()
        try:
            samples: dict[str, list[float]] = {name: [] for name in cases}
            for fn in cases.values():
                await per_call_async(fn, max(1, number // 10))
            for _ in range(rounds):
                for name, fn in cases.items():
                    samples[name].append(await per_call_async(fn, number))
            return {name: statistics.median(values) for name, values in samples.items()}
        finally:
            await cleanup()

    return asyncio.run(run())


def report(title: str, results: dict[str, float], baseline: str) -> None:
    base = results[baseline]
    print(f"\n{title}  (baseline: {baseline})")
    for name, seconds in results.items():
        print(f"  {name:<48} {seconds * 1e6:9.3f} us   {seconds / base:6.2f}x")
