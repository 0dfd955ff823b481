"""Interpret raw INFO and CONFIG into the few facts several checks share.

Each function reads what is visible and says ``None`` for what is not (CONFIG
disabled on a managed service), so a check can state its blind spot instead of
guessing.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._snapshot import NodeSnapshot

__all__ = [
    "Eviction",
    "Persistence",
    "eviction",
    "is_loopback_bind",
    "managed_service",
    "output_buffer_limits",
    "persistence",
    "version_tuple",
]


@dataclass(frozen=True, slots=True)
class Persistence:
    """How (and whether) a node's data survives a restart."""

    rdb: bool | None  # save points configured (or snapshots seen); None when unknown
    aof: bool
    failing: tuple[str, ...]
    changes_since_save: int | None
    last_save_age_s: float | None
    source: str = "config"  # "config", or "info" when CONFIG is hidden and INFO was read
    durable: bool = False  # a service whose every write is durable (MemoryDB)

    @property
    def enabled(self) -> bool | None:
        if self.aof or self.rdb or self.durable:
            return True
        return None if self.rdb is None else False

    def describe(self) -> str:
        if self.durable:
            return "durable (multi-AZ transaction log)"
        parts = [p for p, on in (("RDB", self.rdb), ("AOF", self.aof)) if on]
        seen = " (from INFO)" if self.source == "info" else ""
        if parts:
            return "+".join(parts) + seen
        if self.rdb is None:
            return "unknown (CONFIG hidden)"
        return "off" + seen


# Without CONFIG, a server that saw an hour of writes and no snapshot has no save
# schedule: Redis's default one ("3600 1 300 100 60 10000") would have saved by then.
_NO_SAVE_AFTER_S = 3600


def _rdb_from_info(snap: NodeSnapshot) -> bool | None:
    """Whether RDB snapshots happen, read from INFO persistence when CONFIG is hidden."""
    saves = snap.num("rdb_saves")  # Redis 7.0+: snapshots since the server started
    if saves is not None and saves > 0:
        return True
    last_bgsave = snap.num("rdb_last_bgsave_time_sec")  # -1 until a BGSAVE has run
    if last_bgsave is not None and last_bgsave >= 0:
        return True
    uptime, changes = snap.num("uptime_in_seconds"), snap.num("rdb_changes_since_last_save")
    if uptime is not None and changes is not None and uptime >= _NO_SAVE_AFTER_S and changes > 0:
        return False
    return None


def persistence(snap: NodeSnapshot) -> Persistence:
    save = snap.conf("save")
    failing = []
    for key, what in (
        ("rdb_last_bgsave_status", "the last RDB save failed"),
        ("aof_last_bgrewrite_status", "the last AOF rewrite failed"),
        ("aof_last_write_status", "the last AOF write failed"),
    ):
        status = snap.text(key)
        if status and status != "ok":
            failing.append(what)
    last_save = snap.num("rdb_last_save_time")
    now = snap.num("server_time_usec")
    age = None
    if last_save and now:
        age = max(0.0, now / 1e6 - last_save)
    changes = snap.num("rdb_changes_since_last_save")
    return Persistence(
        rdb=_rdb_from_info(snap) if save is None else bool(save.strip()),
        aof=snap.num("aof_enabled", 0) == 1,
        failing=tuple(failing),
        changes_since_save=None if changes is None else int(changes),
        last_save_age_s=age,
        source="info" if save is None else "config",
        durable=managed_service(snap) == "Amazon MemoryDB",
    )


# Host name suffixes of managed services, and what INFO server says on some of them.
_HOST_SUFFIXES = (
    (".cache.amazonaws.com", "Amazon ElastiCache"),
    (".cache.amazonaws.com.cn", "Amazon ElastiCache"),
    (".memorydb.", "Amazon MemoryDB"),  # clustercfg.x.memorydb.<region>.amazonaws.com
    (".redis.cache.windows.net", "Azure Cache for Redis"),
    (".redisenterprise.cache.azure.net", "Azure Cache for Redis (Enterprise)"),
    (".redis.azure.net", "Azure Managed Redis"),
    (".redis-cloud.com", "Redis Cloud"),
    (".redislabs.com", "Redis Cloud"),
    (".rlrcp.com", "Redis Cloud"),
    (".upstash.io", "Upstash"),
    (".aivencloud.com", "Aiven"),
    (".db.ondigitalocean.com", "DigitalOcean Managed Databases"),
)


def managed_service(snap: NodeSnapshot, host: str | None = None) -> str | None:
    """The managed service a node runs on, from INFO server (``os``) or its host name."""
    os_field = snap.text("os").lower()
    if "memorydb" in os_field:
        return "Amazon MemoryDB"
    if "elasticache" in os_field:
        return "Amazon ElastiCache"
    name = (host if host is not None else snap.address.rpartition(":")[0] or snap.address).lower()
    for suffix, service in _HOST_SUFFIXES:
        if suffix.endswith(".") and suffix in name and name.endswith(".amazonaws.com"):
            return service
        if not suffix.endswith(".") and name.endswith(suffix):
            return service
    return None


@dataclass(frozen=True, slots=True)
class Eviction:
    """The memory limit and what Redis does when it reaches it."""

    maxmemory: int
    policy: str
    used: int

    @property
    def limited(self) -> bool:
        return self.maxmemory > 0

    @property
    def usage(self) -> float | None:
        return self.used / self.maxmemory if self.maxmemory else None

    @property
    def evicts_any_key(self) -> bool:
        """allkeys-*: Redis may delete keys without a TTL, i.e. data that exists only here."""
        return self.limited and self.policy.startswith("allkeys-")

    @property
    def lfu(self) -> bool:
        return self.policy.endswith("-lfu")


def eviction(snap: NodeSnapshot) -> Eviction:
    # INFO memory carries both, so this is visible even where CONFIG is disabled.
    policy = snap.text("maxmemory_policy") or (snap.conf("maxmemory-policy") or "unknown")
    return Eviction(
        maxmemory=int(snap.num("maxmemory", 0) or 0),
        policy=policy,
        used=int(snap.num("used_memory", 0) or 0),
    )


def is_loopback_bind(snap: NodeSnapshot) -> bool | None:
    """True when the server only listens on loopback or a unix socket; None when unknown."""
    bind = snap.conf("bind")
    port = snap.conf("port")
    tls_port = snap.conf("tls-port")
    if bind is None:
        return None
    if port == "0" and tls_port in (None, "0"):
        return True  # unix socket only
    addresses = [a.lstrip("-") for a in bind.split()]
    return bool(addresses) and all(
        a.startswith("127.") or a in ("::1", "localhost") for a in addresses
    )


def output_buffer_limits(snap: NodeSnapshot) -> dict[str, int] | None:
    """Hard output buffer limit per client class (0 = unlimited), from CONFIG."""
    raw = snap.conf("client-output-buffer-limit")
    if raw is None:
        return None
    words = raw.split()
    out: dict[str, int] = {}
    for i in range(0, len(words) - 3, 4):
        cls = "replica" if words[i] == "slave" else words[i]
        try:
            out[cls] = int(words[i + 1])
        except ValueError:
            continue
    return out


def version_tuple(version: str) -> tuple[int, int, int]:
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits) if digits else 0)
    while len(parts) < 3:
        parts.append(0)
    return (parts[0], parts[1], parts[2])
