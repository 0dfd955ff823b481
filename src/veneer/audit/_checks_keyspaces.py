"""Checks job-queue and session-store: keyspaces of known tools, as second-database risks.

Each recognised prefix that holds jobs, results or sessions is one finding, whose
severity comes from what the audit read of the node (persistence, eviction policy,
replicas, past flushes: from INFO when CONFIG is refused) and whose advice names
what replaces it in the database. A tool's bookkeeping keys (bindings, worker
heartbeats, counters of ids) are listed in the evidence, not reported on their own.
"""

from __future__ import annotations

from collections.abc import Iterator

from ._checks_keys import _size, store_risks
from ._context import AuditData
from ._keyspaces import KeyspaceMatch, Kind, recognise
from ._model import Finding

__all__ = ["job_queue", "session_store"]


def _findings(data: AuditData, kind: Kind) -> Iterator[Finding]:
    matches = [m for m in recognise(data.prefixes) if m.tool.kind == kind]
    bookkeeping: dict[tuple[int, str], list[str]] = {}
    for m in matches:
        if not m.layout.risky:
            bookkeeping.setdefault((m.prefix.db, m.tool.name), []).append(m.prefix.pattern)
    for m in matches:
        if m.layout.risky:
            yield _finding(m, data, bookkeeping.get((m.prefix.db, m.tool.name), []))


def _finding(m: KeyspaceMatch, data: AuditData, related: list[str]) -> Finding:
    p, tool = m.prefix, m.tool
    expiring = p.no_ttl_keys_share < 1.0
    severity, risks, facts = store_risks(p, data, expiring=expiring)
    about = f"{p.keys_estimated:,}" if data.sampling_complete else f"~{p.keys_estimated:,}"
    return Finding(
        id=tool.kind,
        severity=severity,
        summary=(
            f"{p.pattern}: {tool.name} {m.layout.role} ({about} keys, "
            f"{_size(p.bytes_estimated)}) exist only in Redis: {m.layout.loss}"
            + (f"; {risks[0]}" if risks else "")
        ),
        prefix=p.pattern,
        db=p.db,
        nodes=p.nodes,
        evidence={
            "tool": tool.name,
            "role": m.layout.role,
            "layout": tool.docs,
            "keys_estimated": p.keys_estimated,
            "bytes_estimated": p.bytes_estimated,
            "no_ttl_keys_share": round(p.no_ttl_keys_share, 4),
            "types": dict(p.types),
            "related_prefixes": sorted(related),
            "risks": risks,
            "nodes": facts,
        },
        advice=(
            f"Move it to the database: {tool.replacement}. Until then run this Redis as a "
            "database, apart from the cache's: AOF (appendfsync everysec), a replica, "
            "maxmemory-policy noeviction with a memory alert, and backups."
        ),
    )


def job_queue(data: AuditData) -> Iterator[Finding]:
    """Celery/kombu, RQ, BullMQ, Sidekiq, Dramatiq and arq keyspaces."""
    return _findings(data, "job-queue")


def session_store(data: AuditData) -> Iterator[Finding]:
    """Django (cache engine), Flask-Session, express-session and Rails session keys."""
    return _findings(data, "session-store")
