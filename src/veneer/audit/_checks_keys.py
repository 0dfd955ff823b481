"""Checks on the key sample: no-ttl, source-of-truth-risk, big-key, hot-key."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from ._context import AuditData
from ._facts import eviction, managed_service, persistence
from ._keyspaces import recognise
from ._model import Finding, PrefixReport, Severity
from ._patterns import fold_key
from ._ranking import BIG_KEY_LIMITS, to_top_key

__all__ = [
    "big_key",
    "claimed_prefixes",
    "hot_key",
    "no_ttl",
    "source_of_truth_risk",
    "store_risks",
]

# A prefix is treated as a store (not a cache gone wrong) when most of it never expires.
STORE_SHARE = 0.5
# Keys named individually; the rest of the offenders are summarised per prefix.
MAX_NAMED_BIG_KEYS = 20
# An LFU counter this high means on the order of 50,000 recent hits (lfu-log-factor 10).
HOT_FREQ = 100
MAX_HOT_KEYS = 5


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.1f}%"


def _ci(ci: tuple[float, float] | None) -> list[float] | None:
    return None if ci is None else [round(ci[0], 4), round(ci[1], 4)]


def _size(n: float | None) -> str:
    if n is None:
        return "n/a"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _prefix_evidence(p: PrefixReport, data: AuditData) -> dict[str, object]:
    ev: dict[str, object] = {
        "keys_estimated": p.keys_estimated,
        "keys_sampled": p.keys_sampled,
        "no_ttl_keys_share": round(p.no_ttl_keys_share, 4),
        "no_ttl_keys_ci95": _ci(p.no_ttl_keys_ci95),
        "no_ttl_keys_estimated": p.no_ttl_keys_estimated,
    }
    if not data.sampling_complete:
        ev["keys_margin95"] = p.keys_margin95
    if p.bytes_estimated is not None:
        ev["bytes_estimated"] = p.bytes_estimated
        ev["no_ttl_bytes_share"] = round(p.no_ttl_bytes_share or 0.0, 4)
        ev["no_ttl_bytes_ci95"] = _ci(p.no_ttl_bytes_ci95)
    keyspace = {}
    for node in p.nodes:
        snap = data.primary_snapshot(node)
        if snap is not None:
            ks = snap.keyspace().get(p.db)
            if ks:
                keyspace[node] = {"keys": ks.get("keys", 0), "expires": ks.get("expires", 0)}
    if keyspace:
        ev["keyspace"] = keyspace  # INFO keyspace: exact keys vs keys with a TTL in the db
    return ev


def _about(count: int, data: AuditData) -> str:
    """A key count as the report can vouch for it: exact after a complete read."""
    return f"{count:,}" if data.sampling_complete else f"~{count:,}"


def no_ttl(data: AuditData) -> Iterator[Finding]:
    """Per prefix: the share of keys and of memory that never expires.

    A prefix where most keys never expire is reported once, as source-of-truth-risk
    (whose advice includes the TTL), not twice.
    """
    claimed = claimed_prefixes(data)
    for p in data.prefixes:
        if p.no_ttl_keys_share <= 0 or p.no_ttl_keys_share >= STORE_SHARE:
            continue
        if (p.db, p.pattern) in claimed:
            continue
        share = p.no_ttl_keys_share
        if share >= 0.01:
            severity, summary = (
                Severity.MEDIUM,
                f"{_pct(share)} of {p.pattern} has no TTL while the rest expires: "
                "a write path drops the TTL",
            )
        else:
            severity, summary = (
                Severity.LOW,
                f"a few keys of {p.pattern} ({_pct(share)}) have no TTL",
            )
        yield Finding(
            id="no-ttl",
            severity=severity,
            summary=summary,
            prefix=p.pattern,
            db=p.db,
            nodes=p.nodes,
            evidence=_prefix_evidence(p, data),
            advice=(
                "Give every cached value a TTL (SET ... EX, or EXPIRE in the same MULTI); "
                "a SET without EX on an existing key removes its TTL. If this data is not "
                "derived from a database, it does not belong in a cache."
            ),
        )
    yield from _unsampled_dbs(data)


def _unsampled_dbs(data: AuditData) -> Iterator[Finding]:
    """Dbs no key was sampled from (interrupted, refused): INFO keyspace is all there is."""
    sampled = {(data.primary_of.get(n, n), p.db) for p in data.prefixes for n in p.nodes}
    for snap in data.visible():
        for db, ks in snap.keyspace().items():
            keys, expires = ks.get("keys", 0), ks.get("expires", 0)
            if (snap.address, db) in sampled or keys <= expires:
                continue
            share = (keys - expires) / keys
            yield Finding(
                id="no-ttl",
                severity=Severity.MEDIUM if share >= 0.01 else Severity.LOW,
                summary=f"{keys - expires:,} of {keys:,} keys in db{db} have no TTL "
                "(no key sampled there: prefixes unknown)",
                prefix="*",
                db=db,
                nodes=[snap.address],
                evidence={"keys": keys, "expires": expires, "no_ttl_keys_share": round(share, 4)},
                advice="Re-run the audit to completion to see which prefixes they belong to.",
            )


def store_risks(
    p: PrefixReport, data: AuditData, *, expiring: bool = False
) -> tuple[Severity, list[str], dict[str, object]]:
    """What a restart, eviction, flush or failover would do to a prefix that only Redis holds.

    ``expiring``: the prefix's keys carry TTLs (sessions, results), so ``volatile-*``
    eviction may delete them too. Returns the severity (high when a restart, eviction
    or a past flush threatens it, else medium), the risks in words, and per node facts.
    """
    risks: list[str] = []
    severity = Severity.MEDIUM
    facts: dict[str, object] = {}
    durable_everywhere = True
    for node in p.nodes:
        snap = data.primary_snapshot(node)
        if snap is None or not snap.info:
            continue
        pers, ev = persistence(snap), eviction(snap)
        durable_everywhere = durable_everywhere and pers.durable
        service = managed_service(snap)
        replicas = int(snap.num("connected_slaves", 0) or 0)
        flushes = sum(
            int(snap.info.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("flushall", "flushdb")
        )
        facts[snap.address] = {
            "persistence": pers.describe(),
            "persistence_source": pers.source,
            "persistence_failing": list(pers.failing),
            "maxmemory_policy": ev.policy,
            "maxmemory": ev.maxmemory,
            "replicas": replicas,
            "flush_calls": flushes,
            "managed_service": service,
        }
        on = f" ({service})" if service else ""
        if pers.enabled is False:
            risks.append(f"{snap.address}{on} has no persistence: a restart loses it")
            severity = Severity.HIGH
        elif pers.enabled is None:
            risks.append(f"{snap.address}{on}: persistence not visible (CONFIG hidden)")
        for what in pers.failing:
            risks.append(f"{snap.address}: {what}, so a restart loses recent writes")
            severity = Severity.HIGH
        evicts = ev.evicts_any_key or (
            expiring and ev.limited and ev.policy.startswith("volatile-")
        )
        if evicts:
            risks.append(f"{snap.address}{on} uses {ev.policy}: eviction may delete it at any time")
            severity = Severity.HIGH
        if pers.durable:
            pass  # every acknowledged write is in the service's transaction log
        elif replicas == 0:
            risks.append(f"{snap.address} has no replica: losing the node loses it")
        else:
            risks.append(
                f"{snap.address} replicates asynchronously: a failover loses the last writes"
            )
        if flushes:
            risks.append(f"FLUSHALL/FLUSHDB has run {flushes} time(s) on {snap.address}")
            severity = Severity.HIGH
    if severity is Severity.MEDIUM and facts and durable_everywhere:
        severity = Severity.LOW  # a durable service: only eviction or a flush could lose it
    return severity, risks, facts


def source_of_truth_risk(data: AuditData) -> Iterator[Finding]:
    """Per prefix that mostly never expires: what a restart, flush or failover would lose.

    Prefixes recognised as a job queue or session store are reported by those checks.
    """
    claimed = claimed_prefixes(data)
    for p in data.prefixes:
        if p.no_ttl_keys_share < STORE_SHARE or (p.db, p.pattern) in claimed:
            continue
        severity, risks, facts = store_risks(p, data)
        ev_out = _prefix_evidence(p, data)
        ev_out["risks"] = risks
        ev_out["nodes"] = facts
        yield Finding(
            id="source-of-truth-risk",
            severity=severity,
            summary=(
                f"{p.pattern}: {_about(p.no_ttl_keys_estimated, data)} keys "
                f"({_size(p.no_ttl_bytes_estimated)}) exist only in Redis; "
                + (risks[0] if risks else "a flush or failover loses them")
            ),
            prefix=p.pattern,
            db=p.db,
            nodes=p.nodes,
            evidence=ev_out,
            advice=(
                "Make the database the source of truth: write there first, then cache "
                "with a TTL (veneer's get_or_load; SET ... EX, and a SET without EX on an "
                "existing key removes its TTL). If Redis must hold it, treat it as a "
                "database: AOF with fsync, a replica, noeviction with alerting, backups."
            ),
        )


def claimed_prefixes(data: AuditData) -> set[tuple[int, str]]:
    """(db, pattern) of every prefix recognised as a job queue or session store."""
    return {(m.prefix.db, m.prefix.pattern) for m in recognise(data.prefixes)}


def big_key(data: AuditData) -> Iterator[Finding]:
    """Keys over RedisInsight's thresholds, worst first; the rest summarised per prefix."""
    offenders = data.ranking.big_keys()
    for s in offenders[:MAX_NAMED_BIG_KEYS]:
        limit = BIG_KEY_LIMITS[s.type]
        assert s.length is not None
        ratio = s.length / limit
        unit = "bytes" if s.type == "string" else "elements"
        top = to_top_key(s)
        yield Finding(
            id="big-key",
            severity=Severity.HIGH if ratio >= 10 else Severity.MEDIUM,
            summary=(
                f"{s.type} {top.key} has {s.length:,} {unit} "
                f"({ratio:.1f}x the {limit:,} limit, {_size(s.bytes)})"
            ),
            key=top.key,
            prefix=None,
            db=s.db,
            nodes=[s.node],
            evidence={
                "type": s.type,
                "length": s.length,
                "limit": limit,
                "bytes": s.bytes,
                "pattern": fold_key(s.key),
                "ttl_s": top.ttl_s,
            },
            advice=(
                "Split it (hash buckets, paged lists) or store it compressed and smaller; "
                "big values block the server on DEL, on eviction, on migration and on any "
                "full read, and saturate the network. Use UNLINK, not DEL, to remove it."
            ),
        )
    rest = offenders[MAX_NAMED_BIG_KEYS:]
    unnamed = data.ranking.big_count - min(len(offenders), MAX_NAMED_BIG_KEYS)
    if unnamed > 0:
        per_prefix = Counter(fold_key(s.key) for s in rest)
        yield Finding(
            id="big-key",
            severity=Severity.MEDIUM,
            summary=f"{unnamed:,} more sampled keys are over the big-key limits",
            evidence={"count": unnamed, "by_prefix": dict(per_prefix.most_common(20))},
            advice="See the named big keys above; the same fix applies to these prefixes.",
        )


