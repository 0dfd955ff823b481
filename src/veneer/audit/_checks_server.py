"""Checks on each node's server facts.

eviction-policy, memory, cpu, persistence, replication, clients, logical-dbs,
security and version. Thresholds come from MEMORY DOCTOR and RedisInsight's
database analysis where those tools have one.
"""

from __future__ import annotations

from collections.abc import Iterator

from ._context import AuditData
from ._facts import (
    eviction,
    is_loopback_bind,
    managed_service,
    output_buffer_limits,
    persistence,
    version_tuple,
)
from ._model import Finding, Severity
from ._snapshot import NodeSnapshot

__all__ = [
    "clients",
    "cpu",
    "eviction_policy",
    "logical_dbs",
    "memory",
    "persistence_check",
    "replication",
    "security",
    "version",
]

MB = 1024 * 1024
CPU_THRESHOLD = 0.9
# Volatile policies only evict keys with a TTL; below this share they act as noeviction.
VOLATILE_MIN_EXPIRES = 0.5


def _finding(
    snap: NodeSnapshot,
    id_: str,
    severity: Severity,
    summary: str,
    evidence: dict[str, object],
    advice: str,
) -> Finding:
    return Finding(
        id=id_,
        severity=severity,
        summary=summary,
        nodes=[snap.address],
        evidence=evidence,
        advice=advice,
    )


def eviction_policy(data: AuditData) -> Iterator[Finding]:
    for snap in data.visible():
        ev = eviction(snap)
        ks = snap.keyspace()
        keys = sum(d.get("keys", 0) for d in ks.values())
        expires = sum(d.get("expires", 0) for d in ks.values())
        problems: list[str] = []
        severity = Severity.INFO
        if not ev.limited:
            problems.append("maxmemory is 0: Redis grows until the OS or container kills it")
            severity = Severity.MEDIUM
        if ev.policy == "noeviction":
            problems.append("noeviction: writes fail with OOM errors once memory is full")
            severity = Severity.MEDIUM
        elif ev.policy.startswith("volatile-") and keys and expires / keys < VOLATILE_MIN_EXPIRES:
            problems.append(
                f"{ev.policy} with only {expires / keys:.0%} of keys expiring: "
                "it can evict almost nothing and behaves like noeviction"
            )
            severity = Severity.MEDIUM
        usage = ev.usage
        if usage is not None and usage >= 0.75:
            problems.append(f"memory is {usage:.0%} of maxmemory")
            cannot_evict = ev.policy == "noeviction" or ev.policy.startswith("volatile-")
            if usage >= 0.9 and cannot_evict:
                severity = Severity.HIGH
            elif severity.rank < Severity.MEDIUM.rank:
                severity = Severity.LOW if ev.policy.startswith("allkeys-") else Severity.MEDIUM
        if not problems:
            continue
        yield _finding(
            snap,
            "eviction-policy",
            severity,
            "; ".join(problems),
            {
                "maxmemory": ev.maxmemory,
                "maxmemory_policy": ev.policy,
                "used_memory": ev.used,
                "usage": None if usage is None else round(usage, 4),
                "keys": keys,
                "expires": expires,
            },
            "For a cache: set maxmemory below the host's memory and maxmemory-policy "
            "allkeys-lfu (or allkeys-lru), with a TTL on every key. Keep data that must not "
            "be evicted out of the cache instance.",
        )


