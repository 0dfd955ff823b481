"""The registry of checks: stable ids in report order, each a pure function of AuditData."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from . import _checks_commands as commands
from . import _checks_keys as keys
from . import _checks_keyspaces as keyspaces
from . import _checks_server as server
from ._context import AuditData
from ._model import Finding

__all__ = ["CHECKS", "run_checks"]

Check = Callable[[AuditData], Iterable[Finding]]

# id -> check. The ids are the contract documented in docs/audit.md.
CHECKS: dict[str, Check] = {
    "no-ttl": keys.no_ttl,
    "source-of-truth-risk": keys.source_of_truth_risk,
    "job-queue": keyspaces.job_queue,
    "session-store": keyspaces.session_store,
    "eviction-policy": server.eviction_policy,
    "big-key": keys.big_key,
    "hot-key": keys.hot_key,
    "slowlog-blocking": commands.slowlog_blocking,
    "blocking-commands": commands.blocking_commands,
    "cpu": server.cpu,
    "memory": server.memory,
    "persistence": server.persistence_check,
    "replication": server.replication,
    "clients": server.clients,
    "logical-dbs": server.logical_dbs,
    "security": server.security,
    "version": server.version,
}


def run_checks(data: AuditData) -> list[Finding]:
    """Every check's findings, worst first; within a severity, in check order."""
    order = {name: i for i, name in enumerate(CHECKS)}
    found: list[Finding] = []
    for check in CHECKS.values():
        found.extend(check(data))
    return sorted(found, key=lambda f: (-f.severity.rank, order[f.id]))
