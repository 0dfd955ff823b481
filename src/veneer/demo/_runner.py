"""One stack's process: the shop's visitors (paced worker threads), its writer, and the
probes that count what the stack lost. Driven by the demo's coordinator over a pipe.

Each stack runs in a process of its own so that one stack's CPU (decoding large
values, say) never shows up in the other's latencies through the GIL.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
import traceback
from collections import Counter
from typing import Any, Protocol

from ._record import Recorder
from ._shop import ShopDB, make_engine, quiet

__all__ = ["StackRun", "stack_main"]

FLAG_TRUTH = True  # the operator switched new-checkout on before the run
HOT_WRITES = 5  # the write race updates the five most viewed products


class Stack(Protocol):
    name: str

    def setup(self, flag_on: bool) -> None: ...
    def close(self) -> None: ...
    def login(self, uid: int) -> str: ...
    def session(self, token: str) -> dict[str, Any] | None: ...
    def allow(self, uid: int) -> bool: ...
    def flag(self, uid: int) -> bool: ...
    def product(self, pid: int) -> dict[str, Any]: ...
    def count_view(self, pid: int) -> None: ...
    def catalog(self, limit: int) -> dict[str, Any]: ...
    def update_product(self, pid: int) -> int: ...
    def held_views(self, pids: list[int]) -> dict[int, int]: ...
    def alive(self, tokens: list[str]) -> set[str]: ...


def _zipf(n: int, s: float) -> list[float]:
    return [1.0 / (rank**s) for rank in range(1, n + 1)]


class StackRun:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.name: str = cfg["stack"]
        self.recorder = Recorder(None, cfg["interval"])
        self.engine = make_engine(cfg["dsn"])
        self.db = ShopDB(self.engine, cfg["prefix"], self.recorder.db_query)
        self.db.on_load = self._loaded
        self.products: int = cfg["products"]
        self.users: int = cfg["users"]
        self.workers: int = cfg["workers"]
        rng = random.Random(cfg["seed"])
        self.pids = list(range(self.products))
        order = self.pids[:]
        rng.shuffle(order)
        self.product_order = order  # order[rank] is the product of that popularity rank
        self.product_weights = _zipf(self.products, 1.0)
        self.hot = order[:HOT_WRITES]
        self.stack: Stack | None = None
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.tokens: dict[int, str] = {}
        self.dead: set[str] = set()
        self.dead_lock = threading.Lock()
        self.issued = 0
        self.acked: list[Counter[int]] = [Counter() for _ in range(self.workers)]
        self.acked_version: dict[int, int] = {}
        self.writes_acked = 0
        self.writing = threading.Event()
        self.catalog_on = threading.Event()
        # pid -> (a reader holds the old row, the write is acknowledged): the write race.
        self._waiting: dict[int, tuple[threading.Event, threading.Event]] = {}
        self.phase = ""
        self.lost_so_far = 0
        self.counts_lost: dict[str, int] = {}
        self.held_total: int | None = None
        self.acked_total = 0
        self.back_after: float | None = None
        self.restarts_before = 0
        self.held_unacknowledged = 0

    # ------------------------------------------------------------------ setup

    def prepare(self) -> dict[str, Any]:
        self.db.seed(self.products, self.users)
        if self.name == "naive":
            from ._naive import NaiveStack

            stack: Stack = NaiveStack(self.cfg["redis_url"], self.db)
        else:
            from ._veneer_stack import VeneerStack

            stack = VeneerStack(
                self.cfg["redis_url"], self.db, self.cfg["prefix"], self.cfg["namespace"]
            )
        self.stack = stack
        with quiet():
            stack.setup(FLAG_TRUTH)
            # Every user is logged in before the run: a later miss is a logout, not a visit.
            for uid in range(self.users):
                self.tokens[uid] = stack.login(uid)
        self.issued = self.users
        return {"stack": self.name}

    def _loaded(self, pid: int) -> None:
        self.recorder.product_load(pid)
        race = self._waiting.get(pid)
        if race is not None:
            # This reader holds the row as it was; the writer commits now, and the reader
            # caches its page only once the write is acknowledged. Production hits this
            # interleaving by chance under load; the demo makes every write hit it.
            race[0].set()
            race[1].wait(0.5)

    def start(self, t0: float) -> None:
        self.recorder.t0 = t0
        per_worker = self.cfg["rate"] / self.workers
        for i in range(self.workers):
            t = threading.Thread(
                target=self._visitor, args=(i, per_worker), name=f"visitor-{i}", daemon=True
            )
            t.start()
            self.threads.append(t)
        writer = threading.Thread(target=self._writer, name="writer", daemon=True)
        writer.start()
        self.threads.append(writer)

    def mark_when_healthy(self) -> None:
        """Starts counting the loads after the restart from when this stack uses the
        restarted Redis again (veneer: it has noticed the new server, which clears its
        in-process copies, and its circuit breaker is closed; naive: at once)."""
        before = self.restarts_before

        def wait() -> None:
            started = time.monotonic()
            back = getattr(self.stack, "redis_back", lambda before: True)
            while not back(before) and time.monotonic() - started < 10:
                time.sleep(0.01)
            self.back_after = round(time.monotonic() - started, 3)
            self.recorder.mark()

        threading.Thread(target=wait, daemon=True).start()

    def switch(self, phase: str) -> None:
        if phase == "restart":
            self.restarts_before = getattr(self.stack, "restarts", lambda: 0)()
        self.phase = phase
        self.recorder.switch(phase)
        (self.writing.set if phase == "write_race" else self.writing.clear)()
        (self.catalog_on.set if phase == "large_payload" else self.catalog_on.clear)()

    # ------------------------------------------------------------------ callers

    def _visitor(self, index: int, rate: float) -> None:
        assert self.stack is not None
        stack = self.stack
        rng = random.Random(self.cfg["seed"] * 1000 + index)
        # Each visitor thread serves its own users: one user is never in two requests.
        uids = [u for u in range(self.users) if u % self.workers == index]
        user_weights = _zipf(len(uids), 0.8)
        acked = self.acked[index]
        period = 1.0 / rate
        due = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            if now < due:
                self.stop.wait(due - now)
                continue
            # Closed loop: a visitor thread waits for its previous request, and a late one
            # goes on from now rather than bursting to catch up. So a stall shows as fewer
            # requests and one slow request per thread, each timed from its own start;
            # eight threads keep those above the 1% a p99 looks at.
            due = max(due + period, now - period)
            started = time.monotonic()
            uid = rng.choices(uids, weights=user_weights)[0]
            pid = rng.choices(self.product_order, weights=self.product_weights)[0]
            error: BaseException | None = None
            try:
                self._request(stack, uid, pid, acked)
            except Exception as exc:
                error = exc
            self.recorder.request(started, time.monotonic() - started, error)

    def _request(self, stack: Stack, uid: int, pid: int, acked: Counter[int]) -> None:
        token = self.tokens[uid]
        if stack.session(token) is None:
            with self.dead_lock:
                if token not in self.dead:
                    self.dead.add(token)
                    self.recorder.event("logged_out")
            self.tokens[uid] = stack.login(uid)
            with self.dead_lock:
                self.issued += 1
        stack.allow(uid)
        if stack.flag(uid) != FLAG_TRUTH:
            self.recorder.event("wrong_flags")
        expected = self.acked_version.get(pid, 1)  # the last write acknowledged to its writer
        self.recorder.product_read(pid)
        if stack.product(pid)["version"] < expected:
            self.recorder.event("stale_reads")
        stack.count_view(pid)
        acked[pid] += 1
        if self.catalog_on.is_set():
            stack.catalog(self.cfg["catalog_items"])

    def _writer(self) -> None:
        """During the write race: price changes to hot products, two at a time: the first
        drops the cached page, so a reader misses and reads the row; the second commits
        while that reader holds the row and before it caches the page (the race's window)."""
        i = 0
        while not self.stop.is_set():
            if not self.writing.wait(0.1):
                continue
            pid = self.hot[i % len(self.hot)]
            i += 1
            holding, acknowledged = threading.Event(), threading.Event()
            self._waiting[pid] = (holding, acknowledged)
            try:
                self._write(pid)
                if holding.wait(0.2):
                    self._write(pid)
            finally:
                self._waiting.pop(pid, None)
                acknowledged.set()
            self.stop.wait(0.005)

    def _write(self, pid: int) -> None:
        assert self.stack is not None
        started = time.monotonic()
        error: BaseException | None = None
        try:
            version = self.stack.update_product(pid)
            self.acked_version[pid] = max(version, self.acked_version.get(pid, 1))
            self.writes_acked += 1
        except Exception as exc:
            error = exc
        self.recorder.request(started, time.monotonic() - started, error)

    # ------------------------------------------------------------------ probes

    def measure(self) -> dict[str, Any]:
        """At a phase's end: counts lost (acknowledged minus held) and sessions that no
        longer load, charged to the phase that just ended."""
        assert self.stack is not None
        acked: Counter[int] = Counter()
        for c in self.acked:
            acked.update(dict(c))  # copied first: increments acknowledged after are not owed
        result: dict[str, Any] = {"phase": self.phase}
        try:
            held = self.stack.held_views(self.pids)
        except Exception as exc:
            result["held_error"] = repr(exc)
        else:
            lost = sum(max(0, n - held.get(pid, 0)) for pid, n in acked.items())
            # Increments that raised (a timeout) may have been applied all the same: held
            # beyond acknowledged, per key. They do not offset another key's loss.
            self.held_unacknowledged = sum(
                max(0, held.get(pid, 0) - acked.get(pid, 0)) for pid in self.pids
            )
            self.counts_lost[self.phase] = max(0, lost - self.lost_so_far)
            self.lost_so_far = max(lost, self.lost_so_far)
            self.held_total = sum(held.values())
            self.acked_total = sum(acked.values())
        tokens = list(self.tokens.values())
        try:
            alive = self.stack.alive(tokens)
        except Exception as exc:
            result["probe_error"] = repr(exc)
        else:
            with self.dead_lock:
                for token in tokens:
                    if token not in alive and token not in self.dead:
                        self.dead.add(token)
                        self.recorder.event("logged_out")
        return result

    def finish(self, drop_tables: bool) -> dict[str, Any]:
        self.stop.set()
        for t in self.threads:
            t.join(5)
        phases = {}
        for name, bucket in self.recorder.phases.items():
            figures = bucket.figures()
            figures["counts_lost"] = self.counts_lost.get(name)
            phases[name] = figures
        final = sum(sum(c.values()) for c in self.acked)
        checks = {
            "views_acknowledged_at_end": final,
            "views_acknowledged": self.acked_total,
            "views_held": self.held_total,
            "views_lost": self.lost_so_far,
            "views_held_unacknowledged": self.held_unacknowledged,
            "sessions_issued": self.issued,
            "sessions_lost": len(self.dead),
            "writes_acknowledged": self.writes_acked,
            "redis_used_again_after_restart_s": self.back_after,
        }
        if self.stack is not None:
            self.stack.close()
            if drop_tables:
                drop = getattr(self.stack, "drop_tables", None)
                if drop is not None:
                    drop()
                self.db.drop()
        self.engine.dispose()
        return {"phases": phases, "timeline": self.recorder.timeline_rows(), "checks": checks}


def stack_main(conn: Any, cfg: dict[str, Any]) -> None:
    """The child's loop: answer the coordinator until it says stop or goes away."""
    # Ctrl-C is the coordinator's to handle: it stops this process and the servers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # veneer's warnings (breaker opened, Redis restarted) would scroll through the live
    # view; what they say is measured and reported instead.
    logging.getLogger("veneer").setLevel(logging.CRITICAL)
    try:
        run = StackRun(cfg)
        conn.send(("ready", run.prepare()))
    except Exception:
        conn.send(("failed", traceback.format_exc()))
        return
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the coordinator is gone: so is this run
        kind = message[0]
        if kind == "start":
            run.start(message[1])
        elif kind == "phase":
            run.switch(message[1])
        elif kind == "mark":
            run.mark_when_healthy()
        elif kind == "running":
            conn.send(("running", run.recorder.running()))
        elif kind == "measure":
            conn.send(("measured", run.measure()))
        elif kind == "stop":
            conn.send(("stopped", run.finish(message[1])))
            return
