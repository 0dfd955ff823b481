"""Consistency checker: how stale do reads get, per fault and per invalidation mode?

    python benchmarks/consistency.py                  # every fault, the default options
    python benchmarks/consistency.py --short          # the test suite's short mode
    python benchmarks/consistency.py --faults redis-stop,reader-stop --json out.json

Needs PostgreSQL (``VENEER_TEST_POSTGRES``) and a ``redis-server`` binary; starts its
own Redis on a free loopback port. One bounded run per fault. In each run:

- a writer process commits versioned rows (``UPDATE ... SET version = version + 1``) in
  one table per mode and logs when each commit returned: ``hook`` (the SQLAlchemy
  after-commit invalidator), ``outbox`` (the same, durable, with ``veneer relay``
  running), ``trigger`` (plain SQL; a trigger notifies ``veneer listen --resync``)
  and ``naive`` (commit, then ``DEL`` the key: the control);
- three reader processes read rows through their own caches, one with L1 on, one
  with L1 off, and one naive (GET, on a miss SELECT and SET with a TTL), logging what
  they read and when;
- the fault is applied from the outside on a fixed timeline (for ``reader-stop``, each
  reader stops itself inside a load of a row of its own, the writer commits that row,
  and the reader resumes and reads it again);
- ``veneer verify`` (the library call behind the command) samples each namespace
  every half second.

The offline pass then judges every read: it is stale when a newer version of its row
had committed (its commit call had returned) before the read began; its staleness is
how long before the read began the first newer version committed. A read is *beyond
the bound* when that staleness exceeds the documented bound of the fault, the mode and
the L1 setting (``bound()``, the formulas of ``docs/consistency.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

MODES = ("hook", "outbox", "trigger", "naive")
# (name, L1 on, naive, the mode whose thread stops the process in the reader-stop fault)
READERS = (
    ("l1-reader", True, False, "hook"),
    ("no-l1-reader", False, False, "hook"),
    ("naive-reader", False, True, "naive"),
)
FAULTS = ("none", "redis-stop", "redis-restart", "outage", "worker-kill", "reader-stop")
FAULT_TITLES = {
    "none": "no fault",
    "redis-stop": "Redis SIGSTOP",
    "redis-restart": "Redis SIGKILL, restarted empty",
    "outage": "Redis down longer than max_stale, restarted empty",
    "worker-kill": "relay and listener SIGKILLed, restarted",
    "reader-stop": "a reader SIGSTOPped with a fill in flight",
}


@dataclass(frozen=True)
class Profile:
    """Options of the caches and the timeline of one kind of run."""

    options: dict[str, Any]
    warm: float  # seconds before the fault
    tail: float  # seconds after the fault ended
    stop_seconds: float  # Redis SIGSTOP
    down_seconds: float  # Redis SIGKILL before the empty restart
    outage_seconds: float  # longer than max_stale
    worker_seconds: float  # relay and listener down
    reader_seconds: float  # a reader SIGSTOPped
    rows: int = 20
    commit_every: float = 0.02
    read_every: float = 0.002
    delivery: float = 0.25
    """δ: one round trip plus a broadcast delivery, with scheduling on a loaded machine."""

    @property
    def max_stale(self) -> float:
        return float(self.options.get("max_stale", 10.0))

    def fault_seconds(self, fault: str) -> float:
        return {
            "none": 0.0,
            "redis-stop": self.stop_seconds,
            "redis-restart": self.down_seconds,
            "outage": self.outage_seconds,
            "worker-kill": self.worker_seconds,
            "reader-stop": self.reader_seconds,
        }[fault]


FULL = Profile(
    options={"ttl": 300, "registry_every": 1},
    warm=3.0,
    tail=6.0,
    stop_seconds=2.0,
    down_seconds=2.0,
    outage_seconds=14.5,  # the timeline, with max_stale at its 10 s default
    worker_seconds=5.0,
    reader_seconds=2.0,
)
SHORT = Profile(
    options={"ttl": 300, "max_stale": 1.0, "restart_warmup": 3.0, "registry_every": 1},
    warm=1.2,
    tail=2.2,
    stop_seconds=2.0,
    down_seconds=0.8,
    outage_seconds=2.0,
    worker_seconds=5.0,
    reader_seconds=2.0,
)


@dataclass
class Events:
    """What the orchestrator did, and when (monotonic, shared by every process)."""

    start: float = 0.0
    fault_begin: float = 0.0
    fault_end: float = 0.0
    worker_back: float = 0.0  # the restarted listener is listening again
    until: float = 0.0


# ------------------------------------------------------------------- bounds


def bound(fault: str, mode: str, l1: bool, profile: Profile, events: Events) -> float:
    """The documented worst-case staleness of a read, in seconds: the formulas of
    docs/consistency.md, with the options of the run and the lengths of its fault.

    δ (``profile.delivery``) is one round trip plus a delivery between running
    processes (a broadcast, a NOTIFY): not an option, the checker's allowance for it.
    """
    from veneer._sync._broadcast import _LAST_BACKOFF, _POLL_SECONDS

    options = profile.options
    delta = profile.delivery
    # h: how long an L1 copy outlives the last proof that its process had every
    # invalidation (the subscriber's health timeout); l1_ttl caps it too.
    h = max(1.0, 4 * float(options.get("redis_timeout", 0.1)))
    l1_term = min(float(options.get("l1_ttl", 5.0)), h) if l1 else 0.0
    if mode == "naive":
        return bound(fault, "hook", l1, profile, events)  # held to veneer's bound
    # Once Redis answers again, a writer's queued invalidations are sent within this:
    # its subscriber reconnects (at most 1.5 x its last backoff) and drains at its next
    # tick, its breaker probed at once then; or its breaker's cooldown runs out first.
    recovery = max(1.5 * _LAST_BACKOFF + _POLL_SECONDS, float(options.get("breaker_cooldown", 1.0)))
    if fault in ("redis-restart", "outage"):
        # Nothing old survives in Redis. A commit made as Redis returns, while the
        # writer's breaker is still open, is queued: a fill that loaded before it may
        # land first, until the queue drains. An L1 copy is served within max_stale of
        # the last moment its process could vouch for it.
        return max(recovery, profile.max_stale if l1 else 0.0, l1_term) + delta
    if fault == "redis-stop":
        # Redis keeps the old entries while the invalidations wait in the writers' queues:
        # D, then the recovery.
        d = events.fault_end - events.fault_begin
        return d + recovery + l1_term + delta
    if fault == "worker-kill" and mode == "trigger":
        # Notifications are lost while no listener runs; --resync invalidates the
        # namespace once the new one listens.
        return (events.worker_back - events.fault_begin) + l1_term + delta
    return l1_term + delta


# ------------------------------------------------------------------ workers


def _connect(dsn: str) -> Any:
    import psycopg

    return psycopg.connect(dsn, autocommit=True)


def _wait_go() -> tuple[float, float]:
    print("ready", flush=True)
    line = sys.stdin.readline().split()
    return float(line[1]), float(line[2])


def _sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _run_and_save(
    run: Callable[[str], None],
    modes: Sequence[str],
    records: list[list[Any]],
    out: str,
    closers: list[Callable[[], None]],
) -> None:
    """One thread per mode until the run ends, then the log to ``out``."""
    threads = [threading.Thread(target=run, args=(mode,)) for mode in modes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    Path(out).write_text(json.dumps(records))
    for close in closers:
        close()


def writer_main(cfg: dict[str, Any]) -> None:
    """One thread per mode: commit a random row's next version, log when commit returned."""
    import redis
    import sqlalchemy as sa
    from sqlalchemy.orm import sessionmaker

    from veneer import Cache
    from veneer.integrations.outbox import outbox_table
    from veneer.integrations.sqlalchemy import CacheInvalidator

    engine = sa.create_engine(cfg["sa_url"], pool_size=4)
    records: list[list[Any]] = []
    lock = threading.Lock()
    setups: dict[str, Callable[[int], int]] = {}
    closers: list[Callable[[], None]] = []

    def update_sql(table: str) -> str:
        return f"UPDATE {table} SET version = version + 1 WHERE id = %s RETURNING version"

    for mode in ("hook", "outbox"):
        cache = Cache.from_url(cfg["redis"], namespace=cfg["ns"][mode], l1_size=0, **cfg["options"])
        cache.ready(10)
        closers.append(cache.close)
        outbox = outbox_table(name=cfg["outbox"]) if mode == "outbox" else None
        maker = sessionmaker(engine)
        invalidator = CacheInvalidator(cache, outbox=outbox).install(maker)
        table = cfg["tables"][mode]

        def commit(row: int, maker: Any = maker, inv: Any = invalidator, table: str = table) -> int:
            with maker() as session:
                version = session.execute(
                    sa.text(
                        f"UPDATE {table} SET version = version + 1 WHERE id = :id RETURNING version"
                    ),
                    {"id": row},
                ).scalar_one()
                inv.invalidate(session, f"row:{row}")
                session.commit()
            return int(version)

        setups[mode] = commit

    trigger_conn = _connect(cfg["dsn"])
    trigger_conn.autocommit = False

    def commit_trigger(row: int) -> int:
        version = trigger_conn.execute(update_sql(cfg["tables"]["trigger"]), (row,)).fetchone()[0]
        trigger_conn.commit()
        return int(version)

    setups["trigger"] = commit_trigger

    naive_conn = _connect(cfg["dsn"])
    naive_conn.autocommit = False
    naive_redis = redis.Redis.from_url(cfg["redis"], socket_timeout=0.1, socket_connect_timeout=0.2)

    def commit_naive(row: int) -> int:
        version = naive_conn.execute(update_sql(cfg["tables"]["naive"]), (row,)).fetchone()[0]
        naive_conn.commit()
        try:
            naive_redis.delete(f"{cfg['ns']['naive']}:row:{row}")
        except redis.RedisError:
            pass  # as most code does: log and move on
        return int(version)

    setups["naive"] = commit_naive
    locks = {mode: threading.Lock() for mode in MODES}
    start, until = _wait_go()

    def commit_logged(mode: str, row: int) -> None:
        began = time.monotonic()
        try:
            with locks[mode]:  # a mode's connection serves one commit at a time
                version = setups[mode](row)
        except Exception as exc:  # a writer error is data too; it must not stop the run
            print(f"writer {mode}: {exc!r}", file=sys.stderr)
            time.sleep(0.05)
            return
        ended = time.monotonic()
        with lock:
            records.append([mode, row, version, began, ended])

    def run(mode: str) -> None:
        rng = random.Random(mode)
        _sleep_until(start)
        while time.monotonic() < until:
            # Skewed: a few hot rows take most writes, the cold ones are rarely rewritten
            # (so a lost invalidation is not healed by the next write at once).
            commit_logged(mode, int(cfg["random_rows"] * rng.random() ** 3))
            time.sleep(cfg["commit_every"] * (0.5 + rng.random()))

    def commands() -> None:
        """``bump MODE ROW``: commit that row now (reader-stop commits the row in flight)."""
        for line in sys.stdin:
            _, mode, row = line.split()
            commit_logged(mode, int(row))
            print(f"bumped {mode} {row}", flush=True)

    threading.Thread(target=commands, daemon=True).start()
    _run_and_save(run, MODES, records, cfg["out"], closers)
    engine.dispose()


