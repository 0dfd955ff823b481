"""The audit is safe by construction: allowed commands only, within budget, backing off."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from servers import RedisServer, reap
from topologies import redis_cli_binary
from veneer.audit import AuditOptions, run_audit

# What the audit may send, by command name; everything else fails the test.
ALLOWED = {
    "SCAN", "TYPE", "PTTL", "MEMORY", "OBJECT", "STRLEN", "HLEN", "LLEN", "SCARD", "ZCARD",
    "XLEN", "PING", "INFO", "SELECT", "CLIENT", "HELLO", "AUTH", "CONFIG", "SLOWLOG", "ACL",
}  # fmt: skip
# Never, whatever the data: blocking, O(N) on data, reading values, or running code.
FORBIDDEN = {
    "KEYS", "DUMP", "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO", "SCRIPT",
    "FUNCTION", "LRANGE", "HGETALL", "SMEMBERS", "ZRANGE", "HKEYS", "HVALS", "SORT", "DEBUG",
    "FLUSHALL", "FLUSHDB", "GET", "MGET", "HGET", "SUNION", "SINTER", "XRANGE", "MONITOR",
}  # fmt: skip
# MONITOR does not show admin commands (CONFIG, SLOWLOG, ACL, DEBUG): INFO commandstats,
# read around the audit, covers them; these are the subcommands it may have used.
ALLOWED_STATS = {
    "config|get", "slowlog|get", "slowlog|len", "acl|list", "client|setname", "client|setinfo",
    "memory|usage", "object|freq", "config", "slowlog", "acl", "client", "memory", "object",
}  # fmt: skip

_LINE = re.compile(r"^(\d+\.\d+) \[(\d+) [^\]]+\] (.*)$")
_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')


@contextmanager
def monitor(server: RedisServer, out: Path) -> Iterator[list[tuple[float, list[str]]]]:
    """Record every command the server runs (redis-cli MONITOR), parsed on exit."""
    records: list[tuple[float, list[str]]] = []
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [redis_cli_binary(), "-p", str(server.port), "monitor"], stdout=sink, stderr=sink
        )
    try:
        deadline = time.monotonic() + 10
        while b"OK" not in out.read_bytes():
            assert time.monotonic() < deadline, "MONITOR did not start"
            time.sleep(0.02)
        yield records
        time.sleep(0.3)  # let the last commands reach the monitor
    finally:
        proc.terminate()
        proc.wait(10)
    for line in out.read_text(errors="replace").splitlines():
        m = _LINE.match(line)
        if m:
            records.append((float(m.group(1)), _ARG.findall(m.group(3))))


def _commandstats(server: RedisServer) -> dict[str, int]:
    c = server.client()
    try:
        stats = c.info("commandstats")
    finally:
        c.close()
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def _busiest_second(times: list[float]) -> int:
    """Most commands in any window of one second (two pointers over sorted times)."""
    worst, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - 1.0:
            lo += 1
        worst = max(worst, hi - lo + 1)
    return worst


def _seed_varied(server: RedisServer, keys: int) -> None:
    c = server.client()
    try:
        c.config_set("maxmemory", 128 * 1024 * 1024)
        c.config_set("maxmemory-policy", "allkeys-lfu")  # so OBJECT FREQ is exercised too
        pipe = c.pipeline(transaction=False)
        for i in range(keys):
            kind = i % 5
            if kind == 0:
                pipe.set(f"s:{i}", "v" * 20)
            elif kind == 1:
                pipe.hset(f"h:{i}", mapping={"a": 1, "b": 2})
            elif kind == 2:
                pipe.rpush(f"l:{i}", 1, 2, 3)
            elif kind == 3:
                pipe.sadd(f"set:{i}", 1, 2)
            else:
                pipe.zadd(f"z:{i}", {"a": 1.0})
        pipe.xadd("stream:1", {"f": "v"})
        pipe.rpush("biglist:1", *range(2000))
        pipe.execute()
    finally:
        c.close()


def test_monitor_sees_only_allowed_commands_within_budget(
    server: RedisServer, tmp_path: Path
) -> None:
    """MONITOR and commandstats show no forbidden command, and the audit keeps to its budget."""
    _seed_varied(server, 1500)
    budget = 3000.0
    with monitor(server, tmp_path / "monitor.log") as records:
        # The monitor sees every command the server runs meanwhile: only the audit's
        # (and these two INFO commandstats, which are allowed anyway).
        before = _commandstats(server)
        report = run_audit(server.url, AuditOptions(budget=budget, cpu_window=0.1))
        after = _commandstats(server)

    names = [args[0].upper() for _, args in records if args]
    assert names, "MONITOR recorded nothing"
    assert not set(names) & FORBIDDEN
    assert set(names) <= ALLOWED, set(names) - ALLOWED
    for _, args in records:
        upper = [a.upper() for a in args]
        if upper[0] == "MEMORY":
            # SAMPLES 0 would walk every element of a big value.
            assert upper[1] == "USAGE" and upper[3] == "SAMPLES" and int(upper[4]) > 0
        if upper[0] == "SCAN":
            assert "COUNT" in upper and int(upper[upper.index("COUNT") + 1]) <= 1000
        if upper[0] == "OBJECT":
            assert upper[1] == "FREQ"

    grown = {cmd for cmd, calls in after.items() if calls > before.get(cmd, 0)}
    allowed_stats = {a.lower() for a in ALLOWED} | ALLOWED_STATS
    assert grown <= allowed_stats, grown - allowed_stats
    assert not {c.split("|")[0] for c in grown} & {f.lower() for f in FORBIDDEN}

    # The budget holds: overall, and in every one-second window (one batch of slack).
    times = [t for t, _ in records]
    span = times[-1] - times[0]
    assert span > 1.0, "the audit was too short to measure a rate"
    rate = len(times) / span
    assert rate <= budget * 1.05, rate
    options = AuditOptions(budget=budget)
    burst = options.batch() * 5  # one pipeline may leave at once
    assert _busiest_second(times) <= budget + burst

    assert report.sampling.ops_per_s <= budget * 1.05
    assert report.sampling.complete and report.sampling.keys_sampled == 1502


def test_backs_off_when_ping_latency_rises(server: RedisServer) -> None:
    """When Lua starts hogging the command thread mid-audit, PING slows and the audit backs off."""
    _seed_varied(server, 1000)
    hog: list[subprocess.Popen[bytes]] = []
    # A separate process, so the load does not wait for this process's GIL: about
    # 1.5 s of back-to-back 100 ms scripts, then the audit may recover.
    busy = "local i = 0 while i < 5000000 do i = i + 1 end return i"
    hog_cmd = [redis_cli_binary(), "-p", str(server.port), "-r", "15", "eval", busy, "0"]

    class HogOnceSampling:
        # The first PINGs set the baseline; the load starts only after them.
        def phase(self, name: str, total: int | None = None) -> None:
            pass

        def advance(self, done: int) -> None:
            if done >= 100 and not hog:
                hog.append(subprocess.Popen(hog_cmd, stdout=subprocess.DEVNULL))

    try:
        report = run_audit(
            server.url, AuditOptions(budget=4000, cpu_window=0.1), progress=HogOnceSampling()
        )
    finally:
        for proc in hog:
            proc.kill()
            proc.wait(10)
    assert hog, "the load never started"
    s = report.sampling
    assert s.backoffs >= 1, s
    assert s.min_rate_ops_per_s is not None and s.min_rate_ops_per_s < 4000
    assert s.max_ping_ms is not None and s.baseline_ping_ms is not None
    assert s.max_ping_ms > s.baseline_ping_ms


def _cli() -> list[str]:
    return [sys.executable, "-c", "from veneer.cli import main; main()"]


@pytest.mark.slow
def test_ctrl_c_prints_the_partial_report(server: RedisServer) -> None:
    """Ctrl-C during sampling stops the audit and still prints what it found (exit 130)."""
    c = server.client()
    try:
        pipe = c.pipeline(transaction=False)
        for i in range(5000):
            pipe.set(f"nottl:{i}", "x")
        pipe.execute()
    finally:
        c.close()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # A pytest started with SIGINT ignored (a background job) passes that on to its
    # children: the audit restores Python's handler first, as an interactive shell's would be.
    restore = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    proc = subprocess.Popen(
        [sys.executable, "-c", restore + "from veneer.cli import main; main()",
         "audit", server.url, "--budget", "400", "--format", "json", "--cpu-window", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        while True:
            line = proc.stderr.readline().decode()
            assert line, "the audit exited before sampling"
            if "sampling keys" in line:
                break
            assert time.monotonic() < deadline
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        reap(proc)
    assert proc.returncode == 130
    doc = json.loads(out)
    assert doc["sampling"]["interrupted"] is True
    assert 0 < doc["sampling"]["keys_sampled"] < 5000
    assert any(
        f["id"] == "source-of-truth-risk" and f["prefix"] == "nottl:*" for f in doc["findings"]
    )
