"""Checks on what clients run: slowlog-blocking (slow log) and blocking-commands (commandstats)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ._context import AuditData
from ._model import Finding, Severity
from ._slowlog import digest, gaps
from ._snapshot import SlowEntry

__all__ = ["blocking_commands", "slowlog_blocking"]

# A script that holds the only command thread this long stalls every client.
SCRIPT_HIGH_US = 1_000_000
# Unflagged commands become a finding when they are this frequent or this slow.
OTHER_COUNT = 10
OTHER_MAX_US = 100_000

_ADVICE = {
    "keyspace-walk": (
        "KEYS and FLUSHALL/FLUSHDB walk the whole keyspace on the command thread. Use "
        "SCAN with COUNT, FLUSHALL ASYNC, and in application code a set/tag index "
        "instead of KEYS (veneer's invalidate_tag)."
    ),
    "full-read": (
        "A full read of a big collection blocks the server and produces a huge reply: "
        "page with HSCAN/SSCAN/ZSCAN or LRANGE windows, or split the key."
    ),
    "script": (
        "Lua and functions run atomically on the command thread: keep them O(1) per "
        "call, never loop over data, and move heavy work to the application."
    ),
    "other": (
        "Frequent slow commands point at big keys or a saturated server; see big-key and cpu."
    ),
}


def slowlog_blocking(data: AuditData) -> Iterator[Finding]:
    entries: list[tuple[str, SlowEntry]] = []
    for snap in data.visible():
        if snap.slowlog is None:
            continue
        entries.extend((snap.address, e) for e in snap.slowlog)
        max_len = snap.conf("slowlog-max-len")
        g = gaps(snap.slowlog, snap.slowlog_len or 0, int(max_len) if max_len else None)
        if g.lost:
            yield Finding(
                id="slowlog-blocking",
                severity=Severity.LOW,
                summary=f"the slow log lost {g.lost:,} entries"
                + (" (it is full: it overflowed)" if g.full else " (overflow or SLOWLOG RESET)"),
                nodes=[snap.address],
                evidence={
                    "lost": g.lost,
                    "oldest_id": g.oldest_id,
                    "length": snap.slowlog_len,
                    "slowlog_max_len": max_len,
                    "slowlog_log_slower_than_us": snap.conf("slowlog-log-slower-than"),
                },
                advice=(
                    "What was dropped is unknown to this audit: raise slowlog-max-len "
                    "(1024 costs little) and read the log more often."
                ),
            )
    # Full reads are flagged anyway (they are slow); naming the big key they hit tells why.
    big_names = {s.key.decode("utf-8", "backslashreplace") for s in data.ranking.big_keys()}
    for group in digest(entries):
        kind = group.kind
        severity: Severity | None
        if kind == "keyspace-walk":
            severity = Severity.HIGH
        elif kind == "script":
            severity = Severity.HIGH if group.max_us >= SCRIPT_HIGH_US else Severity.MEDIUM
        elif kind == "full-read":
            severity = Severity.MEDIUM
        elif group.count >= OTHER_COUNT or group.max_us >= OTHER_MAX_US:
            severity = Severity.LOW
        else:
            severity = None
        if severity is None:
            continue
        evidence: dict[str, object] = group.as_dict()
        if group.argument is not None:
            evidence["keys_pattern"] = group.argument
        known_big = sorted(k for k in group.keys if k in big_names)
        if known_big:
            evidence["big_keys"] = known_big
        where = f" on {group.pattern}" if group.pattern else ""
        yield Finding(
            id="slowlog-blocking",
            severity=severity,
            summary=(
                f"{group.command}{where}: {group.count} slow call(s), "
                f"max {group.max_us / 1000:.1f} ms, total {group.total_us / 1000:.1f} ms"
            ),
            command=group.command,
            prefix=group.pattern,
            nodes=sorted(group.nodes),
            evidence=evidence,
            advice=_ADVICE[kind],
        )


# Commands that are O(N) in the keyspace or block by design: any call is a finding.
ALWAYS = {
    "keys": Severity.HIGH,
    "flushall": Severity.MEDIUM,
    "flushdb": Severity.MEDIUM,
    "sort": Severity.MEDIUM,
    "sort_ro": Severity.MEDIUM,
    "save": Severity.MEDIUM,
    "debug": Severity.MEDIUM,
    "migrate": Severity.LOW,
}
# O(N) in a value: a finding when their mean cost shows they run on big values.
ON_DATA = frozenset(
    {
        "hgetall",
        "hkeys",
        "hvals",
        "smembers",
        "sunion",
        "sinter",
        "sdiff",
        "sunionstore",
        "sinterstore",
        "sdiffstore",
        "lrange",
        "zrange",
        "zrevrange",
        "zrangebyscore",
        "zrevrangebyscore",
        "zunionstore",
        "zinterstore",
        "xrange",
        "xrevrange",
        "eval",
        "evalsha",
        "eval_ro",
        "evalsha_ro",
        "fcall",
        "fcall_ro",
        "del",
    }
)
ON_DATA_MEDIUM_US = 1_000
ON_DATA_HIGH_US = 10_000


@dataclass(slots=True)
class _Stat:
    calls: int = 0
    usec: int = 0
    nodes: dict[str, dict[str, float]] = field(default_factory=dict)


def blocking_commands(data: AuditData) -> Iterator[Finding]:
    stats: dict[str, _Stat] = {}
    for snap in data.visible():
        for name, value in snap.info.items():
            if not name.startswith("cmdstat_") or not isinstance(value, dict):
                continue
            # Redis 7 reports subcommands as cmdstat_config|get: judge the parent.
            cmd = name[len("cmdstat_") :].split("|")[0]
            if cmd not in ALWAYS and cmd not in ON_DATA:
                continue
            calls, usec = int(value.get("calls", 0)), int(value.get("usec", 0))
            if not calls:
                continue
            st = stats.setdefault(cmd, _Stat())
            st.calls += calls
            st.usec += usec
            st.nodes[snap.address] = {
                "calls": calls,
                "usec": usec,
                "usec_per_call": round(usec / calls, 2),
            }
    for cmd, st in sorted(stats.items(), key=lambda kv: -kv[1].usec):
        per_call = st.usec / st.calls
        if cmd in ALWAYS:
            severity = ALWAYS[cmd]
        elif per_call >= ON_DATA_HIGH_US:
            severity = Severity.HIGH
        elif per_call >= ON_DATA_MEDIUM_US:
            severity = Severity.MEDIUM
        else:
            continue
        yield Finding(
            id="blocking-commands",
            severity=severity,
            summary=(
                f"{cmd.upper()}: {st.calls:,} call(s), {per_call / 1000:.2f} ms each, "
                f"{st.usec / 1e6:.2f} s of command thread in total"
            ),
            command=cmd.upper(),
            nodes=sorted(st.nodes),
            evidence={
                "calls": st.calls,
                "usec": st.usec,
                "usec_per_call": round(per_call, 2),
                "per_node": st.nodes,
            },
            advice=_blocking_advice(cmd),
        )


def _blocking_advice(cmd: str) -> str:
    if cmd == "keys":
        return _ADVICE["keyspace-walk"]
    if cmd.startswith("flush"):
        return (
            "Use FLUSHALL/FLUSHDB ASYNC, and never flush a Redis that holds the only copy of data."
        )
    if cmd in {"save", "debug"}:
        return "SAVE and DEBUG block the server: use BGSAVE, and disable DEBUG in production."
    if cmd.startswith(("eval", "fcall")):
        return _ADVICE["script"]
    if cmd == "del":
        return (
            "DEL of a big value frees it on the command thread: use UNLINK "
            "(or lazyfree-lazy-user-del yes)."
        )
    if cmd.startswith("sort"):
        return "SORT is O(N+M*log(M)); keep a sorted set instead of sorting on read."
    return _ADVICE["full-read"]
