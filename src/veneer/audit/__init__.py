"""``veneer.audit``: show where a live Redis has become a second database.

Independent of the cache core: it needs only redis-py. The audit is read-only
and safe on production (bounded SCAN, O(1) commands per key, a global ops/s
budget with back-off); see docs/audit.md for every check.

    from veneer.audit import AuditOptions, run_audit

    report = run_audit("redis://127.0.0.1:6379", AuditOptions(sample=50_000, budget=2_000))
    for finding in report.findings:
        print(finding.severity, finding.id, finding.where, finding.summary)
"""

from __future__ import annotations

from ._checks import CHECKS
from ._model import (
    SCHEMA,
    AuditReport,
    Finding,
    NodeReport,
    PrefixReport,
    SamplingReport,
    ServerReport,
    Severity,
    TopKey,
)
from ._patterns import fold_key
from ._render_html import render_html
from ._render_text import render_text
from ._runner import AuditError, AuditOptions, Progress, run_audit
from ._target import mask_url

__all__ = [
    "CHECKS",
    "SCHEMA",
    "AuditError",
    "AuditOptions",
    "AuditReport",
    "Finding",
    "NodeReport",
    "PrefixReport",
    "Progress",
    "SamplingReport",
    "ServerReport",
    "Severity",
    "TopKey",
    "fold_key",
    "mask_url",
    "render_html",
    "render_text",
    "run_audit",
]