def memory(data: AuditData) -> Iterator[Finding]:
    for snap in data.visible():
        used = snap.num("used_memory", 0) or 0
        scripts = int(snap.num("number_of_cached_scripts", 0) or 0)
        if scripts > 10:
            yield _finding(
                snap,
                "memory",
                Severity.MEDIUM if scripts > 1000 else Severity.LOW,
                f"{scripts:,} Lua scripts cached",
                {
                    "number_of_cached_scripts": scripts,
                    "used_memory_scripts": snap.num("used_memory_scripts"),
                },
                "Scripts are cached forever and never evicted: many of them means scripts "
                "are built per call (values inlined). Pass values as KEYS/ARGV and load a "
                "fixed set of scripts once (EVALSHA) or use FUNCTION LOAD.",
            )
        if used < 5 * MB:
            continue  # MEMORY DOCTOR also stays silent on an almost empty instance
        frag = snap.num("mem_fragmentation_ratio")
        frag_bytes = snap.num("mem_fragmentation_bytes", 0) or 0
        if frag is not None and frag > 1.4 and frag_bytes > 10 * MB:
            yield _finding(
                snap,
                "memory",
                Severity.MEDIUM,
                f"fragmentation {frag:.2f} ({frag_bytes / MB:.0f} MB of RSS not used by data)",
                {
                    "mem_fragmentation_ratio": frag,
                    "mem_fragmentation_bytes": frag_bytes,
                    "allocator_frag_ratio": snap.num("allocator_frag_ratio"),
                    "mem_allocator": snap.text("mem_allocator"),
                },
                "Enable activedefrag (jemalloc builds) or restart the node after a failover; "
                "fragmentation follows bulk deletes and values of very mixed sizes.",
            )
        peak = snap.num("used_memory_peak", 0) or 0
        if used and peak / used > 1.5:
            yield _finding(
                snap,
                "memory",
                Severity.LOW,
                f"peak memory {peak / MB:.0f} MB is {peak / used:.1f}x today's {used / MB:.0f} MB",
                {"used_memory_peak": peak, "used_memory": used},
                "RSS may stay at the peak; a spike this big usually comes from a bulk load or "
                "big replies. Size maxmemory for the peak, or find what caused it.",
            )
        normal = snap.num("mem_clients_normal", 0) or 0
        conns = snap.num("connected_clients", 0) or 0
        if conns and normal / conns > 200 * 1024:
            yield _finding(
                snap,
                "memory",
                Severity.MEDIUM,
                f"clients use {normal / conns / 1024:.0f} KB each on average",
                {"mem_clients_normal": normal, "connected_clients": conns},
                "Big client buffers come from big replies (full reads of big keys) or "
                "slow readers; see big-key and clients.",
            )
        replica_mem = snap.num("mem_clients_slaves", 0) or 0
        replicas = snap.num("connected_slaves", 0) or 0
        if replicas and replica_mem / replicas > 10 * MB:
            yield _finding(
                snap,
                "memory",
                Severity.MEDIUM,
                f"replica output buffers hold {replica_mem / MB:.0f} MB",
                {"mem_clients_slaves": replica_mem, "connected_slaves": replicas},
                "Replicas are not keeping up with the write rate; check the network and "
                "the replica's load, and client-output-buffer-limit replica.",
            )


def cpu(data: AuditData) -> Iterator[Finding]:
    for snap in data.visible():
        if snap.cpu is None or snap.cpu.main_thread_share < CPU_THRESHOLD:
            continue
        share = snap.cpu.main_thread_share
        yield _finding(
            snap,
            "cpu",
            Severity.HIGH,
            f"the command thread used {share:.0%} of a core over {snap.cpu.window_s:.1f} s",
            {
                "main_thread_share": share,
                "process_share": snap.cpu.process_share,
                "window_s": snap.cpu.window_s,
                "per_thread": snap.cpu.per_thread,
                "threshold": CPU_THRESHOLD,
            },
            "Redis runs commands on one thread: near 100% every client waits. Serve hot "
            "reads from an in-process tier, batch with MGET/pipelines, remove O(N) "
            "commands, or shard (cluster).",
        )


