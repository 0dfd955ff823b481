"""The doctor's arithmetic and advice, without servers: figures in, recommendations out."""

from __future__ import annotations

import pytest

from veneer import ConfigurationError, VeneerError
from veneer.audit import Severity
from veneer.doctor import RULES, CpuReport, DoctorOptions, RttReport, ServerLoad, SizeThroughput
from veneer.doctor._advice import advise
from veneer.doctor._figures import command_costs, ops_series, percentile, rtt_report, trend
from veneer.doctor._runner import _rounds


def _rtt(p50: float, p99: float) -> RttReport:
    return RttReport(samples=100, p50_ms=p50, p99_ms=p99, min_ms=p50, max_ms=p99,
                     spread_ms=round(p99 - p50, 3))  # fmt: skip


def _ids(recs: list) -> list[str]:  # type: ignore[type-arg]
    return [r.id for r in recs]


def test_percentiles_are_nearest_rank() -> None:
    """p50 and p99 are values that were measured (nearest rank), never interpolated."""
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0
    r = rtt_report([0.001] * 98 + [0.010, 0.020])
    assert r is not None and (r.p50_ms, r.p99_ms, r.max_ms, r.spread_ms) == (1.0, 10.0, 20.0, 9.0)
    with pytest.raises(ValueError):
        percentile([], 50)


@pytest.mark.parametrize(
    ("p50", "loopback", "expected"),
    [
        (0.12, 0.10, "placement-local"),
        (0.60, 0.10, "placement-same-zone"),
        (2.40, 0.10, "placement-cross-zone"),
        (45.0, 0.10, "placement-cross-region"),
    ],
)
def test_placement_follows_the_extra_round_trip(p50: float, loopback: float, expected: str) -> None:
    """Placement is judged on the p50 round trip beyond loopback's, and says so in numbers."""
    recs = advise(_rtt(p50, p50 * 1.5), _rtt(loopback, loopback * 1.5), [], ServerLoad())
    placement = [r for r in recs if r.id.startswith("placement-")]
    assert _ids(placement) == [expected]
    assert (
        f"{p50:.2f} ms" in placement[0].summary
        and f"{loopback:.2f} ms on loopback" in placement[0].summary
    )


def test_a_busy_server_is_not_mistaken_for_a_far_one() -> None:
    """Queueing behind long commands inflates the p50, not the fastest round trip: with a
    floor like loopback's, the placement stays local (the CPU and command rules speak)."""
    busy = RttReport(
        samples=100, p50_ms=28.0, p99_ms=90.0, min_ms=0.12, max_ms=95.0, spread_ms=62.0
    )
    recs = advise(busy, _rtt(0.1, 0.3), [], ServerLoad())
    assert "placement-local" in _ids(recs) and "placement-cross-region" not in _ids(recs)


def test_cross_zone_reads_like_the_issue() -> None:
    """The example of issue 16: a 2.4 ms round trip against 0.1 ms on loopback."""
    (rec,) = [
        r
        for r in advise(_rtt(2.4, 2.9), _rtt(0.1, 0.2), [], ServerLoad())
        if r.id.startswith("placement")
    ]
    assert rec.severity is Severity.MEDIUM
    assert rec.summary.endswith("the app and Redis are likely in different zones")
    assert rec.evidence["excess_ms"] == pytest.approx(2.3)


def test_jitter_says_whether_the_host_or_the_network_stalls() -> None:
    """A p99 far above the p50 is jitter; loopback tells the client host from the path."""
    net = advise(_rtt(0.5, 6.0), _rtt(0.1, 0.15), [], ServerLoad())
    host = advise(_rtt(0.5, 6.0), _rtt(0.1, 3.0), [], ServerLoad())
    (a,) = [r for r in net if r.id == "rtt-jitter"]
    (b,) = [r for r in host if r.id == "rtt-jitter"]
    assert a.evidence["local_jitter"] is False and "network or the server" in a.summary
    assert b.evidence["local_jitter"] is True and "host itself" in b.summary
    assert "rtt-jitter" not in _ids(advise(_rtt(0.5, 1.2), None, [], ServerLoad()))


def test_cpu_over_eighty_percent_says_shard_not_scale_up() -> None:
    """Main thread at 85%: shard (Cluster) rather than a bigger instance; 60% is a warning."""

    def load(share: float) -> ServerLoad:
        return ServerLoad(
            cpu=CpuReport(window_s=5, main_thread=share, process=share, per_thread=True)
        )

    (hot,) = [r for r in advise(None, None, [], load(0.85)) if r.id.startswith("cpu")]
    assert hot.id == "cpu-shard" and hot.severity is Severity.HIGH
    assert "85% CPU: shard (Cluster) rather than a bigger instance" in hot.summary
    assert _ids(advise(None, None, [], load(0.6))) == ["cpu-headroom"]
    assert advise(None, None, [], load(0.2)) == []


