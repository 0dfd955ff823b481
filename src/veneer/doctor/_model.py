"""The doctor's report: round trips, throughput per payload size, server load, advice.

These types are the stable JSON contract (``schema`` = ``veneer.doctor/1``): fields
are added, never renamed or removed.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..audit import Severity

__all__ = [
    "SCHEMA",
    "CommandCost",
    "CpuReport",
    "DoctorReport",
    "Recommendation",
    "RttReport",
    "ServerLoad",
    "SizeThroughput",
    "TrafficReport",
]

SCHEMA = "veneer.doctor/1"


class RttReport(msgspec.Struct, kw_only=True):
    """PING round trips in milliseconds; ``spread_ms`` is p99 - p50 (the jitter)."""

    samples: int
    p50_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    spread_ms: float


class SizeThroughput(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One payload size: a GET-sized reply alone, and an MGET-sized batch of them.

    ``get_ms`` is the median round trip of one reply of ``size_bytes``; ``mget_ms``
    of ``mget_batch`` of them in one round trip. ``*_mb_s`` are value bytes per
    second over one connection (MB = 10^6 bytes). ``loopback_*`` are the same
    probe against the loopback reference.
    """

    size_bytes: int
    get_ops: int
    get_ms: float
    get_ops_per_s: float
    get_mb_s: float
    mget_batch: int
    mget_ops: int
    mget_ms: float
    mget_values_per_s: float
    mget_mb_s: float
    loopback_get_ms: float | None = None
    loopback_mget_ms: float | None = None


class CpuReport(msgspec.Struct, kw_only=True):
    """Server CPU between two ``INFO`` readings, as a share of one core."""

    window_s: float
    main_thread: float
    process: float
    per_thread: bool  # False when the server has no used_cpu_*_main_thread (before 6.2)


class CommandCost(msgspec.Struct, kw_only=True):
    """One command's share of the server's command time (``INFO commandstats``)."""

    command: str
    calls: int
    usec: int
    usec_per_call: float
    share: float


class ServerLoad(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What the server said about itself over the window (the doctor's own calls removed)."""

    version: str = "unknown"
    cpu: CpuReport | None = None
    # Share of the window spent running commands (wall time, from commandstats usec).
    busy: float | None = None
    connected_clients: int | None = None
    blocked_clients: int | None = None
    maxclients: int | None = None
    ops_per_s: list[float] = msgspec.field(default_factory=list)
    ops_trend: str = "unknown"  # rising, falling, steady or unknown
    net_output_mb_s: float | None = None
    top_commands: list[CommandCost] = msgspec.field(default_factory=list)
    top_commands_scope: str = "window"  # "window", or "lifetime" when the window was idle


class TrafficReport(msgspec.Struct, kw_only=True):
    """What the doctor cost the target: every command counted against ``--budget``."""

    budget_ops_per_s: float
    commands_sent: int
    duration_s: float
    ops_per_s: float
    busiest_second: int
    bandwidth_limit_mb_s: float
    payload_bytes: int
    backoffs: int
    min_rate_ops_per_s: float
    gentle: bool  # the throughput ladder was cut short because the server was busy
    by_command: dict[str, int] = msgspec.field(default_factory=dict)


class Recommendation(msgspec.Struct, kw_only=True):
    """Plain advice tied to the numbers in ``evidence``; ``id`` is stable (docs/doctor.md)."""

    id: str
    severity: Severity
    summary: str
    advice: str
    evidence: dict[str, Any] = msgspec.field(default_factory=dict)


class DoctorReport(msgspec.Struct, kw_only=True):
    """The whole probe; ``recommendations`` are sorted worst first."""

    schema: str = SCHEMA
    target: str
    node: str
    started_at: float
    duration_s: float
    loopback: str  # how the loopback reference was taken, or why it is missing
    rtt: RttReport | None
    loopback_rtt: RttReport | None
    throughput: list[SizeThroughput]
    server: ServerLoad
    traffic: TrafficReport
    recommendations: list[Recommendation]
    blind_spots: list[str] = msgspec.field(default_factory=list)
    interrupted: bool = False

    def recommendation(self, rid: str) -> Recommendation | None:
        """The recommendation with id ``rid``, if the numbers called for it."""
        return next((r for r in self.recommendations if r.id == rid), None)

    def to_json(self) -> bytes:
        return _ENCODER.encode(self)


_ENCODER = msgspec.json.Encoder(order="deterministic")