def reader_main(cfg: dict[str, Any]) -> None:
    """One thread per mode, reading random rows through this process's own caches
    (or, for the ``naive`` reader, through GET and SET with redis-py)."""
    import redis

    from veneer import Cache

    l1 = cfg["l1"]
    records: list[list[Any]] = []
    lock = threading.Lock()
    reads: dict[str, Callable[[int, Any], int]] = {}
    closers: list[Callable[[], None]] = []
    # reader-stop: SIGUSR1 arms it. The thread of ``stop_mode`` then reads this process's
    # own reserved row (never read or written otherwise, so it is a miss); inside that
    # load the process says so and SIGSTOPs itself: the fill is in flight (its lease
    # taken, its value loaded, not written yet) while the writer commits that very row.
    armed = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: armed.set())
    stop_row = cfg["stop_row"]
    stopping = threading.Event()  # set by the thread that reads stop_row, once

    def loader(conn: Any, table: str, row: int) -> Callable[[], int]:
        def load() -> int:
            version = int(
                conn.execute(f"SELECT version FROM {table} WHERE id = %s", (row,)).fetchone()[0]
            )
            if row == stop_row and stopping.is_set():
                stopping.clear()
                print(f"stopping {row}", flush=True)
                # At this thread, not the process: a process-directed SIGSTOP may be
                # taken by another thread while this one runs on and writes its fill.
                signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)
            return version

        return load

    if cfg["naive"]:
        naive = redis.Redis.from_url(cfg["redis"], socket_timeout=0.1, socket_connect_timeout=0.2)
        table = cfg["tables"]["naive"]
        ttl = int(cfg["options"]["ttl"])

        def read_naive(row: int, conn: Any) -> int:
            key = f"{cfg['ns']['naive']}:row:{row}"
            try:
                hit = naive.get(key)
            except redis.RedisError:
                hit = None
            if hit is not None:
                return int(hit)
            version = loader(conn, table, row)()
            try:
                naive.set(key, version, ex=ttl)
            except redis.RedisError:
                pass
            return version

        reads["naive"] = read_naive
    else:
        for mode in ("hook", "outbox", "trigger"):
            options = dict(cfg["options"])
            if not l1:
                options["l1_size"] = 0
            cache = Cache.from_url(cfg["redis"], namespace=cfg["ns"][mode], **options)
            cache.ready(10)
            closers.append(cache.close)
            table = cfg["tables"][mode]

            def read(row: int, conn: Any, cache: Any = cache, table: str = table) -> int:
                return int(cache.get_or_load(f"row:{row}", loader(conn, table, row)))

            reads[mode] = read

    start, until = _wait_go()

    def run(mode: str) -> None:
        rng = random.Random(f"{mode}{l1}{os.getpid()}")
        conn = _connect(cfg["dsn"])
        read = reads[mode]
        _sleep_until(start)
        while time.monotonic() < until:
            rows = [int(cfg["random_rows"] * rng.random() ** 2)]
            if armed.is_set() and mode == cfg["stop_mode"]:
                armed.clear()
                stopping.set()
                rows = [stop_row, stop_row]  # then read it again, after the fill
            for row in rows:
                began = time.monotonic()
                try:
                    version = read(row, conn)
                except Exception as exc:
                    print(f"reader {mode}: {exc!r}", file=sys.stderr)
                    time.sleep(0.05)
                    continue
                ended = time.monotonic()
                with lock:
                    records.append([mode, row, version, began, ended])
            time.sleep(cfg["read_every"])
        conn.close()

    _run_and_save(run, list(reads), records, cfg["out"], closers)