def persistence_check(data: AuditData) -> Iterator[Finding]:
    for snap in data.visible():
        p = persistence(snap)
        evidence: dict[str, object] = {
            "mode": p.describe(),
            "source": p.source,
            "rdb": p.rdb,
            "aof": p.aof,
            "changes_since_last_save": p.changes_since_save,
            "last_save_age_s": None if p.last_save_age_s is None else round(p.last_save_age_s),
            "failing": list(p.failing),
        }
        if p.failing:
            yield _finding(
                snap,
                "persistence",
                Severity.HIGH,
                "; ".join(p.failing),
                evidence,
                "Check the server log (disk full, fork failing for lack of memory, "
                "permissions). Until fixed a restart loses every write since the last save.",
            )
        elif p.enabled is False:
            yield _finding(
                snap,
                "persistence",
                Severity.INFO,
                "no persistence (no RDB save points, AOF off)",
                evidence,
                "Right for a pure cache; see source-of-truth-risk for data that would be lost.",
            )
        elif p.enabled is None:
            service = managed_service(snap)
            on = f" on {service}" if service else ""
            yield _finding(
                snap,
                "persistence",
                Severity.INFO,
                f"RDB schedule not visible (CONFIG hidden{on}, no snapshot seen in INFO); "
                "AOF is off",
                evidence,
                "Check the provider's backup/persistence settings.",
            )


def replication(data: AuditData) -> Iterator[Finding]:
    for snap in data.visible():
        repl = {
            "role": snap.role,
            "connected_slaves": int(snap.num("connected_slaves", 0) or 0),
        }
        if snap.role == "replica":
            link = snap.text("master_link_status")
            if link and link != "up":
                yield _finding(
                    snap,
                    "replication",
                    Severity.HIGH,
                    f"replica link to its primary is {link}",
                    {**repl, "master_link_status": link, "master_host": snap.text("master_host")},
                    "The replica serves stale data and cannot take over; check the primary, "
                    "the network and the replica's log.",
                )
            continue
        replicas = [v for k, v in snap.info.items() if k.startswith("slave") and k[5:].isdigit()]
        for r in replicas:
            if not isinstance(r, dict):
                continue
            state, lag = str(r.get("state", "")), int(r.get("lag", 0) or 0)
            if state != "online" or lag > 10:
                yield _finding(
                    snap,
                    "replication",
                    Severity.MEDIUM,
                    f"replica {r.get('ip')}:{r.get('port')} is {state}, lag {lag} s",
                    {**repl, "replica": {k: r.get(k) for k in ("ip", "port", "state", "lag")}},
                    "A lagging replica loses those seconds of writes on failover and may "
                    "be resyncing in a loop; check repl-backlog-size and the replica's load.",
                )
        if not replicas:
            yield _finding(
                snap,
                "replication",
                Severity.INFO,
                "no replica",
                repl,
                "Fine for a cache that can be rebuilt from its source; anything only here "
                "is lost with this node (see source-of-truth-risk).",
            )


def clients(data: AuditData) -> Iterator[Finding]:
    for snap in data.visible():
        conns = int(snap.num("connected_clients", 0) or 0)
        maxclients = int(snap.num("maxclients", 0) or 0) or int(snap.conf("maxclients") or 0)
        rejected = int(snap.num("rejected_connections", 0) or 0)
        out_max = int(snap.num("client_recent_max_output_buffer", 0) or 0)
        limits = output_buffer_limits(snap)
        evidence: dict[str, object] = {
            "connected_clients": conns,
            "maxclients": maxclients,
            "blocked_clients": int(snap.num("blocked_clients", 0) or 0),
            "rejected_connections": rejected,
            "client_recent_max_output_buffer": out_max,
            "output_buffer_hard_limits": limits,
        }
        if maxclients and conns / maxclients >= 0.5:
            yield _finding(
                snap,
                "clients",
                Severity.HIGH if conns / maxclients >= 0.8 else Severity.MEDIUM,
                f"{conns:,} connections of maxclients {maxclients:,}",
                evidence,
                "Connections leak or pools are oversized; cap pool sizes per process, "
                "and raise maxclients only with the ulimit to match.",
            )
        if rejected:
            yield _finding(
                snap,
                "clients",
                Severity.MEDIUM,
                f"{rejected:,} connections were rejected (maxclients reached)",
                evidence,
                "Clients were refused since the last restart: size pools below maxclients.",
            )
        if out_max >= 16 * MB:
            yield _finding(
                snap,
                "clients",
                Severity.MEDIUM,
                f"a client recently had {out_max / MB:.0f} MB of replies pending",
                evidence,
                "Big replies (full reads of big keys) or a slow pub/sub consumer; a client "
                "over its hard output buffer limit is disconnected.",
            )


