"""``veneer.doctor``: where placement and bandwidth, not Redis, limit the application.

Run from the application's host: a bounded, paced, read-only probe (PING, ECHO,
INFO) under an ops/s and a bandwidth budget; see docs/doctor.md.

    from veneer.doctor import DoctorOptions, run_doctor

    report = run_doctor("redis://cache.internal:6379", DoctorOptions(window=5, budget=500))
    for r in report.recommendations:              # worst first
        print(r.severity, r.id, r.summary)
"""

from __future__ import annotations

from ._advice import RULES
from ._model import (
    SCHEMA,
    CommandCost,
    CpuReport,
    DoctorReport,
    Recommendation,
    RttReport,
    ServerLoad,
    SizeThroughput,
    TrafficReport,
)
from ._render_text import render_text
from ._runner import DEFAULT_SIZES, DoctorError, DoctorOptions, run_doctor

__all__ = [
    "DEFAULT_SIZES",
    "RULES",
    "SCHEMA",
    "CommandCost",
    "CpuReport",
    "DoctorError",
    "DoctorOptions",
    "DoctorReport",
    "Recommendation",
    "RttReport",
    "ServerLoad",
    "SizeThroughput",
    "TrafficReport",
    "render_text",
    "run_doctor",
]