def hot_key(data: AuditData) -> Iterator[Finding]:
    """Top keys by OBJECT FREQ under an LFU policy; otherwise how to see them."""
    snaps = data.visible()
    lfu = [s for s in snaps if eviction(s).lfu]
    if not lfu:
        policies = sorted({eviction(s).policy for s in snaps})
        if snaps:
            yield Finding(
                id="hot-key",
                severity=Severity.INFO,
                summary="hot keys not measured: the eviction policy is not LFU",
                nodes=[s.address for s in snaps],
                evidence={"maxmemory_policy": policies},
                advice=(
                    "Redis only counts accesses under an LFU policy: set "
                    "maxmemory-policy allkeys-lfu (a good policy for a cache anyway) and "
                    "re-run the audit, or run redis-cli --hotkeys off-peak."
                ),
            )
        return
    for s in data.ranking.hot_keys()[:MAX_HOT_KEYS]:
        if s.freq is None or s.freq < HOT_FREQ:
            continue
        top = to_top_key(s)
        yield Finding(
            id="hot-key",
            severity=Severity.LOW,
            summary=f"{top.key} is hot (LFU counter {s.freq}/255)",
            key=top.key,
            db=s.db,
            nodes=[s.node],
            evidence={"freq": s.freq, "type": s.type, "bytes": s.bytes, "pattern": fold_key(s.key)},
            advice=(
                "Serve it from an in-process tier (veneer's L1) so it stops costing a "
                "round trip per read; on a cluster one hot key pins one shard's CPU."
            ),
        )