def _size(size: int, get_ms: float, loopback_ms: float | None) -> SizeThroughput:
    return SizeThroughput(
        size_bytes=size, get_ops=10, get_ms=get_ms, get_ops_per_s=1000 / get_ms,
        get_mb_s=size / get_ms / 1000, mget_batch=10, mget_ops=5, mget_ms=get_ms * 2,
        mget_values_per_s=10_000 / (get_ms * 2), mget_mb_s=size / get_ms / 200,
        loopback_get_ms=loopback_ms, loopback_mget_ms=None,
    )  # fmt: skip


def test_bandwidth_limit_names_the_first_size_the_network_limits() -> None:
    """From the first size whose round trip is dominated by moving bytes (and that loopback
    moves much faster), the network is the limit."""
    sizes = [_size(100, 0.5, 0.05), _size(10_000, 0.6, 0.06), _size(100_000, 4.2, 0.3),
             _size(1 << 20, 40.0, 2.5)]  # fmt: skip
    recs = [r for r in advise(_rtt(0.5, 0.7), _rtt(0.05, 0.08), sizes, ServerLoad())
            if r.id == "bandwidth-large-values"]  # fmt: skip
    assert len(recs) == 1 and recs[0].evidence["size_bytes"] == 100_000
    assert "from 100 KB on, the network, not Redis, is the limit" in recs[0].summary
    # The same figures on loopback too: Redis and the client, not the network.
    local = [_size(100_000, 4.2, 4.0)]
    assert "bandwidth-large-values" not in _ids(
        advise(_rtt(0.5, 0.7), _rtt(0.05, 0.08), local, ServerLoad())
    )


def test_command_costs_leave_out_the_doctors_own_calls() -> None:
    """The doctor's PINGs and INFOs are not the application's: its calls are subtracted and
    the usec scaled by the share left; an idle window falls back to lifetime figures."""
    first = {"cmdstat_get": {"calls": 100, "usec": 1000}, "cmdstat_ping": {"calls": 5, "usec": 5}}
    second = {
        "cmdstat_get": {"calls": 300, "usec": 3000},
        "cmdstat_ping": {"calls": 105, "usec": 105},
        "cmdstat_evalsha": {"calls": 10, "usec": 50_000},
    }
    costs, scope = command_costs(first, second, {"ping": 100})
    assert scope == "window"
    assert [(c.command, c.calls, c.usec) for c in costs] == [
        ("EVALSHA", 10, 50_000),
        ("GET", 200, 2000),
    ]
    assert costs[0].share == pytest.approx(50_000 / 52_000, abs=1e-4)
    idle, scope = command_costs(
        first, {**first, "cmdstat_ping": {"calls": 10, "usec": 10}}, {"ping": 5}
    )
    assert scope == "lifetime" and [c.command for c in idle] == ["GET", "PING"]


def test_ops_series_and_trend() -> None:
    """Ops/s per interval leaves out the doctor's commands; a rise of more than 25% is a trend."""
    points = [(0.0, 1000, 1), (1.0, 2011, 12), (2.0, 3022, 23)]
    assert ops_series(points) == [1000.0, 1000.0]
    assert trend([1000, 1000, 1010]) == "steady"
    assert trend([1000, 1500, 2000]) == "rising"
    assert trend([2000, 1000, 500]) == "falling"
    assert trend([0, 2, 3]) == "steady"  # a few commands are noise, not a trend
    assert trend([5.0]) == "unknown"


def test_ladder_rounds_are_bounded() -> None:
    """Each size moves a bounded number of bytes: many small round trips, few big ones."""
    assert _rounds(100) == (30, 10, 10)
    gets, batch, mgets = _rounds(1 << 20)
    assert (gets, batch, mgets) == (3, 2, 3)
    for size in (100, 1_000, 10_000, 100_000, 1 << 20):
        gets, batch, mgets = _rounds(size)
        assert size * (gets + batch * mgets) <= 10 << 20


def test_rule_ids_are_documented() -> None:
    """The recommendation ids are a contract: docs/doctor.md documents each one."""
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "doctor.md").read_text()
    for rid in RULES:
        assert f"| `{rid}` |" in doc, rid


def test_public_api_of_veneer_doctor() -> None:
    """veneer.doctor exports exactly its documented names, all defined inside veneer."""
    import veneer.doctor

    assert sorted(veneer.doctor.__all__) == sorted(
        [
            "DEFAULT_SIZES", "RULES", "SCHEMA", "CommandCost", "CpuReport", "DoctorError",
            "DoctorOptions", "DoctorReport", "Recommendation", "RttReport", "ServerLoad",
            "SizeThroughput", "TrafficReport", "render_text", "run_doctor",
        ]
    )  # fmt: skip
    assert issubclass(veneer.doctor.DoctorError, VeneerError)


def test_bad_options_are_refused_clearly() -> None:
    """Options that cannot measure anything fail at construction, saying what to fix."""
    with pytest.raises(ConfigurationError, match="at least 2 PINGs"):
        DoctorOptions(pings=1)
    with pytest.raises(ConfigurationError, match="between 1 byte and 64 MiB"):
        DoctorOptions(sizes=(0,))