# ------------------------------------------------------------- orchestrator


@dataclass
class Cell:
    fault: str
    mode: str
    l1: bool
    reads: int
    stale: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    bound_s: float
    beyond: int

    @property
    def stale_share(self) -> float:
        return self.stale / self.reads if self.reads else 0.0


@dataclass
class VerifySample:
    mode: str
    at: float
    checked: int
    diverged: int
    truly_stale: int  # of the diverged examples, stale by the commit log at the sample's start


@dataclass
class RunResult:
    fault: str
    cells: list[Cell]
    verify: list[VerifySample] = field(default_factory=list)
    commits: dict[str, int] = field(default_factory=dict)
    events: Events = field(default_factory=Events)
    errors: list[str] = field(default_factory=list)
    """What the writer and the readers reported as errors (veneer's reads raise none)."""


class Setup:
    """Tables, trigger, outbox and namespaces of one run (dropped afterwards)."""

    def __init__(self, dsn: str, sa_url: str, rows: int) -> None:
        tag = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.dsn, self.sa_url = dsn, sa_url
        self.tables = {mode: f"vcons_{mode}_{tag}" for mode in MODES}
        self.ns = {mode: f"c{mode}{tag}" for mode in MODES}
        self.outbox = f"vcons_ob_{tag}"
        self.channel = f"vcons_{tag}"
        from veneer.integrations.postgres import install_trigger

        with _connect(dsn) as conn:
            for table in self.tables.values():
                conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, version int NOT NULL)")
                conn.execute(
                    f"INSERT INTO {table} SELECT g, 1 FROM generate_series(0, {rows - 1}) g"
                )
        import sqlalchemy as sa

        from veneer.integrations.outbox import create_outbox, outbox_table

        engine = sa.create_engine(sa_url)
        create_outbox(engine, outbox_table(name=self.outbox))
        engine.dispose()
        install_trigger(
            dsn,
            self.tables["trigger"],
            namespace=self.ns["trigger"],
            keys=["row:{id}"],
            channel=self.channel,
        )

    def drop(self) -> None:
        with _connect(self.dsn) as conn:
            for table in [*self.tables.values(), self.outbox]:
                conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")


