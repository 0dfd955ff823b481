"""What one stack's callers saw, counted per phase and per timeline interval."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Bucket", "Recorder", "percentile"]

EVENTS = ("logged_out", "wrong_flags", "stale_reads")


def percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


@dataclass
class Bucket:
    requests: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    db_queries: int = 0
    events: Counter[str] = field(default_factory=Counter)
    loads: Counter[int] = field(default_factory=Counter)  # product loads, by product
    read: set[int] = field(default_factory=set)  # products requested
    error_kinds: Counter[str] = field(default_factory=Counter)
    # From the mark on (the restarted Redis answering): loads and products requested.
    marked_loads: Counter[int] | None = None
    marked_read: set[int] | None = None

    def figures(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        p50, p99 = percentile(ordered, 0.50), percentile(ordered, 0.99)
        return {
            "requests": self.requests,
            "errors": self.errors,
            "p50_ms": None if p50 is None else round(p50 * 1000, 3),
            "p99_ms": None if p99 is None else round(p99 * 1000, 3),
            "db_queries": self.db_queries,
            **{name: self.events[name] for name in EVENTS},
            "product_loads": sum(self.loads.values()),
            "products_read": len(self.read),
            "max_loads_per_product": max(self.loads.values(), default=0),
            "error_kinds": dict(self.error_kinds.most_common(3)),
            **self._marked(),
        }

    def _marked(self) -> dict[str, Any]:
        if self.marked_loads is None or self.marked_read is None:
            return {}
        return {
            "loads_after_restart": sum(self.marked_loads.values()),
            "products_read_after_restart": len(self.marked_read),
            "max_loads_after_restart": max(self.marked_loads.values(), default=0),
        }


class Recorder:
    """Thread-safe tallies: one bucket per phase, one per ``interval`` seconds of the run."""

    def __init__(self, t0: float | None, interval: float) -> None:
        self.t0 = t0
        self._before = Bucket()
        self.interval = interval
        self._lock = threading.Lock()
        self.phases: dict[str, Bucket] = {}
        self.current = Bucket()
        self.timeline: dict[int, Bucket] = {}

    def switch(self, phase: str) -> None:
        with self._lock:
            self.current = self.phases.setdefault(phase, Bucket())

    def _slot(self, now: float) -> Bucket:
        if self.t0 is None or now < self.t0:
            return self._before  # the setup's statements: on no timeline
        index = int((now - self.t0) / self.interval)
        slot = self.timeline.get(index)
        if slot is None:
            slot = self.timeline[index] = Bucket()
        return slot

    def request(self, started: float, latency: float, error: BaseException | None) -> None:
        with self._lock:
            for bucket in (self.current, self._slot(started + latency)):
                bucket.requests += 1
                bucket.latencies.append(latency)
                if error is not None:
                    bucket.errors += 1
                    bucket.error_kinds[type(error).__name__] += 1

    def event(self, name: str) -> None:
        with self._lock:
            self.current.events[name] += 1

    def db_query(self) -> None:
        now = time.monotonic()
        with self._lock:
            self.current.db_queries += 1
            self._slot(now).db_queries += 1

    def mark(self) -> None:
        with self._lock:
            self.current.marked_loads, self.current.marked_read = Counter(), set()

    def product_load(self, pid: int) -> None:
        with self._lock:
            self.current.loads[pid] += 1
            if self.current.marked_loads is not None:
                self.current.marked_loads[pid] += 1

    def product_read(self, pid: int) -> None:
        with self._lock:
            self.current.read.add(pid)
            if self.current.marked_read is not None:
                self.current.marked_read.add(pid)

    def running(self) -> dict[str, Any]:
        """The current phase so far, for the live view."""
        with self._lock:
            return self.current.figures()

    def timeline_rows(self) -> list[dict[str, Any]]:
        with self._lock:
            slots = dict(self.timeline)
        if not slots:
            return []
        rows = []
        for index in range(max(slots) + 1):
            slot = slots.get(index, Bucket())
            f = slot.figures()
            rows.append(
                {
                    "t": round((index + 1) * self.interval, 3),
                    "requests": f["requests"],
                    "errors": f["errors"],
                    "p50_ms": f["p50_ms"],
                    "p99_ms": f["p99_ms"],
                    "db_queries": f["db_queries"],
                }
            )
        return rows
