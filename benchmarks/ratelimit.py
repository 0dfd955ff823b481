"""veneer.ratelimit against the ``limits`` library (fixed and moving window), one Redis, one run.

    python benchmarks/ratelimit.py            (--skew: section 5 alone)

1. commands and round trips per check (MONITOR: what the client sends, and what
   its scripts run inside Redis), for allowed checks and for a hammered subject;
2. p50 and p99 of one allowed check (every one reaches Redis), sync and async;
3. checks/s from 8 threads: allowed checks, and a hammered subject;
4. accuracy under the hammer: 4 processes x 8 threads on one 100/second limit for 3 s;
5. clock skew: the same hammer with 2 of the 4 processes' clocks 50 ms ahead, for
   veneer (Redis's clock, read through key expiry), a GCRA that takes the client's
   clock in ARGV (the design veneer did not choose) and ``limits``' moving window
   (which also sends the client's clock).

veneer's limit is "100/second burst 10" (GCRA); ``limits`` gets "100/second" (its
windows have no separate burst). Every case runs against the same private
redis-server.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import limits
import limits.aio.storage
import limits.aio.strategies
import limits.storage
import limits.strategies
import redis

from servers import RedisServer
from veneer.ratelimit import AsyncRateLimiter, RateLimiter

KINDS = ("veneer", "limits-fixed", "limits-moving")
Check = Callable[[str], bool]
ACheck = Callable[[str], Awaitable[bool]]

# The design veneer did not choose: GCRA on the client's clock (ARGV[1], ms).
CLIENT_CLOCK_GCRA = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new = tat + interval
if new - now > tolerance then return 0 end
redis.call('SET', KEYS[1], tostring(new), 'PX', math.ceil(new - now) + 1)
return 1
"""


def checker(
    kind: str, url: str, ns: str, rate: int, burst: int
) -> tuple[Check, Callable[[], None]]:
    """A sync ``check(subject) -> allowed`` of one kind, and how to close it."""
    if kind == "veneer":
        limiter = RateLimiter.from_url(
            url, f"{rate}/second burst {burst}", namespace=ns, redis_timeout=2.0,
            connect_timeout=2.0, workers=4,
        )  # fmt: skip
        return (lambda key: limiter.hit(key).allowed), limiter.close
    if kind == "gcra-client-clock":
        client = redis.Redis.from_url(url)
        script = client.register_script(CLIENT_CLOCK_GCRA)
        interval = 1000 / rate

        def check(key: str) -> bool:
            args = [time.time() * 1000, interval, interval * burst]
            return bool(script(keys=[f"{ns}:{key}"], args=args))

        return check, client.close
    storage = limits.storage.RedisStorage(url, key_prefix=ns)
    strategy: Any = (
        limits.strategies.FixedWindowRateLimiter(storage)
        if kind == "limits-fixed"
        else limits.strategies.MovingWindowRateLimiter(storage)
    )
    item = limits.parse(f"{rate}/second")
    return (lambda key: bool(strategy.hit(item, key))), storage.storage.close


def async_checker(kind: str, url: str, ns: str, rate: int) -> tuple[ACheck, Any]:
    if kind == "veneer":
        limiter = AsyncRateLimiter.from_url(
            url, f"{rate}/second", namespace=ns, redis_timeout=2.0, workers=4
        )

        async def vcheck(key: str) -> bool:
            return (await limiter.hit(key)).allowed

        return vcheck, limiter.close
    storage = limits.aio.storage.RedisStorage(
        url.replace("redis://", "async+redis://"), key_prefix=ns, implementation="redispy"
    )
    strategy: Any = (
        limits.aio.strategies.FixedWindowRateLimiter(storage)
        if kind == "limits-fixed"
        else limits.aio.strategies.MovingWindowRateLimiter(storage)
    )
    item = limits.parse(f"{rate}/second")

    async def lcheck(key: str) -> bool:
        return bool(await strategy.hit(item, key))

    async def close() -> None:
        await storage.bridge.storage.aclose()

    return lcheck, close


# ----------------------------------------------------------------- 1. commands


