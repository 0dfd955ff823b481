"""Plain recommendations tied to the doctor's numbers (pure: no I/O, unit-tested).

Each rule names the figure it read and the threshold it crossed in ``evidence``,
so a reader can disagree with the threshold, never with the arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..audit import Severity
from ._model import Recommendation, RttReport, ServerLoad, SizeThroughput

__all__ = ["RULES", "advise", "size_label"]

# Extra round trip (p50 against loopback) that places the app and Redis.
SAME_HOST_MS = 0.3  # below: same host or same rack, placement is not a limit
CROSS_ZONE_MS = 1.0  # at or above: more than one zone's network usually costs
CROSS_REGION_MS = 10.0  # at or above: another region (or a VPN, a proxy far away)
# Jitter: a p99 this many times the p50, and at least this much above it.
JITTER_FACTOR = 4.0
JITTER_MS = 1.0
# Main-thread CPU (share of one core).
CPU_SHARD = 0.8
CPU_HEADROOM = 0.5
# Bandwidth: a payload whose round trip is this many times the empty one's, and this
# many times the same payload's on loopback, is limited by the network, not Redis.
TRANSFER_FACTOR = 2.0
LOOPBACK_FACTOR = 3.0
BIG_VALUE = 100_000
# A command that takes this share of the server's time, at this cost per call, blocks.
COMMAND_SHARE = 0.5
COMMAND_SLOW_US = 1_000.0
COMMAND_BLOCKING_US = 10_000.0
# MGET-sized batches that deliver this many times the values/s of single GETs.
BATCH_GAIN = 3.0

RULES = (
    "placement-cross-region",
    "placement-cross-zone",
    "placement-same-zone",
    "placement-local",
    "rtt-jitter",
    "cpu-shard",
    "cpu-headroom",
    "bandwidth-large-values",
    "batch-reads",
    "command-cost",
    "clients-near-limit",
    "ops-trend",
)


def size_label(n: int) -> str:
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    if n >= 1000:
        return f"{n / 1000:g} KB"
    return f"{n} B"


def _rec(
    rid: str, severity: Severity, summary: str, advice: str, **evidence: Any
) -> Recommendation:
    return Recommendation(
        id=rid, severity=severity, summary=summary, advice=advice, evidence=evidence
    )


def _placement(rtt: RttReport, loopback: RttReport | None) -> list[Recommendation]:
    # The fastest round trip is the path's floor: queueing behind a busy server or a
    # starved client host inflates the p50 and p99, never the minimum. Placement is
    # judged on it; the p50 and p99 are what the application feels.
    floor = loopback.min_ms if loopback is not None else 0.0
    excess = rtt.min_ms - floor
    against = (
        f"{loopback.p50_ms:.2f} ms on loopback (floors {rtt.min_ms:.2f} and {floor:.2f} ms)"
        if loopback is not None
        else f"no loopback reference (floor {rtt.min_ms:.2f} ms)"
    )
    seen = f"RTT p50 {rtt.p50_ms:.2f} ms, p99 {rtt.p99_ms:.2f} ms against {against}"
    ev = {
        "p50_ms": rtt.p50_ms,
        "p99_ms": rtt.p99_ms,
        "min_ms": rtt.min_ms,
        "loopback_p50_ms": None if loopback is None else loopback.p50_ms,
        "loopback_min_ms": None if loopback is None else loopback.min_ms,
        "excess_ms": round(excess, 3),
    }
    out: list[Recommendation] = []
    if excess >= CROSS_REGION_MS:
        out.append(_rec(
            "placement-cross-region", Severity.HIGH,
            f"{seen}: the app and Redis are likely in different regions",
            "Run Redis (or a replica the app reads from) in the app's region; until then keep "
            "hot keys in veneer's in-process tier (l1_size, l1_ttl) and batch reads (get_many): "
            "every round trip costs this much.",
            threshold_ms=CROSS_REGION_MS, **ev,
        ))  # fmt: skip
    elif excess >= CROSS_ZONE_MS:
        out.append(_rec(
            "placement-cross-zone", Severity.MEDIUM,
            f"{seen}: the app and Redis are likely in different zones",
            "Place the app in Redis's zone, or give Redis a replica in each zone and read from "
            "the local one; a bigger instance does not shorten the network. Meanwhile serve hot "
            "keys from L1 (l1_size, l1_ttl) and batch reads with get_many.",
            threshold_ms=CROSS_ZONE_MS, **ev,
        ))  # fmt: skip
    elif excess >= SAME_HOST_MS:
        out.append(_rec(
            "placement-same-zone", Severity.INFO,
            f"{seen}: one network hop, typical of one zone",
            "Placement is reasonable; batch reads (get_many) when a request needs many keys.",
            threshold_ms=SAME_HOST_MS, **ev,
        ))  # fmt: skip
    else:
        out.append(_rec(
            "placement-local", Severity.INFO,
            f"{seen}: as close as loopback, placement is not a limit",
            "Nothing to change in placement.",
            threshold_ms=SAME_HOST_MS, **ev,
        ))  # fmt: skip
    if rtt.p99_ms >= JITTER_FACTOR * rtt.p50_ms and rtt.spread_ms >= JITTER_MS:
        local = (
            loopback is not None
            and loopback.p99_ms >= JITTER_FACTOR * loopback.p50_ms
            and loopback.spread_ms >= JITTER_MS / 2
        )
        where = (
            "loopback is as jittery, so the app's host itself stalls (CPU starvation, GC, "
            "a noisy neighbour)"
            if local
            else "loopback is not, so the network or the server stalls (long commands, "
            "persistence forks, a congested link)"
        )
        out.append(_rec(
            "rtt-jitter", Severity.LOW,
            f"RTT p99 {rtt.p99_ms:.2f} ms is {rtt.p99_ms / max(rtt.p50_ms, 1e-3):.0f}x the "
            f"p50 ({rtt.p50_ms:.2f} ms): {where}",
            "Set veneer's redis_timeout above the p99 so that ordinary jitter is not an error, "
            "and look for the stall (the command costs below, `veneer audit` for the slow log).",
            p50_ms=rtt.p50_ms, p99_ms=rtt.p99_ms, spread_ms=rtt.spread_ms, local_jitter=local,
        ))  # fmt: skip
    return out


def _cpu(server: ServerLoad) -> list[Recommendation]:
    cpu = server.cpu
    if cpu is None:
        return []
    top = server.top_commands[0] if server.top_commands else None
    costliest = (
        f" (the costliest command: {top.command}, {top.share:.0%} of its time)" if top else ""
    )
    ev = {
        "main_thread": cpu.main_thread,
        "window_s": cpu.window_s,
        "per_thread": cpu.per_thread,
        "busy": server.busy,
    }
    if cpu.main_thread >= CPU_SHARD:
        return [_rec(
            "cpu-shard", Severity.HIGH,
            f"Redis main thread at {cpu.main_thread:.0%} CPU: shard (Cluster) rather than a "
            "bigger instance",
            "Redis runs commands on one thread, so more cores do not help: spread the keys over "
            f"shards (Redis Cluster) and cut the costliest commands{costliest}. If Redis needs "
            "vertical scaling, the design is already wrong: serve hot keys from L1.",
            threshold=CPU_SHARD, **ev,
        )]  # fmt: skip
    if cpu.main_thread >= CPU_HEADROOM:
        return [_rec(
            "cpu-headroom", Severity.LOW,
            f"Redis main thread at {cpu.main_thread:.0%} CPU: little headroom for a burst",
            f"Plan for sharding before it saturates; look at the costliest commands{costliest}.",
            threshold=CPU_HEADROOM, **ev,
        )]  # fmt: skip
    return []


def _bandwidth(rtt: RttReport, sizes: Sequence[SizeThroughput]) -> list[Recommendation]:
    out: list[Recommendation] = []
    for s in sorted(sizes, key=lambda s: s.size_bytes):
        if s.size_bytes < 10_000:
            continue
        network_bound = s.get_ms >= TRANSFER_FACTOR * rtt.p50_ms
        if s.loopback_get_ms is not None:
            network_bound = network_bound and s.get_ms >= LOOPBACK_FACTOR * s.loopback_get_ms
        if not network_bound:
            continue
        against = (
            f" against {s.loopback_get_ms:.2f} ms on loopback"
            if s.loopback_get_ms is not None
            else ""
        )
        severity = Severity.MEDIUM if s.size_bytes <= BIG_VALUE else Severity.LOW
        label = size_label(s.size_bytes)
        out.append(_rec(
            "bandwidth-large-values", severity,
            f"a {label} value takes {s.get_ms:.2f} ms ({s.get_mb_s:.0f} MB/s on one "
            f"connection){against}: from {label} on, the network, not Redis, is the limit",
            "Keep values small: compress them (compress_above), cap them (max_value_bytes), "
            "split big objects, or keep them in L1; an MGET of such values multiplies the bytes, "
            "not the speed.",
            size_bytes=s.size_bytes, get_ms=s.get_ms, get_mb_s=s.get_mb_s,
            loopback_get_ms=s.loopback_get_ms, rtt_p50_ms=rtt.p50_ms,
        ))  # fmt: skip
        break
    small = min(sizes, key=lambda s: s.size_bytes, default=None)
    if small is not None and small.get_ops_per_s > 0:
        gain = small.mget_values_per_s / small.get_ops_per_s
        if gain >= BATCH_GAIN:
            out.append(_rec(
                "batch-reads", Severity.INFO,
                f"one round trip for {small.mget_batch} values of {size_label(small.size_bytes)} "
                f"delivers {gain:.0f}x the values per second of one GET each",
                "Read the keys a request needs together (get_many: MGET, one round trip per "
                "slot) instead of one by one.",
                gain=round(gain, 1), size_bytes=small.size_bytes, batch=small.mget_batch,
            ))  # fmt: skip
    return out


def _server(server: ServerLoad) -> list[Recommendation]:
    out: list[Recommendation] = []
    top = server.top_commands[0] if server.top_commands else None
    if top is not None and top.share >= COMMAND_SHARE and top.usec_per_call >= COMMAND_SLOW_US:
        severity = Severity.HIGH if top.usec_per_call >= COMMAND_BLOCKING_US else Severity.MEDIUM
        out.append(_rec(
            "command-cost", severity,
            f"{top.command} took {top.share:.0%} of Redis's command time at "
            f"{top.usec_per_call / 1000:.1f} ms a call ({server.top_commands_scope}): every "
            "other client waits behind it",
            "Make it O(1) or split it into bounded steps (no loops over data in scripts, no full "
            "reads of big keys); `veneer audit` names the keys and the slow log entries.",
            command=top.command, share=top.share, usec_per_call=top.usec_per_call,
            scope=server.top_commands_scope,
        ))  # fmt: skip
    if server.connected_clients is not None and server.maxclients:
        share = server.connected_clients / server.maxclients
        if share >= 0.5:
            out.append(_rec(
                "clients-near-limit", Severity.HIGH if share >= 0.8 else Severity.MEDIUM,
                f"{server.connected_clients:,} clients connected, {share:.0%} of maxclients "
                f"({server.maxclients:,})",
                "Share a bounded pool per process (veneer does) instead of a connection per "
                "request or thread; a restart then reconnects without a storm.",
                connected=server.connected_clients, maxclients=server.maxclients,
            ))  # fmt: skip
    if server.ops_trend in {"rising", "falling"} and len(server.ops_per_s) >= 2:
        first, last = server.ops_per_s[0], server.ops_per_s[-1]
        out.append(_rec(
            "ops-trend", Severity.INFO,
            f"ops/s {server.ops_trend} during the window ({first:,.0f} to {last:,.0f})",
            "The load changed while the doctor measured: run it again at a steady time to "
            "compare.",
            ops_per_s=list(server.ops_per_s),
        ))  # fmt: skip
    return out


def advise(
    rtt: RttReport | None,
    loopback: RttReport | None,
    sizes: Sequence[SizeThroughput],
    server: ServerLoad,
) -> list[Recommendation]:
    """Every recommendation the numbers call for, worst first."""
    out: list[Recommendation] = []
    if rtt is not None:
        out += _placement(rtt, loopback)
        out += _bandwidth(rtt, sizes)
    out += _cpu(server)
    out += _server(server)
    order = {rid: i for i, rid in enumerate(RULES)}
    return sorted(out, key=lambda r: (-r.severity.rank, order[r.id]))
