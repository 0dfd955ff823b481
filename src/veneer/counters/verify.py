"""``veneer counters verify``: Redis against the database, and what is at risk right now.

For every buffered counter it reads each shard's buffer and claimed buffer (HSCAN,
bounded work per call, never KEYS), checks claimed flush ids against the ledger, and
compares the totals the cache serves for the buffered keys with the database's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .._sync._cache import Cache
from ._spec import read_key
from ._sync._buffer import Buffer
from ._sync._store import CounterStore
from ._sync._versions import ReadVersions
from ._tables import CounterTables, Engine

__all__ = ["CounterCheck", "VerifyReport", "verify_counters"]


@dataclass(slots=True)
class CounterCheck:
    name: str
    mode: str
    shards: int
    buffered: int = 0
    """Sum of the deltas in Redis buffers: acknowledged, not durable yet (at risk)."""
    claimed_uncommitted: int = 0
    """Sum of claimed buffers whose flush has not committed (at risk; a replay applies them)."""
    claimed_committed: int = 0
    """Sum of claimed buffers already in the ledger (durable; only their delete is left)."""
    buffered_keys: int = 0
    cached_checked: int = 0
    """Keys (buffered, or among the last changed) whose durable total the cache holds."""
    cached_diverged: int = 0
    """... whose cached durable total differs from the database's."""
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def at_risk(self) -> int:
        return self.buffered + self.claimed_uncommitted


@dataclass(slots=True)
class VerifyReport:
    namespace: str
    counters: list[CounterCheck]
    eviction_policy: str | None
    warnings: list[str]

    @property
    def at_risk(self) -> int:
        return sum(c.at_risk for c in self.counters)

    @property
    def diverged(self) -> int:
        return sum(c.cached_diverged for c in self.counters)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for check, data in zip(self.counters, out["counters"], strict=True):
            data["at_risk"] = check.at_risk
        out["at_risk"] = self.at_risk
        out["diverged"] = self.diverged
        return out


def verify_counters(
    cache: Cache, engine: Engine, tables: CounterTables, *, sample: int = 1000, examples: int = 5
) -> VerifyReport:
    """Check every counter recorded in ``tables``: the buffered keys and the ``sample`` keys
    whose totals changed last. Raises ``RedisDown`` if Redis does not answer (nothing
    can be said about buffers then)."""
    store = CounterStore(engine, tables)
    buffer = Buffer(cache.redis_access("counters"), ttl=60)
    versions = ReadVersions(cache.redis_access("counters"), ttl=60)
    checks: list[CounterCheck] = []
    warnings: list[str] = []
    policy: str | None = None
    for name, spec in sorted(store.definitions().items()):
        check = CounterCheck(name, spec.mode, spec.shards)
        checks.append(check)
        pending: dict[str, int] = {}
        for shard in range(spec.shards if spec.mode == "buffered" else 0):
            if policy is None:
                policy = _eviction_policy(buffer, name, shard)
            for key, delta in buffer.scan(name, shard, "buf").items():
                check.buffered += delta
                pending[key] = pending.get(key, 0) + delta
            claimed = buffer.scan(name, shard, "claimed")
            flush_id = buffer.flush_id(name, shard)
            if claimed and flush_id is not None and store.ledger_has([flush_id]):
                check.claimed_committed += sum(claimed.values())
            else:
                check.claimed_uncommitted += sum(claimed.values())
            for key in claimed:
                pending.setdefault(key, 0)
        check.buffered_keys = len(pending)
        keys = sorted(set(pending) | set(store.recent_keys(name, sample)))
        durable = store.durable([(name, key) for key in keys])
        if spec.mode == "exact" and keys:
            # An exact key's total is cached under its read version (none: none cached).
            found = versions.read(name, keys, spec.shards, create=False)
            cache_keys = {key: f"{read_key(name, key)}@{found[key]}" for key in found}
        else:
            cache_keys = {key: read_key(name, key) for key in keys}
        for key, cache_key in cache_keys.items():
            cached = cache.get(cache_key)
            if cached is None:
                continue
            check.cached_checked += 1
            db_total = durable[(name, key)].total
            if int(cached[0]) != db_total:
                check.cached_diverged += 1
                if len(check.examples) < examples:
                    check.examples.append({"key": key, "cached": int(cached[0]), "db": db_total})
    if policy is not None and policy != "noeviction":
        warnings.append(
            f"maxmemory-policy is {policy}: Redis may evict buffers of buffered counters "
            "under memory pressure (they carry a TTL); use noeviction, or enough memory"
        )
    return VerifyReport(cache.options.namespace, checks, policy, warnings)


def _eviction_policy(buffer: Buffer, name: str, shard: int) -> str | None:
    key = buffer.keys(name, shard)["buf"]
    info = buffer.door.command(key, "INFO", "memory")
    if isinstance(info, dict):
        value = info.get("maxmemory_policy")
        return None if value is None else str(value)
    return None
