"""The audit's public names are pinned: adding or removing one is a deliberate change."""

from __future__ import annotations

import veneer.audit


def test_public_api_of_veneer_audit() -> None:
    """veneer.audit exports exactly its documented names, all defined inside veneer."""
    assert sorted(veneer.audit.__all__) == sorted(
        [
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
    )
    for name in veneer.audit.__all__:
        value = getattr(veneer.audit, name)
        module = getattr(value, "__module__", "veneer.audit")
        assert module.startswith("veneer")


def test_check_ids_are_the_documented_ones() -> None:
    """The check ids are a contract: docs/audit.md documents each one."""
    assert list(veneer.audit.CHECKS) == [
        "no-ttl",
        "source-of-truth-risk",
        "job-queue",
        "session-store",
        "eviction-policy",
        "big-key",
        "hot-key",
        "slowlog-blocking",
        "blocking-commands",
        "cpu",
        "memory",
        "persistence",
        "replication",
        "clients",
        "logical-dbs",
        "security",
        "version",
    ]
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "audit.md").read_text()
    for check in veneer.audit.CHECKS:
        assert f"| `{check}` |" in doc


def test_audit_error_is_a_veneer_error() -> None:
    """Failures to reach Redis share veneer's error root."""
    assert issubclass(veneer.audit.AuditError, veneer.VeneerError)
