"""The coordinator: starts both stacks' processes, runs the phases on the clock, injects
each phase's fault into both Redis servers at once, and gathers what was measured."""

from __future__ import annotations

import multiprocessing
import os
import platform
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._faults import FAULTS, Fault, Target, fill_keyspace
from ._runner import stack_main

__all__ = ["PHASES", "DemoConfig", "Phase", "phase_plan", "run_demo"]

STACKS = ("naive", "veneer")


@dataclass(frozen=True)
class Phase:
    name: str
    title: str
    weight: float  # seconds of the default 60 s run


# Seconds of the default run; the rest of its minute is the measurements between
# phases (probes of every session and counter) and the setup.
PHASES = (
    Phase("steady", "steady load", 6),
    Phase("blocking", "another client runs KEYS * and a full LRANGE", 6),
    Phase("hang", "Redis hung (SIGSTOP)", 7),
    Phase("restart", "Redis killed and restarted empty", 8),
    Phase("eviction", "eviction storm under maxmemory (allkeys-lru)", 7),
    Phase("write_race", "concurrent writes racing reads", 8),
    Phase("large_payload", "a large payload on every page", 6),
)
# A hung call of the naive stack takes 2 s (1 s timeout, one retry): the faults need
# longer than that to show; the other phases need a few hundred requests.
MIN_PHASE_S = 2.0
MIN_FAULT_S = 2.6
WARMUP_S = 1.5


def phase_plan(duration: float) -> list[tuple[Phase, float]]:
    scale = duration / 60.0
    return [
        (p, max(MIN_FAULT_S if p.name in ("hang", "restart") else MIN_PHASE_S, p.weight * scale))
        for p in PHASES
    ]


@dataclass
class DemoConfig:
    duration: float = 60.0
    naive_url: str = ""
    veneer_url: str = ""
    naive_dsn: str = ""
    veneer_dsn: str = ""
    drop_veneer_tables: bool = True
    rate: float = 240.0  # requests per second and stack
    workers: int = 8
    products: int = 2000
    users: int = 500
    catalog_items: int = 800
    interval: float = 0.5
    seed: int = 7
    prefix: str = "veneer_demo_"
    namespace: str = field(default_factory=lambda: f"veneer-demo-{uuid.uuid4().hex[:8]}")

    @property
    def keyspace(self) -> tuple[int, int]:
        """Keys and list items the blocking phase scans: production-sized stalls (a
        KEYS * of a second) in the full run, smaller in short runs (quicker to fill)."""
        return (1_000_000, 1_000_000) if self.duration >= 40 else (200_000, 300_000)

    def child(self, stack: str) -> dict[str, Any]:
        return {
            "stack": stack,
            "redis_url": self.naive_url if stack == "naive" else self.veneer_url,
            "dsn": self.naive_dsn if stack == "naive" else self.veneer_dsn,
            "rate": self.rate,
            "workers": self.workers,
            "products": self.products,
            "users": self.users,
            "catalog_items": self.catalog_items,
            "interval": self.interval,
            "seed": self.seed,
            "prefix": self.prefix,
            "namespace": self.namespace,
        }


class StackFailed(RuntimeError):
    pass


class Child:
    """One stack's process and its pipe."""

    def __init__(self, ctx: Any, cfg: dict[str, Any]) -> None:
        self.name = cfg["stack"]
        self.conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(
            target=stack_main, args=(child_conn, cfg), name=f"veneer-demo-{self.name}"
        )
        self.process.daemon = True
        self.process.start()
        child_conn.close()

    def send(self, *message: Any) -> None:
        self.conn.send(message)

    def receive(self, expect: str, timeout: float) -> Any:
        if not self.conn.poll(timeout):
            raise StackFailed(f"the {self.name} stack did not answer within {timeout:.0f} s")
        try:
            kind, body = self.conn.recv()
        except EOFError:
            raise StackFailed(f"the {self.name} stack's process ended") from None
        if kind == "failed":
            raise StackFailed(f"the {self.name} stack failed:\n{body}")
        if kind != expect:
            raise StackFailed(f"the {self.name} stack answered {kind!r}, expected {expect!r}")
        return body

    def ask(self, kind: str, expect: str, *args: Any, timeout: float = 60) -> Any:
        self.send(kind, *args)
        return self.receive(expect, timeout)

    def stop(self) -> None:
        """Ends the process (by its PID) if it is still there; idempotent."""
        try:
            self.conn.close()
        except OSError:
            pass
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(5)


