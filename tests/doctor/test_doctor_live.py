"""`veneer doctor` against the suite's own redis-servers: loopback, a 2 ms proxy, a busy server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from proxy import SlowProxy
from servers import RedisServer
from veneer.cli import main
from veneer.doctor import DoctorOptions, DoctorReport, run_doctor

# Short runs for the suite: half a second of PINGs and three payload sizes.
FAST = DoctorOptions(window=0.5, pings=60, sizes=(100, 10_000, 100_000), budget=2_000)
BUSY_LUA = "local i = 0 while i < 3000000 do i = i + 1 end return i"  # about 30 ms
# The connection handshake redis-py sends on its own (not paced: once per connection).
HANDSHAKE = {"client|setname", "client|setinfo", "hello", "select", "auth"}


@pytest.fixture
def server() -> Iterator[RedisServer]:
    s = RedisServer()
    yield s
    s.stop()


def _placement(report: DoctorReport) -> str:
    (rid,) = [r.id for r in report.recommendations if r.id.startswith("placement-")]
    return rid


def test_two_added_milliseconds_are_detected_and_change_the_advice(server: RedisServer) -> None:
    """Direct on loopback the placement is local; through the latency proxy adding 2 ms the
    probe measures the extra round trip against its loopback reference and says "different
    zones"."""
    direct = run_doctor(server.url, FAST)
    assert direct.rtt is not None and direct.loopback_rtt is not None
    assert direct.rtt.min_ms - direct.loopback_rtt.min_ms < 1.0
    assert _placement(direct) in {"placement-local", "placement-same-zone"}

    proxy = SlowProxy(server.port)
    try:
        proxy.delay = 0.002
        slow = run_doctor(proxy.url, FAST)
    finally:
        proxy.close()
    assert slow.rtt is not None and slow.loopback_rtt is not None
    assert slow.rtt.min_ms >= 2.0 and slow.rtt.p50_ms >= 2.0
    assert slow.rtt.p50_ms - slow.loopback_rtt.p50_ms >= 1.5
    assert slow.loopback_rtt.p50_ms < 1.0  # the reference stays on loopback
    assert _placement(slow) == "placement-cross-zone"
    rec = slow.recommendation("placement-cross-zone")
    assert rec is not None and "likely in different zones" in rec.summary
    assert rec.evidence["p50_ms"] == slow.rtt.p50_ms
    # Every payload round trip pays the 2 ms too.
    assert all(s.get_ms >= 2.0 for s in slow.throughput)


def _commandstats(server: RedisServer) -> dict[str, int]:
    c = server.client()
    try:
        return {
            k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in c.info("commandstats").items()
        }
    finally:
        c.close()


def _main_thread_cpu(server: RedisServer) -> float:
    c = server.client()
    try:
        info = c.info("cpu")
    finally:
        c.close()
    return float(info["used_cpu_sys_main_thread"]) + float(info["used_cpu_user_main_thread"])


def test_busy_server_cpu_reported_within_budget(server: RedisServer) -> None:
    """With another client running a Lua busy loop back to back, the doctor reports the main
    thread's CPU and the script's cost, cuts its ladder short, and the server
    counts exactly the commands the doctor says it sent, at most --budget a second."""
    stop = threading.Event()
    ran = threading.Event()

    def busy() -> None:
        c = server.client()
        try:
            while not stop.is_set():
                c.eval(BUSY_LUA, 0)
                ran.set()
        finally:
            c.close()

    thread = threading.Thread(target=busy, daemon=True)
    thread.start()
    assert ran.wait(10)
    budget = 200.0
    try:
        cpu_before = _main_thread_cpu(server)
        before = _commandstats(server)
        report = run_doctor(
            server.url,
            DoctorOptions(window=1.0, pings=40, sizes=(100,), budget=budget),
        )
        after = _commandstats(server)
        cpu_after = _main_thread_cpu(server)
    finally:
        stop.set()
        thread.join(10)
    delta = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    delta["info"] -= 1  # the test's first INFO commandstats (INFO cpu came before it)
    doctor = {k: v for k, v in delta.items() if k not in HANDSHAKE and k != "eval"}
    t = report.traffic
    assert doctor == t.by_command, (doctor, t.by_command)
    assert sum(doctor.values()) == t.commands_sent
    assert t.busiest_second <= budget + 10  # one MGET-sized batch may leave at once
    assert t.ops_per_s <= budget
    assert t.gentle  # the ladder was cut short: the server is busy
    # Wall time running commands does not depend on how much CPU the host gives Redis;
    # CPU time does (a loaded 2-core machine starves it): the CPU figure is checked
    # against the server's own counter over a window that encloses the doctor's.
    assert report.server.busy is not None and report.server.busy >= 0.8
    cpu = report.server.cpu
    assert cpu is not None and cpu.per_thread and cpu.main_thread >= 0.1
    assert cpu.main_thread * cpu.window_s <= cpu_after - cpu_before + 0.01
    top = report.server.top_commands[0]
    assert top.command == "EVAL" and top.share >= 0.9
    assert report.recommendation("command-cost") is not None
    if report.server.cpu.main_thread >= 0.8:
        assert report.recommendation("cpu-shard") is not None


def test_cli_json_and_exit_codes(server: RedisServer) -> None:
    """--format json prints the report document; no loopback reference when told so; a bad
    URL is a usage error (2) and an unreachable server exit 3."""
    runner = CliRunner()
    args = ["doctor", server.url, "--window", "0.3", "--pings", "10", "--sizes", "100,10k",
            "--no-loopback", "--format", "json"]  # fmt: skip
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["schema"] == "veneer.doctor/1"
    assert doc["loopback_rtt"] is None and doc["loopback"].startswith("off")
    assert [s["size_bytes"] for s in doc["throughput"]] == [100, 10_000]
    assert doc["traffic"]["commands_sent"] == sum(doc["traffic"]["by_command"].values())
    bad = runner.invoke(main, ["doctor", server.url, "--sizes", "ten"])
    assert bad.exit_code == 2 and "not a size" in bad.output
    down = runner.invoke(main, ["doctor", "redis://127.0.0.1:1/0", "--timeout", "0.5"])
    assert down.exit_code == 3 and "cannot reach" in down.output


def test_refused_password_is_a_usage_error_and_never_printed() -> None:
    """A wrong password is exit 2 with the password masked."""
    s = RedisServer("--user", "alice", "on", ">Right0ne", "~*", "&*", "+@all")
    try:
        url = f"redis://alice:Wr0ngPass@127.0.0.1:{s.port}/0"
        result = CliRunner().invoke(main, ["doctor", url, "--timeout", "1"])
    finally:
        s.stop()
    assert result.exit_code == 2, result.output
    assert "refused the login" in result.output and "Wr0ngPass" not in result.output
