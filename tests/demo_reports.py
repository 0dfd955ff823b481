"""Report dicts in the schema of ``veneer demo --format json`` (version 1), built by hand.

They feed the HTML report's tests and tests/fixtures/demo-report.json (regenerate
with ``python tests/demo_reports.py``), which CI renders and opens in Chromium.
The figures are shaped like a real run's, not measured: the demo's own tests
check the measured ones.
"""

from __future__ import annotations

import copy
import json
import math
import sys
from pathlib import Path
from typing import Any

from veneer.demo._schema import METRICS, STACK_LABELS

FIXTURE = Path(__file__).parent / "fixtures" / "demo-report.json"

# name, title, seconds, story
PHASES = [
    ("steady", "Steady load", 8.0,
     "Both stacks answer from Redis; veneer's in-process tier also spares it the round trip."),
    ("blocking", "KEYS * and a big LRANGE", 8.0,
     "Another client's KEYS * stalled both Redis servers; naive waited behind it, veneer "
     "served hot keys from process memory."),
    ("hang", "Redis hung (SIGSTOP)", 9.0,
     "Naive's callers got timeouts; veneer's deadline and breaker sent reads to the "
     "database, which answered."),
    ("restart", "Redis killed, restarted empty", 9.0,
     "Naive lost every session and counter and stormed the database; veneer reloaded "
     "one key at a time from the database."),
    ("eviction", "Eviction storm (maxmemory)", 9.0,
     "Evictions deleted naive's only copy of sessions and counts; veneer lost cache "
     "entries only."),
    ("write_race", "Writes racing reads", 9.0,
     "Naive's cache-aside refilled old values after commits; veneer's leases refused the "
     "stale fills."),
    ("large_payload", "A large payload", 8.0,
     "A 2 MB product page went over naive's network on every read; veneer kept it "
     "compressed and in process."),
]  # fmt: skip

# Per phase and stack: (p50 ms, p99 ms, errors per sample, db queries per sample)
SHAPE = {
    "naive": [(0.4, 1.6, 0, 3), (2.5, 420, 0, 3), (2002, 2003, 95, 0), (3.0, 60, 2, 160),
              (0.6, 9, 0, 40), (0.5, 2.0, 0, 8), (1.8, 45, 0, 3)],
    "veneer": [(0.05, 0.9, 0, 2), (0.06, 4.0, 0, 2), (0.9, 55, 0, 30), (0.4, 12, 0, 22),
               (0.1, 2.5, 0, 12), (0.08, 1.5, 0, 9), (0.07, 1.8, 0, 2)],
}  # fmt: skip
DAMAGE = {  # logged_out, counts_lost, stale_reads, wrong_flags per phase (naive only)
    "restart": (212, 1840, 0, 64),
    "eviction": (57, 390, 0, 11),
    "write_race": (0, 0, 143, 0),
    "hang": (0, 1230, 0, 0),
}


def _samples(stack: str, interval: float) -> list[dict[str, Any]]:
    rows, t, start = [], 0.0, 0.0
    for (_, _, seconds, _), (p50, p99, errors, db) in zip(PHASES, SHAPE[stack], strict=True):
        while t + interval <= start + seconds + 1e-9:
            t += interval
            wobble = 1 + 0.15 * math.sin(t * 3.1)
            # A hung Redis: nothing completes until the first timeouts (2 s, one retry).
            silent = p50 >= 1000 and t - start <= 2.0
            rows.append({
                "t": round(t, 3), "requests": 0 if silent else round(200 * wobble),
                "errors": 0 if silent else errors,
                "p50_ms": None if silent else round(p50 * wobble, 3),
                "p99_ms": None if silent else round(p99 * wobble, 3),
                "db_queries": round(db * wobble),
            })  # fmt: skip
        start += seconds
    return rows


def _figures(stack: str, index: int, name: str, seconds: float) -> dict[str, Any]:
    p50, p99, errors, db = SHAPE[stack][index]
    lost = DAMAGE.get(name, (0, 0, 0, 0)) if stack == "naive" else (0, 0, 0, 0)
    requests = 0 if p50 >= 1000 else round(400 * seconds)
    return {
        "requests": requests + errors * 2 * int(seconds), "errors": errors * 2 * int(seconds),
        "p50_ms": p50, "p99_ms": p99, "db_qps": db * 2.0, "logged_out": lost[0],
        "counts_lost": lost[1], "stale_reads": lost[2], "wrong_flags": lost[3],
        "net_bytes": round((2_000_000 if name == "large_payload" and stack == "naive"
                            else 1_200) * requests),
    }  # fmt: skip


def _totals(phases: list[dict[str, Any]], stack: str) -> dict[str, Any]:
    rows = [p["stacks"][stack] for p in phases if not p["skipped"]]
    total = {k: sum(r[k] for r in rows) for k in ("requests", "errors", "logged_out",
             "counts_lost", "stale_reads", "wrong_flags", "net_bytes")}  # fmt: skip
    total["p50_ms"] = sorted(r["p50_ms"] for r in rows)[len(rows) // 2]
    total["p99_ms"] = max(r["p99_ms"] for r in rows)
    total["db_qps"] = round(sum(r["db_qps"] for r in rows) / len(rows), 1)
    return total


def full_report() -> dict[str, Any]:
    """A 60 s run with all seven phases and a timeline sampled every 0.5 s."""
    phases, start = [], 0.0
    for i, (name, title, seconds, story) in enumerate(PHASES):
        phases.append({
            "name": name, "title": title, "start_s": start, "end_s": start + seconds,
            "skipped": None, "story": story,
            "stacks": {s: _figures(s, i, name, seconds) for s in ("naive", "veneer")},
        })  # fmt: skip
        start += seconds
    return {
        "version": 1, "duration_s": 60.0, "elapsed_s": 60.4,
        "machine": {"cpus": 2, "python": "3.11.2", "platform": "Linux-6.1-x86_64",
                    "redis": "7.0.15"},
        "setup": {"redis": "two private redis-server (embedded)", "db": "temporary SQLite"},
        "stacks": ["naive", "veneer"],
        "stack_labels": dict(STACK_LABELS),
        "metrics": copy.deepcopy(METRICS), "phases": phases,
        "totals": {s: _totals(phases, s) for s in ("naive", "veneer")},
        "timeline": {"interval_s": 0.5, "naive": _samples("naive", 0.5),
                     "veneer": _samples("veneer", 0.5)},
        "checks": {"db_counter_total": 98_120, "acknowledged_increments": 98_120,
                   "veneer_counts_match_db": True},
    }  # fmt: skip


def degraded_report() -> dict[str, Any]:
    """A --redis run: the hang is skipped, figures are null, one stack has no samples."""
    report = full_report()
    hang = report["phases"][2]
    hang["skipped"] = "--redis was given: the demo does not SIGSTOP a server it did not start"
    hang["story"] = None
    hang["stacks"] = {"naive": None, "veneer": {"requests": 0, "p50_ms": None, "p99_ms": None}}
    report["phases"][0]["stacks"]["naive"]["p99_ms"] = None
    report["timeline"]["veneer"] = []
    for row in report["timeline"]["naive"][::7]:
        row["p99_ms"] = None
        row["p50_ms"] = None
    report["machine"] = {"cpus": None}
    report["setup"] = {"redis": "redis://:****@cache.internal:6379/0", "db": None}
    report["checks"] = None
    return report


if __name__ == "__main__":
    FIXTURE.write_text(json.dumps(full_report(), indent=1) + "\n")
    sys.stdout.write(f"wrote {FIXTURE}\n")
