"""Each check's severity rules, on synthetic server facts (the checks are pure functions)."""

from __future__ import annotations

from typing import Any

from veneer.audit._checks import CHECKS, run_checks
from veneer.audit._context import AuditData
from veneer.audit._model import PrefixReport, Severity
from veneer.audit._snapshot import CpuReading, NodeSnapshot, SlowEntry
from veneer.audit._target import parse_target

NODE = "10.0.0.5:6379"
BASE_INFO: dict[str, Any] = {
    "redis_version": "7.2.4",
    "role": "master",
    "connected_slaves": 1,
    "slave0": {"ip": "10.0.0.6", "port": 6379, "state": "online", "lag": 0},
    "maxmemory": 1_000_000_000,
    "maxmemory_policy": "allkeys-lfu",
    "used_memory": 100_000_000,
    "used_memory_peak": 110_000_000,
    "mem_fragmentation_ratio": 1.1,
    "mem_fragmentation_bytes": 1_000_000,
    "connected_clients": 10,
    "maxclients": 10_000,
    "mem_clients_normal": 200_000,
    "aof_enabled": 1,
    "rdb_last_bgsave_status": "ok",
    "number_of_cached_scripts": 2,
    "db0": {"keys": 1000, "expires": 1000, "avg_ttl": 1000},
}
BASE_CONFIG = {
    "save": "3600 1",
    "bind": "10.0.0.5",
    "protected-mode": "yes",
    "slowlog-max-len": "128",
    "client-output-buffer-limit": (
        "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"
    ),
    "tls-port": "6380",
}
ACL_OK = ["user default on #abc ~* &* +@all"]


def snapshot(
    info: dict[str, Any] | None = None, config: dict[str, str] | None = None, **kw: Any
) -> NodeSnapshot:
    snap = NodeSnapshot(
        address=NODE,
        info={**BASE_INFO, **(info or {})},
        config={**BASE_CONFIG, **(config or {})},
        acl=kw.pop("acl", ACL_OK),
        slowlog=kw.pop("slowlog", []),
        slowlog_len=kw.pop("slowlog_len", 0),
        **kw,
    )
    return snap


def data(
    *snaps: NodeSnapshot,
    url: str = "rediss://u:pw@10.0.0.5:6380",
    prefixes: list[PrefixReport] | None = None,
) -> AuditData:
    return AuditData(target=parse_target(url), primaries=list(snaps), prefixes=prefixes or [])


def found(d: AuditData, check: str) -> list[tuple[Severity, str]]:
    return [(f.severity, f.summary) for f in CHECKS[check](d)]


def test_a_healthy_production_node_has_no_findings() -> None:
    """Memory limit, LFU, persistence, a replica, TLS and passwords: nothing to say."""
    assert [f for f in run_checks(data(snapshot())) if f.severity is not Severity.INFO] == []


def test_eviction_policy_rules() -> None:
    """maxmemory 0, noeviction and volatile-* with few TTLs are medium; full and stuck is high."""
    assert found(data(snapshot({"maxmemory": 0})), "eviction-policy")[0][0] is Severity.MEDIUM
    few_ttl = {"maxmemory_policy": "volatile-lru", "db0": {"keys": 1000, "expires": 100}}
    assert "behaves like noeviction" in found(data(snapshot(few_ttl)), "eviction-policy")[0][1]
    full = {"maxmemory_policy": "noeviction", "used_memory": 950_000_000}
    assert found(data(snapshot(full)), "eviction-policy")[0][0] is Severity.HIGH
    lru_full = {"used_memory": 950_000_000}
    assert found(data(snapshot(lru_full)), "eviction-policy")[0][0] is Severity.LOW


def test_cpu_threshold_is_ninety_percent() -> None:
    """The command thread at 90% of a core or more is high; below, nothing."""
    busy = snapshot(
        cpu=CpuReading(window_s=1.0, main_thread_share=0.93, process_share=1.1, per_thread=True)
    )
    calm = snapshot(
        cpu=CpuReading(window_s=1.0, main_thread_share=0.5, process_share=0.6, per_thread=True)
    )
    assert found(data(busy), "cpu")[0][0] is Severity.HIGH
    assert found(data(calm), "cpu") == []