class Monitor:
    """Every command Redis runs, with whether a script ran it (MONITOR)."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.commands: list[tuple[str, bool]] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(5)

    def _run(self) -> None:
        client = self.server.client()
        with client.monitor() as monitor:
            self._ready.set()
            while True:
                event = monitor.next_command()
                words = event["command"].split()
                if words[:2] == ["ECHO", "stop-monitor"]:
                    break
                self.commands.append((words[0].upper(), event.get("client_type") == "lua"))
        client.close()

    def stop(self) -> list[tuple[str, bool]]:
        stopper = self.server.client()
        stopper.echo("stop-monitor")
        stopper.close()
        self._thread.join(10)
        return self.commands


def commands_per_check(server: RedisServer) -> dict[str, tuple[float, float, float, float]]:
    """(round trips, commands in scripts) per check of one subject: allowed (a limit of
    1000/s), then hammered (1/s: all but the first refused)."""
    out = {}
    n = 200
    for kind in KINDS:
        row: list[float] = []
        # 1000/s, burst 1000: 200 checks in a few ms all pass, on a key that exists.
        for phase, rate in (("allowed", 1000), ("hammered", 1)):
            check, close = checker(kind, server.url, f"cmd-{kind}-{phase}", rate, rate)
            check("hot")  # connect, load scripts, create the subject's key
            monitor = Monitor(server)
            for _ in range(n):
                check("hot")
            recorded = monitor.stop()[:-1]  # the ECHO that stops it
            close()
            row += [sum(not lua for _, lua in recorded) / n, sum(lua for _, lua in recorded) / n]
        out[kind] = (row[0], row[1], row[2], row[3])
    return out


# ------------------------------------------------------------------ 2. latency


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, len(ordered) * 99 // 100)]


def latency_sync(
    server: RedisServer, rounds: int = 7, per_round: int = 300
) -> dict[str, list[float]]:
    checks = {}
    closers = []
    for kind in KINDS:
        check, close = checker(kind, server.url, f"lat-{kind}", 1_000_000, 100_000)
        checks[kind] = check
        closers.append(close)
    samples: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for check in checks.values():
        for i in range(200):
            check(f"w{i}")
    for r in range(rounds):  # rounds interleave the kinds so drift hits all
        for kind, check in checks.items():
            for i in range(per_round):
                started = time.perf_counter()
                check(f"k{r}-{i}")
                samples[kind].append(time.perf_counter() - started)
    for close in closers:
        close()
    return samples


def latency_async(
    server: RedisServer, rounds: int = 7, per_round: int = 300
) -> dict[str, list[float]]:
    async def run() -> dict[str, list[float]]:
        checks = {}
        closers = []
        for kind in KINDS:
            check, close = async_checker(kind, server.url, f"alat-{kind}", 1_000_000)
            checks[kind] = check
            closers.append(close)
        samples: dict[str, list[float]] = {kind: [] for kind in KINDS}
        for check in checks.values():
            for i in range(200):
                await check(f"w{i}")
        for r in range(rounds):
            for kind, check in checks.items():
                for i in range(per_round):
                    started = time.perf_counter()
                    await check(f"k{r}-{i}")
                    samples[kind].append(time.perf_counter() - started)
        for close in closers:
            await close()
        return samples

    return asyncio.run(run())


# --------------------------------------------------------------- 3. throughput


def throughput(server: RedisServer, kind: str, hammered: bool, seconds: float = 2.0) -> float:
    rate, burst = (100, 10) if hammered else (1_000_000, 100_000)
    check, close = checker(kind, server.url, f"tp-{kind}-{hammered}", rate, burst)
    check("warm")
    counts = [0] * 8
    stop = time.perf_counter() + seconds

    def run(index: int) -> None:
        n = 0
        key = "hot" if hammered else f"t{index}"
        while time.perf_counter() < stop:
            check(key if hammered else f"{key}-{n}")
            n += 1
        counts[index] = n

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    close()
    return sum(counts) / seconds


# ------------------------------------------------------------------ 4. hammer


def hammer_process(
    kind: str, url: str, ns: str, skew: float, barrier: Any, start_at: Any, out: Any
) -> None:
    """8 threads hit one subject between the agreed start and start + 3 s; a refused
    caller retries after 1 ms. ``skew`` moves this process's wall clock."""
    if skew:
        real = time.time
        time.time = lambda: real() + skew  # what a host with a fast clock would read
    check, close = checker(kind, url, ns, 100, 10)
    check("warm")
    barrier.wait()
    while start_at.value == 0.0:
        time.sleep(0.001)
    begin = start_at.value  # real time: the same instant for every process
    allowed = [0] * 8
    attempts = [0] * 8
    errors = [0] * 8

    def run(index: int) -> None:
        time.sleep(max(0.0, begin - (time.time() - skew)))
        end = begin + 3.0
        while time.time() - skew < end:
            attempts[index] += 1
            try:
                ok = check("hot")
            except Exception:
                errors[index] += 1
                ok = False
            if ok:
                allowed[index] += 1
            else:
                time.sleep(0.001)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    close()
    out.put((sum(allowed), sum(attempts), sum(errors)))


