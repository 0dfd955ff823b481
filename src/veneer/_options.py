"""Cache options: validated once, when the cache is built, with messages that say what to change."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, TypeAlias

from ._codec import Codec
from ._errors import ConfigurationError
from ._keys import validate_namespace
from ._observe import check_observer

__all__ = ["CacheOptions", "Ttl", "TtlFunction"]

TtlFunction: TypeAlias = Callable[[Any], "float | None"]
"""Decides a loaded value's TTL from the value itself; ``None`` (or <= 0): do not store it."""
Ttl: TypeAlias = "float | TtlFunction"

_DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class CacheOptions:
    namespace: str
    """Prefix of every key (1-64 of letters, digits, '_.-'); caches of one namespace
    share entries, invalidations and stamps."""
    ttl: float | None = None
    """Default TTL (seconds) for values that are not given one per call or per decorator."""
    jitter: float = 0.1
    """Each TTL is spread by +-jitter (a fraction): keys written together expire apart."""
    negative_ttl: float = 30.0
    """TTL of the entry cached when a loader returns ``None`` (capped at the value's own TTL)."""
    cache_none: bool = True
    """Cache a loader's ``None`` as a negative entry (for ``negative_ttl``)."""
    stale_ttl: float = 0.0
    """How long past its TTL an entry stays in Redis to be served stale while one caller
    refreshes it (stale-while-revalidate). 0 turns it off."""
    xfetch_beta: float = 1.0
    """XFetch early-refresh eagerness (0 turns it off; 1 is the paper's recommendation)."""
    leases: bool = True
    """Guard fills with lease tokens: one load per key across processes, no stale sets."""
    lease_ttl: float = 5.0
    """Longest life of a fill lease while its holder, alive, keeps renewing it. Make it
    longer than your slowest load, or that load's fill is refused."""
    lease_heartbeat: float = 0.5
    """Life of a lease its holder does not renew (renewals come every third of it while
    the load runs): a lease left by a call that gave up (timed out on a hung Redis,
    cancelled, or its process died) blocks other callers at most this long."""
    lease_wait: float | None = None
    """How long a miss waits for another process's fill before loading itself
    (default: lease_ttl)."""
    max_stale: float = 10.0
    """While Redis is unreachable (or refilling after a cold restart), serve in-process
    copies up to this many seconds past their freshness instead of loading. 0: never."""
    source_concurrency: int = 16
    """Loads from the source running at once in this process (the bulkhead)."""
    source_queue_timeout: float = 1.0
    """How long a load waits for a bulkhead slot before the caller gets a stale value or
    SourceOverloaded."""
    breaker_failures: int = 5
    """Failing time slots (one ``redis_timeout`` each, calls failed and none answered) in
    the last 20 slots that open the breaker, if they outnumber the slots with replies.
    Calls that time out together count as one slot, not one failure each."""
    breaker_cooldown: float = 1.0
    """Seconds (jittered to 0.5x-1x, never growing) between background probes of an open
    breaker: once Redis answers, reads use it again within this plus one probe."""
    restart_warmup: float = 30.0
    """After Redis comes back empty, serve stale L1 copies (within max_stale) of keys
    that are missing in Redis while one caller per key refills them."""
    read_from_replicas: bool = False
    """On Redis Cluster, read from replicas too (more read throughput; adds the replication
    lag, milliseconds, to the staleness of reads, see docs/cluster.md)."""
    monitor_every: int = 0
    """Re-check 1 in N invalidations after ``monitor_delay`` (0: off); see stats()."""
    monitor_delay: float = 1.0
    """How long after an invalidation the monitor re-reads the key."""
    registry_every: int = 16
    """Record 1 in N fills in a bounded per-namespace registry that ``veneer verify``
    samples (0: off)."""
    max_ttl: float = _DAY
    """No entry lives longer than this; tag stamps are kept for longer, so they cannot recycle."""
    l1_size: int = 10_000
    """Entries kept in process; 0 turns the in-process tier off."""
    l1_max_bytes: int = 64 * 1024 * 1024
    """Bytes (encoded size) kept in process; the L1 evicts past it."""
    l1_ttl: float = 5.0
    """How long a process trusts its L1 copy; bounds staleness after a missed broadcast."""
    redis_timeout: float = 0.1
    """Socket read/write deadline of every Redis call, seconds."""
    connect_timeout: float = 0.2
    """Deadline to open a connection to Redis, seconds."""
    max_connections: int = 32
    """Connections veneer keeps to each Redis endpoint (each node of a cluster) for its own
    commands. Callers beyond it queue in process for at most ``pool_timeout``."""
    pool_timeout: float = 1.0
    """How long a call waits for a free connection when all ``max_connections`` are busy;
    then it is answered as if Redis were unreachable (L1 within max_stale, or the source),
    counted as ``pool_timeouts``. A full pool never trips the circuit breaker."""
    max_value_bytes: int = 1024 * 1024
    """Largest entry, counted uncompressed, written or read: a bigger loaded value is
    returned but not cached, ``set`` raises ValueTooLarge, and a bigger (or inflating)
    entry in Redis is a miss."""
    compress_above: int = 4096
    """Payloads above this many bytes are compressed (when that makes them smaller)."""
    compression: str = "zstd"
    """``'zstd'``, ``'lz4'`` (the ``lz4`` extra) or ``'none'``."""
    codec: str | Codec = "msgpack"
    """``'msgpack'``, ``'json'``, ``'pickle'`` (trusted writers only) or a Codec object;
    see docs/types.md for what each round-trips."""
    stamp_ttl: float = 1.0
    """How long a process trusts its copy of a tag or namespace version stamp, seconds."""
    broadcast: bool = True
    """Carry invalidations to every process's L1 over Redis pub/sub."""
    sharded_pubsub: bool | None = None
    """On Redis Cluster, carry invalidations by sharded pub/sub (SPUBLISH/SSUBSCRIBE,
    Redis 7+), which stays in one shard, instead of PUBLISH, which crosses the cluster
    bus to every node. None: sharded when every primary supports it. Every process of
    a namespace must use the same mode (see docs/cluster.md)."""
    error_log_interval: float = 10.0
    """At most one warning per this many seconds for repeated Redis errors (they are counted)."""
    observer: Any = None
    """Metrics and tracing (``veneer.metrics``): a ``PrometheusMetrics``, ``OtelMetrics`` or
    ``OtelTracing``, or a list of them, told about this cache once, when it is built. None
    (the default): nothing is timed or traced beyond ``stats()``. See docs/metrics.md."""

    def __post_init__(self) -> None:
        try:
            validate_namespace(self.namespace)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        if self.ttl is not None:
            _check_positive("ttl", self.ttl)
            if self.ttl > self.max_ttl:
                raise ConfigurationError(
                    f"ttl={self.ttl} is above max_ttl={self.max_ttl}; lower ttl or raise max_ttl"
                )
        _check_positive("negative_ttl", self.negative_ttl)
        _check_positive("lease_ttl", self.lease_ttl)
        _check_positive("lease_heartbeat", self.lease_heartbeat)
        _check_positive("monitor_delay", self.monitor_delay)
        if self.lease_wait is not None:
            _check_positive("lease_wait", self.lease_wait)
        if not (isinstance(self.stale_ttl, int | float) and 0 <= self.stale_ttl <= self.max_ttl):
            raise ConfigurationError(
                f"stale_ttl={self.stale_ttl!r} must be between 0 (off) and max_ttl={self.max_ttl}"
            )
        if not (isinstance(self.xfetch_beta, int | float) and 0 <= self.xfetch_beta <= 10):
            raise ConfigurationError(
                f"xfetch_beta={self.xfetch_beta!r}: use 0 (off) to 10; 1 is the usual choice"
            )
        _check_positive("source_queue_timeout", self.source_queue_timeout)
        _check_positive("breaker_cooldown", self.breaker_cooldown)
        _check_positive("restart_warmup", self.restart_warmup)
        if not (isinstance(self.max_stale, int | float) and 0 <= self.max_stale <= self.max_ttl):
            raise ConfigurationError(
                f"max_stale={self.max_stale!r} must be between 0 (never serve stale) and max_ttl"
            )
        _check_positive("pool_timeout", self.pool_timeout)
        for name in ("source_concurrency", "breaker_failures", "max_connections"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{name}={value!r} must be an integer >= 1")
        for name in ("monitor_every", "registry_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigurationError(f"{name}={value!r} must be an integer >= 0 (0: off)")
        _check_positive("max_ttl", self.max_ttl)
        _check_positive("redis_timeout", self.redis_timeout)
        _check_positive("connect_timeout", self.connect_timeout)
        _check_positive("stamp_ttl", self.stamp_ttl)
        _check_positive("error_log_interval", self.error_log_interval)
        if not 0.0 <= self.jitter < 0.5:
            raise ConfigurationError(
                f"jitter={self.jitter} must be a fraction in [0, 0.5): 0.1 spreads TTLs by +-10%"
            )
        if self.l1_size < 0 or self.l1_max_bytes < 0:
            raise ConfigurationError("l1_size and l1_max_bytes must be >= 0 (0 turns L1 off)")
        if self.l1_size:
            _check_positive("l1_ttl", self.l1_ttl)
        if self.max_value_bytes < 1:
            raise ConfigurationError(f"max_value_bytes={self.max_value_bytes} must be >= 1")
        if self.compress_above < 0:
            raise ConfigurationError(f"compress_above={self.compress_above} must be >= 0")
        if self.observer is not None:
            check_observer(self.observer)
        if self.compression not in ("zstd", "lz4", "none"):
            raise ConfigurationError(
                f"compression={self.compression!r}: use 'zstd' (default), 'lz4' or 'none'"
            )

    @classmethod
    def build(cls, namespace: str, options: dict[str, Any]) -> CacheOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigurationError(
                f"unknown option(s) {', '.join(unknown)}; known options: "
                f"{', '.join(sorted(known - {'namespace'}))}"
            )
        return cls(namespace=namespace, **options)

    @property
    def lease_heartbeat_seconds(self) -> float:
        return min(self.lease_heartbeat, self.lease_ttl)

    @property
    def lease_wait_seconds(self) -> float:
        return self.lease_ttl if self.lease_wait is None else self.lease_wait

    def resolve_ttl(self, ttl: float | None) -> float:
        """The TTL for one write: the call's, else the cache default; there is no 'forever'."""
        if ttl is None:
            ttl = self.ttl
            if ttl is None:
                raise ConfigurationError(
                    "no TTL: pass ttl= to this call or the decorator, or set a default with "
                    "Cache.from_url(..., ttl=SECONDS); veneer never writes a value without one"
                )
            return ttl
        _check_positive("ttl", ttl)
        if ttl > self.max_ttl:
            raise ConfigurationError(
                f"ttl={ttl} is above max_ttl={self.max_ttl}; lower it or raise max_ttl"
            )
        return float(ttl)

    def ttl_for(self, ttl: Ttl, value: Any) -> float | None:
        """The TTL of one loaded value: ``ttl``, or what ``ttl(value)`` decides (capped at
        ``max_ttl``); ``None`` means "return the value to the caller, store nothing"."""
        if not callable(ttl):
            return ttl
        chosen = ttl(value)
        if chosen is None or chosen <= 0:
            return None
        return min(float(chosen), self.max_ttl)


def _check_positive(name: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigurationError(f"{name}={value!r} must be a positive number of seconds")