def logical_dbs(data: AuditData) -> Iterator[Finding]:
    for snap in data.visible():
        ks = snap.keyspace()
        used = [db for db, d in ks.items() if d.get("keys", 0) > 0]
        if len(used) <= 1:
            continue
        yield _finding(
            snap,
            "logical-dbs",
            Severity.LOW,
            f"{len(used)} logical databases hold keys: " + ", ".join(f"db{d}" for d in used),
            {"keyspace": {f"db{db}": ks[db] for db in used}},
            "Numbered databases share one thread, one memory limit and one FLUSHALL, and "
            "Redis Cluster only has db 0: separate by key prefix, or by instance.",
        )


def _nopass_users(acl: list[str]) -> list[str]:
    users = []
    for line in acl:
        words = line.split()
        if len(words) >= 2 and words[0] == "user" and "nopass" in words and "on" in words:
            users.append(words[1])
    return users


def security(data: AuditData) -> Iterator[Finding]:
    target = data.target
    for snap in data.visible():
        loopback = is_loopback_bind(snap)
        if loopback is None:
            loopback = target.loopback_only
        exposure = "loopback/unix only" if loopback else "reachable over the network"
        if snap.acl is not None:
            nopass = _nopass_users(snap.acl)
        else:
            # Without ACL LIST, a connection that needed no password proves the same thing.
            nopass = ["default"] if target.password is None else []
        if nopass:
            protected = snap.conf("protected-mode")
            if loopback:
                severity = Severity.LOW
            elif protected == "no":
                severity = Severity.CRITICAL
            else:
                severity = Severity.HIGH
            yield _finding(
                snap,
                "security",
                severity,
                f"user(s) without password: {', '.join(nopass)} ({exposure})",
                {
                    "nopass_users": nopass,
                    "bind": snap.conf("bind"),
                    "protected_mode": protected,
                    "acl_visible": snap.acl is not None,
                },
                "Anyone who can connect can read, change or FLUSHALL this data: set a "
                "password (ACL SETUSER default on >secret, or requirepass) and bind to "
                "private interfaces only.",
            )
        tls_port = snap.conf("tls-port")
        if not target.tls and not target.unix and not target.loopback_only:
            yield _finding(
                snap,
                "security",
                Severity.MEDIUM,
                "the audit connected without TLS over the network"
                + (" although a TLS port is open" if tls_port not in (None, "0") else ""),
                {"tls_port": tls_port, "scheme": target.masked.split("://")[0]},
                "Passwords and data cross the network in clear text: enable TLS (tls-port) "
                "and use rediss:// in every client.",
            )


def version(data: AuditData) -> Iterator[Finding]:
    seen: dict[str, list[str]] = {}
    for snap in data.visible():
        seen.setdefault(snap.version, []).append(snap.address)
        v = version_tuple(snap.version)
        valkey = bool(snap.text("valkey_version")) or snap.text("server_name") == "valkey"
        if valkey:
            continue  # Valkey forked from Redis 7.2; its own versions are all current
        if v < (6, 0, 0):
            severity, why = Severity.MEDIUM, "no ACLs, no TLS, no longer maintained"
        elif v < (7, 0, 0):
            severity, why = Severity.LOW, "end of life: no more security fixes"
        else:
            continue
        yield _finding(
            snap,
            "version",
            severity,
            f"Redis {snap.version}: {why}",
            {"version": snap.version},
            "Upgrade to a maintained release (Redis 7.2+ or Valkey).",
        )
    if len(seen) > 1:
        yield Finding(
            id="version",
            severity=Severity.LOW,
            summary="nodes run different versions: " + ", ".join(sorted(seen)),
            nodes=sorted(a for addrs in seen.values() for a in addrs),
            evidence={"versions": seen},
            advice="Finish the rolling upgrade; mixed versions behave differently on failover.",
        )
