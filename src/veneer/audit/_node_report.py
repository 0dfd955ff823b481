"""Turn a raw NodeSnapshot into the curated per-node section of the report."""

from __future__ import annotations

from ._facts import eviction, managed_service, persistence
from ._model import NodeReport
from ._slowlog import digest, gaps
from ._snapshot import NodeSnapshot

__all__ = ["node_report"]

_MEMORY_FIELDS = (
    "used_memory",
    "used_memory_rss",
    "used_memory_peak",
    "mem_fragmentation_ratio",
    "mem_fragmentation_bytes",
    "number_of_cached_scripts",
    "mem_clients_normal",
    "mem_clients_slaves",
)
_CLIENT_FIELDS = (
    "connected_clients",
    "maxclients",
    "blocked_clients",
    "rejected_connections",
    "client_recent_max_output_buffer",
)
TOP_COMMANDS = 10


def node_report(snap: NodeSnapshot, role: str | None = None) -> NodeReport:
    if not snap.info:
        return NodeReport(
            address=snap.address,
            role=role or "unknown",
            version="unknown",
            blind_spots=[*snap.blind_spots, *([snap.error] if snap.error else [])],
        )
    ev, pers = eviction(snap), persistence(snap)
    cmdstats = []
    for name, value in snap.info.items():
        if name.startswith("cmdstat_") and isinstance(value, dict):
            cmdstats.append(
                (
                    name[len("cmdstat_") :],
                    {
                        "calls": float(value.get("calls", 0)),
                        "usec": float(value.get("usec", 0)),
                        "usec_per_call": float(value.get("usec_per_call", 0)),
                    },
                )
            )
    cmdstats.sort(key=lambda kv: -kv[1]["usec"])
    slowlog: dict[str, object] = {}
    if snap.slowlog is not None:
        max_len = snap.conf("slowlog-max-len")
        g = gaps(snap.slowlog, snap.slowlog_len or 0, int(max_len) if max_len else None)
        slowlog = {
            "length": snap.slowlog_len,
            "read": len(snap.slowlog),
            "lost": g.lost,
            "slowlog_max_len": max_len,
            "slowlog_log_slower_than_us": snap.conf("slowlog-log-slower-than"),
            "groups": [grp.as_dict() for grp in digest((snap.address, e) for e in snap.slowlog)][
                :20
            ],
        }
    return NodeReport(
        address=snap.address,
        role=snap.role,
        version=snap.version,
        server_name="valkey" if snap.text("valkey_version") else "redis",
        managed_service=managed_service(snap),
        used_memory=int(snap.num("used_memory", 0) or 0),
        maxmemory=ev.maxmemory,
        maxmemory_policy=ev.policy,
        keyspace={f"db{db}": v for db, v in snap.keyspace().items()},
        persistence={
            "mode": pers.describe(),
            "source": pers.source,
            "failing": list(pers.failing),
            "changes_since_last_save": pers.changes_since_save,
        },
        replication={
            "role": snap.role,
            "connected_slaves": int(snap.num("connected_slaves", 0) or 0),
            "master_link_status": snap.text("master_link_status") or None,
        },
        clients={k: snap.info.get(k) for k in _CLIENT_FIELDS if k in snap.info},
        memory={k: snap.info.get(k) for k in _MEMORY_FIELDS if k in snap.info},
        cpu={}
        if snap.cpu is None
        else {
            "main_thread_share": snap.cpu.main_thread_share,
            "process_share": snap.cpu.process_share,
            "window_s": snap.cpu.window_s,
            "per_thread": snap.cpu.per_thread,
        },
        slowlog=slowlog,
        commandstats=dict(cmdstats[:TOP_COMMANDS]),
        blind_spots=list(snap.blind_spots),
    )
