"""The report's columns and stack names (docs/demo.md, schema version 1), in one place:
the report builder writes both into every report, the HTML page falls back on the
columns for a report that lacks them, and the tests' hand-built reports use both. No imports, so
the HTML page's module stays free of the terminal's dependencies."""

from __future__ import annotations

__all__ = ["METRICS", "STACK_LABELS"]

METRICS: list[dict[str, str]] = [
    {"key": "errors", "label": "caller errors", "unit": "count"},
    {"key": "p50_ms", "label": "p50", "unit": "ms"},
    {"key": "p99_ms", "label": "p99", "unit": "ms"},
    {"key": "db_qps", "label": "database queries/s", "unit": "per_s"},
    {"key": "logged_out", "label": "users logged out", "unit": "count"},
    {"key": "counts_lost", "label": "counter increments lost", "unit": "count"},
    {"key": "stale_reads", "label": "stale reads after commit", "unit": "count"},
    {"key": "wrong_flags", "label": "wrong flag answers", "unit": "count"},
    {"key": "net_bytes", "label": "bytes over the network", "unit": "bytes"},
]
STACK_LABELS: dict[str, str] = {
    "naive": "naive (Redis holds everything)",
    "veneer": "veneer (database is the truth)",
}