def test_memory_doctor_conditions() -> None:
    """Fragmentation, peak, client buffers and cached scripts follow MEMORY DOCTOR's limits."""
    frag = snapshot({"mem_fragmentation_ratio": 1.8, "mem_fragmentation_bytes": 80_000_000})
    assert "fragmentation" in found(data(frag), "memory")[0][1]
    peak = snapshot({"used_memory_peak": 400_000_000})
    assert "peak memory" in found(data(peak), "memory")[0][1]
    scripts = snapshot({"number_of_cached_scripts": 5000})
    assert found(data(scripts), "memory")[0][0] is Severity.MEDIUM
    small = snapshot(
        {
            "used_memory": 1_000_000,
            "mem_fragmentation_ratio": 9.0,
            "mem_fragmentation_bytes": 20_000_000,
        }
    )
    assert found(data(small), "memory") == []  # almost empty: the doctor stays silent too


def test_persistence_and_replication_failures_are_high() -> None:
    """A failing save and a broken replica link are high; a lagging replica medium."""
    failing = snapshot({"rdb_last_bgsave_status": "err"})
    assert found(data(failing), "persistence")[0][0] is Severity.HIGH
    broken = snapshot({"role": "slave", "master_link_status": "down"})
    assert found(data(broken), "replication")[0][0] is Severity.HIGH
    lagging = snapshot({"slave0": {"ip": "r", "port": 1, "state": "online", "lag": 30}})
    assert found(data(lagging), "replication")[0][0] is Severity.MEDIUM


def test_clients_near_limits() -> None:
    """Connections near maxclients, rejected connections and big output buffers are flagged."""
    near = snapshot({"connected_clients": 9000})
    assert found(data(near), "clients")[0][0] is Severity.HIGH
    rejected = snapshot({"rejected_connections": 12})
    assert "rejected" in found(data(rejected), "clients")[0][1]
    buffers = snapshot({"client_recent_max_output_buffer": 40 * 1024 * 1024})
    assert "replies pending" in found(data(buffers), "clients")[0][1]


def test_security_exposure_decides_severity() -> None:
    """nopass: loopback low, network high, no protected mode critical; no TLS is medium."""
    nopass = ["user default on nopass ~* &* +@all"]
    local = snapshot(config={"bind": "127.0.0.1 -::1"}, acl=nopass)
    assert found(data(local, url="redis://127.0.0.1"), "security")[0][0] is Severity.LOW
    exposed = snapshot(acl=nopass)
    assert found(data(exposed), "security")[0][0] is Severity.HIGH
    open_ = snapshot(config={"protected-mode": "no"}, acl=nopass)
    assert found(data(open_), "security")[0][0] is Severity.CRITICAL
    plain = found(data(snapshot(), url="redis://u:pw@10.0.0.5:6379"), "security")
    assert plain == [
        (
            Severity.MEDIUM,
            "the audit connected without TLS over the network although a TLS port is open",
        )
    ]
    # Without ACL LIST, a connection without password shows the default user has none.
    hidden = snapshot(acl=None)
    assert found(data(hidden, url="redis://10.0.0.5"), "security")[0][0] is Severity.HIGH


def test_version_rules() -> None:
    """Before 6.0 is medium, 6.x low, 7.x fine; mixed versions in one cluster are low."""
    assert found(data(snapshot({"redis_version": "5.0.14"})), "version")[0][0] is Severity.MEDIUM
    assert found(data(snapshot({"redis_version": "6.2.14"})), "version")[0][0] is Severity.LOW
    other = snapshot({"redis_version": "7.0.15"})
    other.address = "10.0.0.7:6379"
    assert found(data(snapshot(), other), "version") == [
        (Severity.LOW, "nodes run different versions: 7.0.15, 7.2.4")
    ]


