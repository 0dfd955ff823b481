"""The audit's report: findings, per-prefix statistics and per-node server facts.

These types are the stable JSON contract (``schema`` = ``veneer.audit/1``): fields
are added, never renamed or removed, so CI jobs can parse the output safely.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

__all__ = [
    "SCHEMA",
    "AuditReport",
    "Finding",
    "NodeReport",
    "PrefixReport",
    "SamplingReport",
    "ServerReport",
    "Severity",
    "TopKey",
]

SCHEMA = "veneer.audit/1"


class Severity(enum.StrEnum):
    """How urgent a finding is; ``info`` findings are notes, never failures."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls(text.lower())
        except ValueError:
            names = ", ".join(s.value for s in cls)
            raise ValueError(f"unknown severity {text!r}; use one of: {names}") from None


_RANK = {s: i for i, s in enumerate(Severity)}


class Finding(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One thing the audit wants a human to look at.

    ``id`` is one of the stable check ids in docs/audit.md; ``prefix`` (a key
    pattern such as ``user:*``) or ``key`` says where, ``nodes`` on which servers.
    """

    id: str
    severity: Severity
    summary: str
    evidence: dict[str, Any]
    advice: str
    prefix: str | None = None
    key: str | None = None
    db: int | None = None
    command: str | None = None
    nodes: list[str] = msgspec.field(default_factory=list)

    @property
    def where(self) -> str:
        """Where the finding points, for tables: a prefix, a key, a command or the nodes."""
        db = f"db{self.db} " if self.db else ""
        if self.prefix is not None:
            return f"{db}{self.prefix}"
        if self.key is not None:
            return f"{db}{self.key}"
        if self.command is not None:
            return self.command
        return ", ".join(self.nodes)


class PrefixReport(msgspec.Struct, kw_only=True):
    """What one key pattern holds, estimated from the key sample.

    Shares are in [0, 1]; each ``*_ci95`` is a 95% interval that is a single point
    when every key was read (no sampling error) and widens as the sample shrinks.
    """

    pattern: str
    db: int = 0
    keys_sampled: int
    keys_estimated: int
    keys_margin95: int
    no_ttl_keys_share: float
    no_ttl_keys_ci95: tuple[float, float]
    bytes_estimated: int | None = None
    no_ttl_bytes_share: float | None = None
    no_ttl_bytes_ci95: tuple[float, float] | None = None
    avg_ttl_s: float | None = None
    types: dict[str, int] = msgspec.field(default_factory=dict)
    nodes: list[str] = msgspec.field(default_factory=list)

    @property
    def no_ttl_keys_estimated(self) -> int:
        return round(self.keys_estimated * self.no_ttl_keys_share)

    @property
    def no_ttl_bytes_estimated(self) -> int | None:
        if self.bytes_estimated is None or self.no_ttl_bytes_share is None:
            return None
        return round(self.bytes_estimated * self.no_ttl_bytes_share)


class TopKey(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A sampled key worth naming: one of the biggest or hottest."""

    key: str
    type: str
    db: int = 0
    node: str
    bytes: int | None = None
    length: int | None = None
    ttl_s: float | None = None
    freq: int | None = None


class NodeReport(msgspec.Struct, kw_only=True):
    """Server facts for one node, the evidence behind the server-level checks."""

    address: str
    role: str
    version: str
    server_name: str = "redis"
    managed_service: str | None = None  # e.g. "Amazon ElastiCache", from INFO or the host name
    used_memory: int | None = None
    maxmemory: int | None = None
    maxmemory_policy: str | None = None
    keyspace: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)
    persistence: dict[str, Any] = msgspec.field(default_factory=dict)
    replication: dict[str, Any] = msgspec.field(default_factory=dict)
    clients: dict[str, Any] = msgspec.field(default_factory=dict)
    memory: dict[str, Any] = msgspec.field(default_factory=dict)
    cpu: dict[str, Any] = msgspec.field(default_factory=dict)
    slowlog: dict[str, Any] = msgspec.field(default_factory=dict)
    commandstats: dict[str, dict[str, float]] = msgspec.field(default_factory=dict)
    blind_spots: list[str] = msgspec.field(default_factory=list)


class SamplingReport(msgspec.Struct, kw_only=True):
    """How much of the keyspace was read and what it cost the server."""

    keys_total: int
    keys_sampled: int
    sample_limit: int | None
    complete: bool
    interrupted: bool = False
    no_ttl_keys_share: float | None = None
    no_ttl_keys_ci95: tuple[float, float] | None = None
    no_ttl_keys_share_exact: float | None = None
    budget_ops_per_s: float
    commands_sent: int
    duration_s: float
    ops_per_s: float
    backoffs: int = 0
    min_rate_ops_per_s: float | None = None
    baseline_ping_ms: float | None = None
    max_ping_ms: float | None = None


class ServerReport(msgspec.Struct, kw_only=True):
    """The audited servers: ``topology`` is standalone, cluster or sentinel."""

    topology: str
    nodes: list[NodeReport]


class AuditReport(msgspec.Struct, kw_only=True):
    """The whole audit; ``findings`` are sorted worst first."""

    schema: str = SCHEMA
    target: str
    started_at: float
    duration_s: float
    findings: list[Finding]
    prefixes: list[PrefixReport]
    server: ServerReport
    sampling: SamplingReport
    top_keys: dict[str, dict[str, list[TopKey]]] = msgspec.field(default_factory=dict)
    hot_keys: list[TopKey] = msgspec.field(default_factory=list)
    blind_spots: list[str] = msgspec.field(default_factory=list)

    def worst(self) -> Severity | None:
        """The highest severity among the findings, None when there are none."""
        if not self.findings:
            return None
        return max((f.severity for f in self.findings), key=lambda s: s.rank)

    def fails(self, threshold: Severity) -> bool:
        """True when a finding at or above ``threshold`` exists (the CI gate)."""
        return any(f.severity.rank >= threshold.rank for f in self.findings)

    def to_json(self) -> bytes:
        return _ENCODER.encode(self)


_ENCODER = msgspec.json.Encoder(order="deterministic")
