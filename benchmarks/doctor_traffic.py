"""`veneer doctor`'s traffic against its budget, and the round trip it detects through a proxy.

python benchmarks/doctor_traffic.py          # private redis-servers, the suite's TCP proxy

Three runs with the default options (5 s window, 200 PINGs, 100 B to 1 MiB):
idle loopback, through tests/proxy.py adding 2 ms to each reply, and a server kept
busy by a Lua loop from another client. Each prints the commands the server counted
(INFO commandstats, the connection handshake and the test's own reads left out)
against the doctor's own count and its budget, the busiest second, the RTT p50/p99
against loopback and the placement recommendation.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from proxy import SlowProxy
from servers import RedisServer
from veneer.doctor import DoctorOptions, DoctorReport, run_doctor

BUSY_LUA = "local i = 0 while i < 3000000 do i = i + 1 end return i"
HANDSHAKE = {"client|setname", "client|setinfo", "hello", "select", "auth"}


def _calls(server: RedisServer) -> dict[str, int]:
    c = server.client()
    try:
        return {
            k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in c.info("commandstats").items()
        }
    finally:
        c.close()


def _run(name: str, server: RedisServer, url: str, opts: DoctorOptions) -> DoctorReport:
    before = _calls(server)
    report = run_doctor(url, opts)
    after = _calls(server)
    counted = (
        sum(v - before.get(k, 0) for k, v in after.items() if k not in HANDSHAKE and k != "eval")
        - 1
    )  # the first INFO commandstats above
    t, rtt, ref = report.traffic, report.rtt, report.loopback_rtt
    placement = next((r.id for r in report.recommendations if r.id.startswith("placement")), "-")
    print(
        f"{name:9} server counted {counted:5,} / doctor {t.commands_sent:5,} commands in "
        f"{t.duration_s:5.1f} s = {t.ops_per_s:6.1f}/s (budget {t.budget_ops_per_s:,.0f}/s, "
        f"busiest second {t.busiest_second:,}, back-offs {t.backoffs}, gentle {t.gentle}), "
        f"payload {t.payload_bytes / 1e6:5.1f} MB | RTT p50 {rtt.p50_ms if rtt else 0:.3f} "
        f"p99 {rtt.p99_ms if rtt else 0:.3f} ms, loopback p50 {ref.p50_ms if ref else 0:.3f} | "
        f"{placement} | CPU {report.server.cpu.main_thread if report.server.cpu else 0:.0%} "
        f"busy {report.server.busy or 0:.0%}"
    )
    return report


def main() -> None:
    server = RedisServer()
    try:
        opts = DoctorOptions()
        _run("idle", server, server.url, opts)
        proxy = SlowProxy(server.port)
        proxy.delay = 0.002
        try:
            _run("proxy+2ms", server, proxy.url, opts)
        finally:
            proxy.close()
        stop = threading.Event()

        def busy() -> None:
            c = server.client()
            while not stop.is_set():
                c.eval(BUSY_LUA, 0)
            c.close()

        thread = threading.Thread(target=busy, daemon=True)
        thread.start()
        try:
            _run("busy-lua", server, server.url, DoctorOptions(budget=200))
        finally:
            stop.set()
            thread.join(10)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