def hammer(
    url: str, kind: str, ns: str, skewed: int = 0, skew: float = 0.05
) -> tuple[int, int, int]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(5)
    start_at: Any = ctx.Value("d", 0.0)
    out: Any = ctx.Queue()
    procs = [
        ctx.Process(
            target=hammer_process,
            args=(kind, url, ns, skew if i < skewed else 0.0, barrier, start_at, out),
        )
        for i in range(4)
    ]
    for proc in procs:
        proc.start()
    barrier.wait(timeout=60)
    start_at.value = time.time() + 0.2
    results = [out.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(30)
    return (sum(r[0] for r in results), sum(r[1] for r in results), sum(r[2] for r in results))


def skew_section(server: RedisServer) -> None:
    print("\n## 5. clock skew: 2 of the 4 processes 50 ms ahead (same hammer)")
    print("| design | allowed, no skew | allowed, 50 ms skew | difference |")
    print("| --- | ---: | ---: | ---: |")
    for kind in ("veneer", "gcra-client-clock", "limits-moving"):
        plain = hammer(server.url, kind, f"skew0-{kind}")[0]
        skewed = hammer(server.url, kind, f"skew1-{kind}", skewed=2)[0]
        print(f"| {kind} | {plain} | {skewed} | {skewed - plain:+d} |")


def main() -> None:
    server = RedisServer()
    if sys.argv[1:] == ["--skew"]:  # section 5 alone
        try:
            skew_section(server)
        finally:
            server.stop()
        return
    try:
        print("## 1. commands and round trips per check of one subject (MONITOR, 200 checks)")
        print(
            "| library | round trips / allowed check | commands in Redis / allowed check "
            "| round trips / hammered check | commands in Redis / hammered check |"
        )
        print("| --- | ---: | ---: | ---: | ---: |")
        for kind, (rt, lua, hrt, hlua) in commands_per_check(server).items():
            print(f"| {kind} | {rt:.2f} | {rt + lua:.2f} | {hrt:.3f} | {hrt + hlua:.3f} |")

        print("\n## 2. one allowed check, p50 / p99 (7 interleaved rounds of 300)")
        sync = latency_sync(server)
        asyn = latency_async(server)
        base_s = percentiles(sync["limits-fixed"])[0]
        base_a = percentiles(asyn["limits-fixed"])[0]
        print(
            "| library | sync p50 | sync p99 | sync p50 vs fixed | async p50 | async p99 "
            "| async p50 vs fixed |"
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for kind in KINDS:
            s50, s99 = percentiles(sync[kind])
            a50, a99 = percentiles(asyn[kind])
            print(
                f"| {kind} | {s50 * 1e6:.0f} us | {s99 * 1e6:.0f} us | {s50 / base_s:.2f}x "
                f"| {a50 * 1e6:.0f} us | {a99 * 1e6:.0f} us | {a50 / base_a:.2f}x |"
            )

        print("\n## 3. checks/s from 8 threads (2 s each)")
        print("| library | allowed checks/s | hammered subject, checks/s |")
        print("| --- | ---: | ---: |")
        for kind in KINDS:
            print(
                f"| {kind} | {throughput(server, kind, False):,.0f} "
                f"| {throughput(server, kind, True):,.0f} |"
            )

        print("\n## 4. accuracy: 4 processes x 8 threads, one 100/second limit, 3 s")
        print("| library | allowed | its own bound | rate x 3 s | attempts | errors |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        bounds = {
            "veneer": "310 (burst 10 + 300)",
            "limits-fixed": "300-400 (3 or 4 windows)",
            "limits-moving": "300",
        }
        for kind in KINDS:
            allowed, attempts, errors = hammer(server.url, kind, f"acc-{kind}")
            print(
                f"| {kind} | {allowed} | {bounds[kind]} | {allowed / 300 - 1:+.1%} "
                f"| {attempts:,} | {errors} |"
            )

        skew_section(server)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