class Proc:
    """A child process of this run, stopped by PID."""

    def __init__(self, name: str, args: list[str], *, stdin: bool = True) -> None:
        self.name = name
        self.popen = subprocess.Popen(
            args,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._pumps = [
            threading.Thread(target=self._pump, args=(stream, into), daemon=True)
            for stream, into in ((self.popen.stdout, self.lines), (self.popen.stderr, self.errors))
        ]
        for pump in self._pumps:
            pump.start()

    @staticmethod
    def _pump(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def wait_line(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not print {text!r}: {self.errors[-10:]}")
            time.sleep(0.01)

    def go(self, start: float, until: float) -> None:
        self.send(f"go {start} {until}")

    def send(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def is_stopped(self) -> bool:
        try:
            state = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state in ("T", "t")

    def stop(self, timeout: float = 10.0) -> None:
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)
        for pump in self._pumps:
            pump.join(5)
        for stream in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()


def _worker_args(role: str, cfg: dict[str, Any]) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "_worker", role, json.dumps(cfg)]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "veneer.cli", *args]


def run_fault(
    fault: str, profile: Profile, dsn: str, sa_url: str, server: Any, out_dir: Path
) -> RunResult:
    """One bounded run with ``fault``; returns its judged cells."""
    setup = Setup(dsn, sa_url, profile.rows)
    events = Events()
    procs: list[Proc] = []
    verify_samples: list[tuple[str, float, float, Any]] = []
    try:
        base = {
            "redis": server.url,
            "dsn": dsn,
            "sa_url": sa_url,
            "tables": setup.tables,
            "ns": setup.ns,
            "outbox": setup.outbox,
            "rows": profile.rows,
            "random_rows": profile.rows - len(READERS),
            "options": profile.options,
            "commit_every": profile.commit_every,
            "read_every": profile.read_every,
        }
        writer = Proc(
            "writer", _worker_args("writer", {**base, "out": str(out_dir / f"{fault}-writer.json")})
        )
        # Three readers, each stopping itself inside a load of its own reserved row in
        # the reader-stop fault (the rows above random_rows are never read otherwise).
        readers: dict[str, Proc] = {}
        for i, (name, l1, naive, mode) in enumerate(READERS):
            cfg = {
                **base,
                "l1": l1,
                "naive": naive,
                "stop_mode": mode,
                "stop_row": profile.rows - 1 - i,
                "out": str(out_dir / f"{fault}-{name}.json"),
            }
            readers[name] = Proc(name, _worker_args("reader", cfg))
        procs += [writer, *readers.values()]

        def relay() -> Proc:
            return Proc(
                "relay",
                _cli(
                    "relay",
                    "--db",
                    dsn,
                    "--redis",
                    server.url,
                    "--table",
                    setup.outbox,
                    "--interval",
                    "0.5",
                ),
                stdin=False,
            )

        def listener() -> Proc:
            return Proc(
                "listen",
                _cli("listen", "--db", dsn, "--redis", server.url, "--channel", setup.channel,
                     "--resync", setup.ns["trigger"]),
                stdin=False,
            )  # fmt: skip

        workers = {"relay": relay(), "listen": listener()}
        procs += workers.values()
        for proc in (writer, *readers.values()):
            proc.wait_line("ready", 60)
        workers["listen"].wait_line("listening", 60)
        events.start = time.monotonic() + 0.2
        events.fault_begin = events.start + profile.warm
        length = profile.fault_seconds(fault)
        events.until = events.fault_begin + length + profile.tail
        for proc in (writer, *readers.values()):
            proc.go(events.start, events.until)
        stop_verify = threading.Event()
        verifier = threading.Thread(
            target=_verify_loop, args=(server.url, setup, stop_verify, verify_samples), daemon=True
        )
        _sleep_until(events.start)
        verifier.start()
        _sleep_until(events.fault_begin)
        events.fault_begin = time.monotonic()
        if fault == "redis-stop":
            server.pause()
            time.sleep(length)
            server.resume()
        elif fault in ("redis-restart", "outage"):
            server.kill()
            time.sleep(length)
            server.start()
        elif fault == "worker-kill":
            for proc in workers.values():
                proc.popen.kill()
                proc.popen.wait(5)
            time.sleep(length)
            workers["relay"], workers["listen"] = relay(), listener()
            procs += workers.values()
            workers["listen"].wait_line("listening", 30)
            events.worker_back = time.monotonic()
        elif fault == "reader-stop":
            for proc in readers.values():
                os.kill(proc.popen.pid, signal.SIGUSR1)  # arms the self-stop inside a load
            # Each reader stays stopped ``length`` from its own stop: another reader may
            # wait for a lease the first one holds (lease_wait) before it gets there.
            stopped: dict[str, float] = {}
            resumed: set[str] = set()
            deadline = time.monotonic() + length + 15
            while len(resumed) < len(READERS):
                assert time.monotonic() < deadline, f"readers stopped: {sorted(stopped)}"
                for i, (name, _l1, _naive, mode) in enumerate(READERS):
                    proc = readers[name]
                    if name not in stopped and proc.is_stopped():
                        if not any("stopping" in line for line in proc.lines):
                            continue  # stopped, but not by its own load (cannot happen)
                        began = time.monotonic()
                        # The row being filled changes while its reader is stopped.
                        writer.send(f"bump {mode} {profile.rows - 1 - i}")
                        writer.wait_line(f"bumped {mode} {profile.rows - 1 - i}", 10)
                        # Stopped ``length`` in all, and a while after the commit too (a
                        # slow commit on a loaded machine must not shorten the race).
                        stopped[name] = max(began, time.monotonic() - length / 2)
                    due = name in stopped and time.monotonic() >= stopped[name] + length
                    if due and name not in resumed:
                        proc.signal(signal.SIGCONT)
                        resumed.add(name)
                time.sleep(0.001)
        events.fault_end = time.monotonic()
        if fault == "none":
            events.fault_end = events.fault_begin
        for proc in (writer, *readers.values()):
            proc.popen.wait(max(30.0, events.until - time.monotonic() + 30))
        stop_verify.set()
        verifier.join(10)
        commits = json.loads(Path(out_dir / f"{fault}-writer.json").read_text())
        reads = {
            l1: json.loads(Path(out_dir / f"{fault}-{name}.json").read_text())
            for name, l1, naive, _ in READERS
            if not naive
        }
        reads[False] += json.loads(Path(out_dir / f"{fault}-naive-reader.json").read_text())
    finally:
        for proc in procs:  # all at once: each may take a poll interval to stop
            proc.signal(signal.SIGCONT)
            proc.signal(signal.SIGTERM)
        for proc in procs:
            proc.stop()
        setup.drop()
    result = judge(fault, profile, events, commits, reads)
    result.errors = [
        f"{proc.name}: {line}"
        for proc in (writer, *readers.values())
        for line in proc.errors
        if line.startswith(("writer ", "reader ", "Traceback"))
    ]
    result.verify = judge_verify(verify_samples, commits)
    return result


def _verify_loop(url: str, setup: Setup, stop: threading.Event, out: list[Any]) -> None:
    """``veneer verify`` for each namespace every 0.5 s (the library call the CLI makes)."""
    from veneer import Cache
    from veneer.verify import verify

    conn = _connect(setup.dsn)
    caches = {
        mode: Cache.from_url(url, namespace=setup.ns[mode], l1_size=0, broadcast=False)
        for mode in ("hook", "outbox", "trigger")
    }

    def reload(table: str) -> Callable[[str], int]:
        def load(key: str) -> int:
            return int(
                conn.execute(
                    f"SELECT version FROM {table} WHERE id = %s", (int(key.split(":")[1]),)
                ).fetchone()[0]
            )

        return load

    try:
        while not stop.wait(0.5):
            for mode, cache in caches.items():
                began = time.monotonic()
                try:
                    report = verify(cache, reload(setup.tables[mode]), sample=100, examples=100)
                except Exception as exc:  # verify during an outage: nothing to compare
                    print(f"verify {mode}: {exc!r}", file=sys.stderr)
                    continue
                out.append((mode, began, time.monotonic(), report))
    finally:
        for cache in caches.values():
            cache.close()
        conn.close()


def _commit_index(commits: list[list[Any]]) -> dict[tuple[str, int], list[tuple[int, float]]]:
    index: dict[tuple[str, int], list[tuple[int, float]]] = defaultdict(list)
    for mode, row, version, _began, ended in commits:
        index[(mode, row)].append((version, ended))
    for versions in index.values():
        versions.sort()
    return index


def staleness(versions: list[tuple[int, float]], version: int, began: float) -> float:
    """How long before ``began`` the first version newer than ``version`` had committed."""
    for v, ended in versions:
        if v > version:
            return began - ended if ended < began else 0.0
    return 0.0


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else 0.0


def judge(
    fault: str,
    profile: Profile,
    events: Events,
    commits: list[list[Any]],
    reads: dict[bool, list[list[Any]]],
) -> RunResult:
    index = _commit_index(commits)
    cells: list[Cell] = []
    for l1, records in reads.items():
        by_mode: dict[str, list[float]] = defaultdict(list)
        counts: dict[str, int] = defaultdict(int)
        for mode, row, version, began, _ended in records:
            counts[mode] += 1
            age = staleness(index.get((mode, row), []), version, began)
            if age > 0:
                by_mode[mode].append(age)
        for mode in MODES:
            if mode not in counts:
                continue
            ages = sorted(by_mode[mode])
            limit = bound(fault, mode, l1, profile, events)
            cells.append(
                Cell(
                    fault=fault,
                    mode=mode,
                    l1=l1,
                    reads=counts[mode],
                    stale=len(ages),
                    p50_ms=_percentile(ages, 0.5) * 1000,
                    p99_ms=_percentile(ages, 0.99) * 1000,
                    max_ms=(ages[-1] if ages else 0.0) * 1000,
                    bound_s=limit,
                    beyond=sum(1 for a in ages if a > limit),
                )
            )
    per_mode: dict[str, int] = defaultdict(int)
    for record in commits:
        per_mode[record[0]] += 1
    return RunResult(fault=fault, cells=cells, commits=dict(per_mode), events=events)


def judge_verify(
    samples: list[tuple[str, float, float, Any]], commits: list[list[Any]]
) -> list[VerifySample]:
    """Each verify report, and how many of its divergences the commit log confirms as
    stale (a newer version had committed before the sample began) rather than a commit
    that landed between verify's cache read and its reload."""
    index = _commit_index(commits)
    out = []
    for mode, began, _ended, report in samples:
        truly = 0
        for d in report.examples:
            row = int(d.key.split(":")[1])
            if staleness(index.get((mode, row), []), int(d.cached), began) > 0:
                truly += 1
        out.append(VerifySample(mode, began, report.checked, report.diverged, truly))
    return out


# ------------------------------------------------------------------ reports


def table(results: list[RunResult]) -> str:
    lines = [
        "| fault | mode | L1 | reads | stale | p50 ms | p99 ms | max ms | bound s | beyond |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        for c in result.cells:
            lines.append(
                f"| {FAULT_TITLES[c.fault]} | {c.mode} | {'on' if c.l1 else 'off'} | {c.reads} | "
                f"{c.stale_share:.2%} | {c.p50_ms:.0f} | {c.p99_ms:.0f} | {c.max_ms:.0f} | "
                f"{c.bound_s:.2f} | {c.beyond} |"
            )
    return "\n".join(lines)


def verify_table(results: list[RunResult]) -> str:
    lines = [
        "| fault | mode | verify runs | entries checked | diverged | confirmed stale by the log | "
        "L1-off reads stale (checker) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        for mode in ("hook", "outbox", "trigger"):
            samples = [s for s in result.verify if s.mode == mode]
            cell = next((c for c in result.cells if c.mode == mode and not c.l1), None)
            checked = sum(s.checked for s in samples)
            diverged = sum(s.diverged for s in samples)
            share = f"{diverged / checked:.1%}" if checked else "-"
            stale = f"{cell.stale_share:.2%}" if cell else "-"
            lines.append(
                f"| {FAULT_TITLES[result.fault]} | {mode} | {len(samples)} | {checked} | "
                f"{diverged} ({share}) | {sum(s.truly_stale for s in samples)} | {stale} |"
            )
    return "\n".join(lines)


@contextmanager
def redis_server() -> Iterator[Any]:
    from servers import RedisServer

    server = RedisServer()
    try:
        yield server
    finally:
        server.stop()


def check_all(faults: list[str], profile: Profile, out_dir: Path) -> list[RunResult]:
    from servers import POSTGRES_URL
    from veneer.integrations.postgres import libpq_dsn

    dsn = libpq_dsn(POSTGRES_URL)
    results = []
    for fault in faults:
        # A fresh Redis per run: a fault must not leak into the next (warm-up, breakers).
        with redis_server() as server:
            results.append(run_fault(fault, profile, dsn, POSTGRES_URL, server, out_dir))
    return results


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "_worker":
        cfg = json.loads(sys.argv[3])
        if sys.argv[2] == "writer":
            writer_main(cfg)
        else:
            reader_main(cfg)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="the short options of the test suite")
    parser.add_argument("--faults", default=",".join(FAULTS))
    parser.add_argument("--json", dest="json_out", default=None, help="write every cell here")
    args = parser.parse_args()
    profile = SHORT if args.short else FULL
    faults = [f for f in args.faults.split(",") if f]
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        parser.error(f"unknown fault(s) {unknown}; use {', '.join(FAULTS)}")
    import tempfile

    with tempfile.TemporaryDirectory(prefix="veneer-consistency-") as tmp:
        results = check_all(faults, profile, Path(tmp))
    for result in results:
        for line in result.errors[:10]:
            print(f"[{result.fault}] {line}", file=sys.stderr)
    print(f"options: {profile.options}; δ = {profile.delivery}s")
    print(table(results))
    print()
    print(verify_table(results))
    if args.json_out:
        data = [
            {
                "fault": r.fault,
                "events": asdict(r.events),
                "commits": r.commits,
                "cells": [asdict(c) for c in r.cells],
                "verify": [asdict(v) for v in r.verify],
            }
            for r in results
        ]
        Path(args.json_out).write_text(json.dumps(data, indent=1))


if __name__ == "__main__":
    main()
