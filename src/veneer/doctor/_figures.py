"""Turn raw readings into the report's figures: percentiles, CPU, command costs, ops/s trend.

Pure functions over what ``INFO`` returned (redis-py's parsed dicts) and the
doctor's own command counts, so that the doctor's traffic never passes for the
application's.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ._model import CommandCost, CpuReport, RttReport

__all__ = [
    "busy_share",
    "command_costs",
    "cpu_between",
    "median",
    "ops_series",
    "percentile",
    "rtt_report",
    "trend",
]

# A change of more than this between the first and the last third of the window is a trend.
TREND_CHANGE = 0.25


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in [0, 100]) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def rtt_report(samples: Sequence[float]) -> RttReport | None:
    """Round trips (seconds) as milliseconds; None without samples."""
    if not samples:
        return None
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    return RttReport(
        samples=len(samples),
        p50_ms=_ms(p50),
        p99_ms=_ms(p99),
        min_ms=_ms(min(samples)),
        max_ms=_ms(max(samples)),
        spread_ms=_ms(p99 - p50),
    )


def _cpu_seconds(info: Mapping[str, Any], suffix: str) -> float | None:
    sys_, user = info.get(f"used_cpu_sys{suffix}"), info.get(f"used_cpu_user{suffix}")
    if sys_ is None or user is None:
        return None
    return float(sys_) + float(user)


def cpu_between(
    first: Mapping[str, Any], second: Mapping[str, Any], window_s: float
) -> CpuReport | None:
    """Main-thread (else whole-process) CPU between two INFO readings ``window_s`` apart."""
    if window_s <= 0:
        return None
    p0, p1 = _cpu_seconds(first, ""), _cpu_seconds(second, "")
    if p0 is None or p1 is None:
        return None
    m0, m1 = _cpu_seconds(first, "_main_thread"), _cpu_seconds(second, "_main_thread")
    process = max(0.0, (p1 - p0) / window_s)
    per_thread = m0 is not None and m1 is not None
    main = max(0.0, (m1 - m0) / window_s) if m0 is not None and m1 is not None else process
    return CpuReport(
        window_s=round(window_s, 3),
        main_thread=round(main, 4),
        process=round(process, 4),
        per_thread=per_thread,
    )


def _stats(info: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for name, value in info.items():
        if name.startswith("cmdstat_") and isinstance(value, Mapping):
            out[name.removeprefix("cmdstat_")] = (
                int(value.get("calls", 0)),
                int(value.get("usec", 0)),
            )
    return out


def busy_share(
    first: Mapping[str, Any], second: Mapping[str, Any], window_s: float
) -> float | None:
    """Share of the window the server spent running commands (commandstats usec, wall time).

    Unlike CPU time this does not shrink when the server's host is starved of CPU: it is
    how long other clients had to wait behind commands.
    """
    if window_s <= 0:
        return None
    before, after = _stats(first), _stats(second)
    usec = sum(u - before.get(n, (0, 0))[1] for n, (_, u) in after.items())
    if not after:
        return None
    return round(min(1.0, max(0.0, usec / 1e6 / window_s)), 4)


def _without_own(
    stats: Mapping[str, tuple[int, int]], own_calls: Mapping[str, int]
) -> dict[str, tuple[int, int]]:
    out = {}
    for name, (calls, usec) in stats.items():
        own = min(calls, own_calls.get(name, 0))
        if calls > own:
            out[name] = (calls - own, round(usec * (calls - own) / calls))
    return out


def command_costs(
    first: Mapping[str, Any],
    second: Mapping[str, Any],
    own_calls: Mapping[str, int],
    *,
    top: int = 5,
) -> tuple[list[CommandCost], str]:
    """The commands that took most server time over the window, the doctor's own removed.

    The doctor's usec cannot be told apart from the application's calls of the same
    command, so a command's usec is scaled down by the share of its calls the doctor
    made. When nothing else ran in the window, the server's lifetime figures are
    used instead (scope ``lifetime``).
    """
    before, after = _stats(first), _stats(second)
    window = _without_own(
        {
            n: (c - before.get(n, (0, 0))[0], u - before.get(n, (0, 0))[1])
            for n, (c, u) in after.items()
        },
        own_calls,
    )
    scope = "window"
    if sum(u for _, u in window.values()) <= 0:
        scope = "lifetime"
        window = _without_own(after, own_calls)
    total = sum(u for _, u in window.values())
    ranked = sorted(window.items(), key=lambda kv: (-kv[1][1], -kv[1][0], kv[0]))[:top]
    return [
        CommandCost(
            command=name.upper(),
            calls=calls,
            usec=usec,
            usec_per_call=round(usec / calls, 2) if calls else 0.0,
            share=round(usec / total, 4) if total else 0.0,
        )
        for name, (calls, usec) in ranked
    ], scope


def ops_series(points: Sequence[tuple[float, int, int]]) -> list[float]:
    """Ops/s between successive (time, total_commands_processed, doctor's commands so far).

    The doctor's own commands are subtracted. The server counts a command after running
    it, so each reading leaves out its own INFO and includes the previous one: counting
    the doctor's commands up to and including each reading's INFO balances that.
    """
    out = []
    for (t0, n0, own0), (t1, n1, own1) in itertools.pairwise(points):
        if t1 <= t0:
            continue
        others = max(0, (n1 - n0) - (own1 - own0))
        out.append(round(others / (t1 - t0), 1))
    return out


def trend(series: Sequence[float]) -> str:
    """rising, falling or steady: the last third of the window against the first."""
    if len(series) < 2:
        return "unknown"
    third = max(1, len(series) // 3)
    head = sum(series[:third]) / third
    tail = sum(series[-third:]) / third
    base = max(head, tail, 1.0)
    if abs(tail - head) / base <= TREND_CHANGE or abs(tail - head) < 5:
        return "steady"
    return "rising" if tail > head else "falling"