Tick = Callable[[dict[str, Any]], None]


def _wait(
    seconds: float, on_tick: Tick | None, state: dict[str, Any], children: list[Child]
) -> None:
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(0.5, left))
        if on_tick is not None:
            state["running"] = {c.name: c.ask("running", "running", timeout=30) for c in children}
            state["phase_left_s"] = max(0.0, end - time.monotonic())
            on_tick(state)


def run_demo(
    cfg: DemoConfig,
    targets: dict[str, Target],
    *,
    on_tick: Tick | None = None,
    register: Callable[[Callable[[], None]], object],
    say: Callable[[str], None] = lambda text: None,
) -> dict[str, Any]:
    """Runs the phases; ``register`` receives cleanups (the caller's ExitStack), so that
    a Ctrl-C anywhere still stops every process this started."""
    ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
    children = []
    for stack in STACKS:
        child = Child(ctx, cfg.child(stack))
        register(child.stop)
        children.append(child)
    for child in children:
        child.receive("ready", timeout=120)
    say(
        "stacks ready, in processes " + ", ".join(f"{c.name} pid {c.process.pid}" for c in children)
    )
    ours = [t for t in targets.values() if t.ours]
    keys, items = cfg.keyspace
    if ours and all(t.ours for t in targets.values()):
        say(f"another service's data on each Redis: {keys:,} keys and a list of {items:,}")
    else:
        ours = []
    fillers = [threading.Thread(target=fill_keyspace, args=(t, keys, items)) for t in ours]
    for f in fillers:
        f.start()
    for f in fillers:
        f.join()

    plan = phase_plan(cfg.duration)
    all_ours = all(t.ours for t in targets.values())
    state: dict[str, Any] = {
        "plan": [(p.name, p.title, s) for p, s in plan],
        "index": -1,
        "phase": "warmup",
        "running": {},
    }
    t0 = time.monotonic()
    for child in children:
        child.send("start", t0)
        child.send("phase", "warmup")
    _wait(WARMUP_S, on_tick, state, children)

    phases: list[dict[str, Any]] = []
    for index, (phase, seconds) in enumerate(plan):
        fault: Fault = FAULTS[phase.name]()
        state.update(index=index, phase=phase.name, title=phase.title, phase_s=seconds)
        record: dict[str, Any] = {"name": phase.name, "title": phase.title, "skipped": None}
        if fault.needs_servers and not all_ours:
            now = round(time.monotonic() - t0, 3)
            record.update(start_s=now, end_s=now, skipped=fault.skip_reason, net_bytes={})
            phases.append(record)
            continue
        for t in targets.values():
            t.meter_start()
        record["start_s"] = round(time.monotonic() - t0, 3)
        for child in children:
            child.send("phase", phase.name)
        fault.begin(list(targets.values()))
        if phase.name == "restart":
            for child in children:
                child.send("mark")  # the restarted servers answer from here on
        try:
            _wait(seconds, on_tick, state, children)
        finally:
            fault.end(list(targets.values()))
        record["net_bytes"] = {name: t.meter_end() for name, t in targets.items()}
        for child in children:
            child.send("measure")
        record["measured"] = {c.name: c.receive("measured", 60) for c in children}
        record["end_s"] = round(time.monotonic() - t0, 3)
        phases.append(record)
    elapsed = time.monotonic() - t0
    results = {
        c.name: c.ask("stop", "stopped", cfg.drop_veneer_tables, timeout=60) for c in children
    }
    return {
        "phases": phases,
        "results": results,
        "elapsed_s": round(elapsed, 3),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "redis": targets["naive"].redis_version(),
        },
    }
