"""`veneer audit` on 1,000,000 keys: time, commands/s against the budget, server CPU, error bars.

python benchmarks/audit_scale.py            # starts a private redis-server, seeds it with Lua

Seeds 700,000 keys without TTL (``user:*``) and 300,000 with (``sess:*``), then
audits with several --sample/--budget settings and prints, per run: wall time,
commands sent and achieved rate against the budget, the server's main-thread CPU
spent during the audit, and the estimates with their 95% intervals against the
truth.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from veneer.audit import AuditOptions, run_audit

USERS, SESSIONS = 700_000, 300_000
RUNS = [(20_000, 5_000.0), (20_000, 100_000.0), (100_000, 100_000.0)]
FILL = """
local ttl = tonumber(ARGV[4])
for i = tonumber(ARGV[2]), tonumber(ARGV[3]) do
  if ttl > 0 then redis.call('SET', ARGV[1] .. i, 'v', 'EX', ttl)
  else redis.call('SET', ARGV[1] .. i, 'v') end
end
return 1
"""


def _server_binary() -> str:
    venv_bin = str(Path(sys.prefix) / "bin")
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != venv_bin)
    found = shutil.which("redis-server", path=path) or shutil.which("redis-server")
    if found is None:
        raise SystemExit("redis-server not found")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _main_thread_cpu(c: redis.Redis) -> float:
    info = c.info("cpu")
    return float(info["used_cpu_sys_main_thread"]) + float(info["used_cpu_user_main_thread"])


def main() -> None:
    port, workdir = _free_port(), tempfile.mkdtemp(prefix="veneer-bench-")
    args = [_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    args += ["--appendonly", "no", "--dir", workdir]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    try:
        c = redis.Redis(port=port, socket_timeout=60)
        for _ in range(100):
            try:
                c.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        started = time.perf_counter()
        sha = c.script_load(FILL)
        for prefix, count, ttl in (("user:", USERS, 0), ("sess:", SESSIONS, 86_400)):
            for lo in range(0, count, 100_000):
                c.evalsha(sha, 0, prefix, lo, min(count, lo + 100_000) - 1, ttl)
        print(f"seeded {c.dbsize():,} keys in {time.perf_counter() - started:.1f} s")
        print()
        print("| --sample | --budget | time | commands | ops/s | server CPU ", end="")
        print("| no-TTL share (95% CI) | user:* keys |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
        for sample, budget in RUNS:
            cpu0, t0 = _main_thread_cpu(c), time.perf_counter()
            report = run_audit(
                f"redis://127.0.0.1:{port}",
                AuditOptions(sample=sample, budget=budget, cpu_window=0),
            )
            cpu = (_main_thread_cpu(c) - cpu0) / (time.perf_counter() - t0)
            s = report.sampling
            lo, hi = s.no_ttl_keys_ci95 or (0.0, 0.0)
            users = next(p for p in report.prefixes if p.pattern == "user:*")
            print(
                f"| {sample:,} | {budget:,.0f} | {s.duration_s:.1f} s | {s.commands_sent:,} "
                f"| {s.ops_per_s:,.0f} | {cpu:.0%} "
                f"| {s.no_ttl_keys_share:.2%} ({lo:.2%}-{hi:.2%}), "
                f"exact {s.no_ttl_keys_share_exact:.2%} | {users.keys_estimated:,} "
                f"± {users.keys_margin95:,} (true {USERS:,}) |"
            )
        c.close()
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