def test_slowlog_overflow_and_blocking_groups() -> None:
    """A full slow log's lost ids are reported; KEYS and a 2 s script high, a full read medium."""
    entries = [
        SlowEntry(id=500, started_at=0, duration_us=5_000, args=(b"KEYS", b"*")),
        SlowEntry(id=501, started_at=0, duration_us=2_000_000, args=(b"EVAL", b"...", b"0")),
        SlowEntry(id=502, started_at=0, duration_us=30_000, args=(b"SMEMBERS", b"tags:7")),
    ]
    d = data(snapshot({}, {"slowlog-max-len": "3"}, slowlog=entries, slowlog_len=3))
    results = {s: sev for sev, s in found(d, "slowlog-blocking")}
    assert results["the slow log lost 500 entries (it is full: it overflowed)"] is Severity.LOW
    by_command = {f.command: f.severity for f in CHECKS["slowlog-blocking"](d) if f.command}
    assert by_command == {"KEYS": Severity.HIGH, "EVAL": Severity.HIGH, "SMEMBERS": Severity.MEDIUM}


def test_blocking_commands_from_commandstats() -> None:
    """KEYS is flagged at any cost; O(N) reads only when their mean cost is high."""
    stats = {
        "cmdstat_keys": {"calls": 3, "usec": 300, "usec_per_call": 100.0},
        "cmdstat_hgetall": {"calls": 1000, "usec": 5_000_000, "usec_per_call": 5000.0},
        "cmdstat_smembers": {"calls": 1000, "usec": 10_000, "usec_per_call": 10.0},
        "cmdstat_get": {"calls": 10**6, "usec": 10**6, "usec_per_call": 1.0},
    }
    got = {f.command: f.severity for f in CHECKS["blocking-commands"](data(snapshot(stats)))}
    assert got == {"KEYS": Severity.HIGH, "HGETALL": Severity.MEDIUM}


def _prefix(pattern: str, share: float) -> PrefixReport:
    return PrefixReport(
        pattern=pattern, keys_sampled=100, keys_estimated=100, keys_margin95=0,
        no_ttl_keys_share=share, no_ttl_keys_ci95=(share, share), nodes=[NODE],
    )  # fmt: skip


def test_no_ttl_and_source_of_truth_rules() -> None:
    """A mixed prefix is a TTL bug (no-ttl); a mostly no-TTL prefix is a store at risk, reported
    once (source-of-truth-risk, not no-ttl too)."""
    d = data(
        snapshot(),
        prefixes=[_prefix("mixed:*", 0.2), _prefix("store:*", 1.0), _prefix("few:*", 0.001)],
    )
    no_ttl = {f.prefix: f.severity for f in CHECKS["no-ttl"](d)}
    assert no_ttl == {"mixed:*": Severity.MEDIUM, "few:*": Severity.LOW}
    risk = list(CHECKS["source-of-truth-risk"](d))
    assert [f.prefix for f in risk] == ["store:*"]
    # allkeys-lfu may evict the only copy: high even with AOF and a replica.
    assert risk[0].severity is Severity.HIGH
    assert any("eviction may delete it" in r for r in risk[0].evidence["risks"])
    safe = data(snapshot({"maxmemory_policy": "noeviction"}), prefixes=[_prefix("store:*", 1.0)])
    assert [f.severity for f in CHECKS["source-of-truth-risk"](safe)] == [Severity.MEDIUM]


def test_findings_are_sorted_worst_first() -> None:
    """run_checks orders by severity, then by check order."""
    d = data(
        snapshot({"maxmemory": 0, "rdb_last_bgsave_status": "err"}), prefixes=[_prefix("s:*", 1.0)]
    )
    ranks = [f.severity.rank for f in run_checks(d)]
    assert ranks == sorted(ranks, reverse=True)


def test_db_without_sampled_keys_falls_back_to_keyspace() -> None:
    """When no key of a db was sampled (interrupted), INFO keyspace still shows its no-TTL keys."""
    snap = snapshot({"db3": {"keys": 500, "expires": 100, "avg_ttl": 0}})
    found_ = [f for f in CHECKS["no-ttl"](data(snap)) if f.db == 3]
    assert [(f.prefix, f.severity, f.evidence["keys"]) for f in found_] == [
        ("*", Severity.MEDIUM, 500)
    ]
