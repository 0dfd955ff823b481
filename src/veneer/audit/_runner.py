"""Run an audit: snapshot every node, measure CPU, sample keys under the budget, run the checks.

The order matters for safety and for Ctrl-C: the cheap server facts come first,
so an interrupted audit still reports on configuration, slow log and command
stats, plus whatever keys it had read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import redis

from .._errors import ConfigurationError, VeneerError
from .._url import scrub
from ._checks import run_checks
from ._context import AuditData
from ._estimate import KeySample, PrefixAccumulator, Stratum
from ._facts import eviction
from ._keyspaces import layout_glob
from ._model import AuditReport, PrefixReport, SamplingReport, ServerReport
from ._node_report import node_report
from ._patterns import coarsen, fold_key
from ._ranking import KeyRanking, to_top_key
from ._sampler import Sampler
from ._snapshot import NodeSnapshot, measure_cpu, take_snapshot
from ._target import Shard, Target, open_shards, parse_target
from ._throttle import Throttle

__all__ = ["AuditError", "AuditOptions", "Progress", "run_audit"]

# Per-key cost: TYPE, PTTL, MEMORY USAGE, a length command (+ OBJECT FREQ).
_COMMANDS_PER_KEY = 5


class AuditError(VeneerError):
    """The audit could not run at all (no server answered); the message names the masked target."""


class Progress(Protocol):
    """Where the audit reports progress (a rich bar, a log line, nothing)."""

    def phase(self, name: str, total: int | None = None) -> None: ...

    def advance(self, done: int) -> None: ...


class _Silent:
    def phase(self, name: str, total: int | None = None) -> None:
        pass

    def advance(self, done: int) -> None:
        pass


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditOptions:
    """How much the audit may read and how hard it may push.

    ``sample``: most keys read over the whole target (None reads every key).
    ``budget``: commands per second over all nodes, every command counted.
    ``replicas``: on a cluster (or sentinel), read keys from a replica of each primary.
    ``cpu_window``: seconds between the two INFO cpu readings.
    """

    sample: int | None = 100_000
    budget: float = 5_000.0
    replicas: bool = False
    cpu_window: float = 1.0
    timeout: float = 5.0
    top: int = 10
    max_prefixes: int = 200

    def batch(self) -> int:
        # About 1/20 s of budget per pipeline keeps any one-second window close to the budget.
        return max(5, min(100, int(self.budget / _COMMANDS_PER_KEY / 20)))


def run_audit(
    url: str, options: AuditOptions | None = None, *, progress: Progress | None = None
) -> AuditReport:
    """Audit the Redis (or cluster, or sentinel-managed primary) at ``url``.

    Raises ConfigurationError for a bad URL and AuditError when no server
    answers; a Ctrl-C while running returns the partial report, marked
    ``sampling.interrupted``.
    """
    opts = options or AuditOptions()
    prog: Progress = progress or _Silent()
    target = parse_target(url)
    started_wall, started = time.time(), time.monotonic()
    throttle = Throttle(opts.budget)
    prog.phase("connecting")
    try:
        shards = open_shards(target, replicas=opts.replicas, timeout=opts.timeout)
    except redis.RedisError as exc:
        _refused_login(target, f"{type(exc).__name__}: {exc}")
        raise AuditError(f"cannot reach {target.masked}: {type(exc).__name__}: {exc}") from None
    try:
        return _Audit(target, shards, opts, throttle, prog).run(started_wall, started)
    finally:
        for shard in shards:
            shard.close()


def _refused_login(target: Target, errors: str) -> None:
    """The server answered but refused the credentials: a usage error, not an outage."""
    lowered = errors.lower()
    if any(word in lowered for word in ("authentication", "wrongpass", "noauth", "noperm")):
        raise ConfigurationError(
            f"{target.masked} answered but refused the login ({scrub(errors, target.url)}): "
            "check the user and password in the URL, or set VENEER_AUDIT_URL"
        )


class _Audit:
    def __init__(
        self,
        target: Target,
        shards: list[Shard],
        opts: AuditOptions,
        throttle: Throttle,
        progress: Progress,
    ) -> None:
        self.target = target
        self.shards = shards
        self.opts = opts
        self.throttle = throttle
        self.progress = progress
        self.snapshots: list[NodeSnapshot] = []
        self.strata: dict[tuple[str, int], Stratum] = {}
        self.accs: dict[tuple[int, str], PrefixAccumulator] = {}
        self.ranking = KeyRanking(top=opts.top)
        self.blind_spots: list[str] = []
        self.interrupted = False
        self.exhausted: set[tuple[str, int]] = set()
        self.sampler = Sampler(throttle, batch=opts.batch(), progress=progress.advance)

    def run(self, started_wall: float, started: float) -> AuditReport:
        try:
            self._snapshots()
            if self.snapshots and all(s.error for s in self.snapshots):
                errors = "; ".join(f"{s.address}: {s.error}" for s in self.snapshots)
                _refused_login(self.target, errors)
                raise AuditError(f"cannot reach {self.target.masked}: {errors}")
            self._cpu()
            self._sample()
        except KeyboardInterrupt:
            # Ctrl-C: report what was gathered; a second Ctrl-C while reporting aborts.
            self.interrupted = True
        self.progress.phase("checking")
        return self._report(started_wall, started)

    def _snapshots(self) -> None:
        self.progress.phase("reading server facts", len(self.shards))
        for i, shard in enumerate(self.shards):
            snap = take_snapshot(shard.primary, self.throttle)
            self.snapshots.append(snap)
            if snap.error:
                self.blind_spots.append(f"{snap.address}: {snap.error}")
            self.progress.advance(i + 1)
            if self.target.topology == "standalone" and snap.num("cluster_enabled") == 1:
                self.blind_spots.append(
                    f"{snap.address} is a cluster node: only it was audited; use "
                    "redis+cluster:// to cover every primary"
                )

    def _cpu(self) -> None:
        starts = [s.cpu_start[0] for s in self.snapshots if s.cpu_start is not None]
        if not starts:
            return
        if self.opts.cpu_window <= 0:
            self.blind_spots.append("CPU not measured (cpu window 0)")
            return
        self.progress.phase(f"measuring CPU for {self.opts.cpu_window:g} s")
        # The last node read gets the full window; earlier ones get a little more.
        remaining = max(starts) + self.opts.cpu_window - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        for shard, snap in zip(self.shards, self.snapshots, strict=False):
            measure_cpu(shard.primary, snap, self.throttle)

    def _populations(self, shard: Shard, snap: NodeSnapshot) -> dict[int, int]:
        if shard.read_from is shard.primary:
            return {db: d.get("keys", 0) for db, d in snap.keyspace().items()}
        replica = NodeSnapshot(address=shard.read_from.address)
        try:
            self.throttle.acquire(1)
            replica.info = dict(shard.read_from.client(0).info("keyspace"))
        except redis.RedisError as exc:
            self.blind_spots.append(f"{shard.read_from.address}: {exc}; keys not sampled")
            return {}
        return {db: d.get("keys", 0) for db, d in replica.keyspace().items()}

    def _sample(self) -> None:
        self.blind_spots.extend(s.note for s in self.shards if s.note)
        plan: list[tuple[Shard, int, NodeSnapshot]] = []
        for shard, snap in zip(self.shards, self.snapshots, strict=False):
            if not snap.info:
                continue
            for db, keys in self._populations(shard, snap).items():
                if keys > 0:
                    self.strata[(shard.read_from.address, db)] = Stratum(
                        shard.read_from.address, db, keys
                    )
                    plan.append((shard, db, snap))
        total = sum(s.population for s in self.strata.values())
        limit = self.opts.sample
        if limit is not None and total <= limit:
            limit = None  # everything fits in the sample: read it all, no sampling error
        self.progress.phase("sampling keys", total if limit is None else limit)
        sampler = self.sampler
        for shard, db, snap in plan:
            node = shard.read_from
            stratum = self.strata[(node.address, db)]
            # Proportional allocation: every stratum gets the same sampling fraction.
            quota = None if limit is None else max(1, round(limit * stratum.population / total))
            sampler.lfu = eviction(snap).lfu
            try:
                taken = sampler.sample(node, db, quota, self._sink)
            except redis.RedisError as exc:
                self.blind_spots.append(f"{node.address} db{db}: sampling stopped ({exc})")
                continue
            if quota is None or taken < quota:
                # SCAN reached the end: the keys found are the population (INFO also
                # counts keys that expired but were not yet reclaimed).
                self.exhausted.add((node.address, db))
                stratum.population = stratum.sampled

    def _sink(self, s: KeySample) -> None:
        self.strata[(s.node, s.db)].sampled += 1
        # A job queue's or session store's documented glob where folding would hide it.
        pattern = layout_glob(s.key) or fold_key(s.key)
        acc = self.accs.get((s.db, pattern))
        if acc is None:
            acc = self.accs[(s.db, pattern)] = PrefixAccumulator(db=s.db)
            if len(self.accs) > 20 * self.opts.max_prefixes:
                self._coarsen()
                acc = self.accs.setdefault((s.db, pattern), PrefixAccumulator(db=s.db))
        acc.add(s)
        self.ranking.add(s)

    def _coarsen(self) -> None:
        """Keep the pattern table bounded: merge patterns per db, as in the report."""
        merged: dict[tuple[int, str], PrefixAccumulator] = {}
        for db in sorted({db for db, _ in self.accs}):
            table = {p: a for (d, p), a in self.accs.items() if d == db}
            for p, a in coarsen(
                table, self.opts.max_prefixes, lambda a, b: a.merge(b), lambda a: a.sampled
            ).items():
                merged[(db, p)] = a
        self.accs = merged

    def _prefixes(self) -> list[PrefixReport]:
        self._coarsen()
        # A key whose pattern was coarsened away is found under its coarser pattern later;
        # here every accumulator is final.
        reports = [a.report(p, self.strata) for (_, p), a in self.accs.items() if a.sampled]
        return sorted(
            reports, key=lambda r: (-(r.bytes_estimated or 0), -r.keys_estimated, r.pattern)
        )

    def _report(self, started_wall: float, started: float) -> AuditReport:
        # Collected here, not after sampling, so that an interrupted audit keeps them.
        self.blind_spots.extend(self.sampler.blind_spots)
        if self.sampler.errors:
            self.blind_spots.append(
                f"{self.sampler.errors} keys could not be read (moved or refused)"
            )
        prefixes = self._prefixes()
        primary_of = {
            shard.read_from.address: shard.primary.address
            for shard in self.shards
            if shard.read_from is not shard.primary
        }
        complete = not self.interrupted and all(k in self.exhausted for k in self.strata)
        data = AuditData(
            target=self.target,
            primaries=self.snapshots,
            prefixes=prefixes,
            ranking=self.ranking,
            strata=self.strata,
            primary_of=primary_of,
            sampling_complete=complete,
        )
        findings = run_checks(data)
        duration = time.monotonic() - started
        total = PrefixAccumulator(db=0)
        for acc in self.accs.values():
            total.merge(acc)
        overall = total.report("*", self.strata) if total.sampled else None
        keys_total = sum(s.population for s in self.strata.values())
        exact = self._exact_no_ttl_share()
        roles = {s.primary.address: "primary" for s in self.shards}
        return AuditReport(
            target=self.target.masked,
            started_at=round(started_wall, 3),
            duration_s=round(duration, 3),
            findings=findings,
            prefixes=prefixes,
            server=ServerReport(
                topology=self.target.topology,
                nodes=[node_report(s, roles.get(s.address)) for s in self.snapshots],
            ),
            sampling=SamplingReport(
                keys_total=keys_total,
                keys_sampled=sum(s.sampled for s in self.strata.values()),
                sample_limit=self.opts.sample,
                complete=complete,
                interrupted=self.interrupted,
                no_ttl_keys_share=None if overall is None else round(overall.no_ttl_keys_share, 6),
                no_ttl_keys_ci95=None if overall is None else overall.no_ttl_keys_ci95,
                no_ttl_keys_share_exact=exact,
                budget_ops_per_s=self.opts.budget,
                commands_sent=self.throttle.commands,
                duration_s=round(duration, 3),
                ops_per_s=round(self.throttle.commands / duration, 1) if duration > 0 else 0.0,
                backoffs=self.throttle.backoffs,
                min_rate_ops_per_s=round(self.throttle.min_rate, 1),
                baseline_ping_ms=_ms(self.throttle.baseline_rtt),
                max_ping_ms=_ms(self.throttle.max_rtt),
            ),
            top_keys=self.ranking.top_keys(),
            hot_keys=[to_top_key(s) for s in self.ranking.hot_keys()],
            blind_spots=sorted(
                {
                    *self.blind_spots,
                    *(f"{s.address}: {b}" for s in self.snapshots for b in s.blind_spots),
                }
            ),
        )

    def _exact_no_ttl_share(self) -> float | None:
        """1 - expires/keys from INFO keyspace of the sampled nodes: exact, but not per prefix."""
        keys = expires = 0
        for shard, snap in zip(self.shards, self.snapshots, strict=False):
            if shard.read_from is not shard.primary or not snap.info:
                continue
            for d in snap.keyspace().values():
                keys += d.get("keys", 0)
                expires += d.get("expires", 0)
        return round(1 - expires / keys, 6) if keys else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
