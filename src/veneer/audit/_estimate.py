"""From a key sample to per-prefix estimates with honest error bars.

The sampler reads up to ``--sample`` keys of each (node, db) *stratum* in SCAN
order. SCAN walks the hash table, whose order depends on a hash of the key and
not on its name, so the first keys it returns are close to a simple random
sample of that stratum. Each stratum then gets the weight ``N_h / n_h`` (keys in
the stratum / keys read) and the usual stratified-sampling formulas apply, with
the finite-population correction so that a complete scan reports no error.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ._model import PrefixReport

__all__ = ["KeySample", "PrefixAccumulator", "Stratum", "wilson"]

Z95 = 1.959963984540054


@dataclass(slots=True, frozen=True)
class KeySample:
    """What the audit learned about one key, without reading its value."""

    node: str
    db: int
    key: bytes
    type: str
    ttl_ms: int  # -1: no TTL
    bytes: int | None  # MEMORY USAGE ... SAMPLES 5; None when not visible
    length: int | None  # STRLEN/HLEN/LLEN/SCARD/ZCARD/XLEN
    freq: int | None  # OBJECT FREQ, only under an LFU policy

    @property
    def has_ttl(self) -> bool:
        return self.ttl_ms >= 0


@dataclass(slots=True)
class Stratum:
    """One (node, db) keyspace: ``population`` keys per INFO, ``sampled`` keys read."""

    node: str
    db: int
    population: int
    sampled: int = 0

    @property
    def weight(self) -> float:
        return self.population / self.sampled if self.sampled else 0.0

    @property
    def fpc(self) -> float:
        """Finite-population correction: 0 when every key was read."""
        if self.population <= 0:
            return 0.0
        return max(0.0, 1.0 - self.sampled / self.population)


@dataclass(slots=True)
class _Sums:
    """Unweighted sums over the sampled keys of one prefix in one stratum."""

    n: int = 0
    no_ttl: int = 0
    n_bytes: int = 0
    bytes_all: float = 0.0
    bytes_no_ttl: float = 0.0
    sq_bytes_ttl: float = 0.0
    sq_bytes_no_ttl: float = 0.0
    ttl_s: float = 0.0

    def add(self, s: KeySample) -> None:
        self.n += 1
        if s.has_ttl:
            self.ttl_s += s.ttl_ms / 1000.0
        else:
            self.no_ttl += 1
        if s.bytes is not None:
            b = float(s.bytes)
            self.n_bytes += 1
            self.bytes_all += b
            if s.has_ttl:
                self.sq_bytes_ttl += b * b
            else:
                self.bytes_no_ttl += b
                self.sq_bytes_no_ttl += b * b

    def merge(self, o: _Sums) -> None:
        self.n += o.n
        self.no_ttl += o.no_ttl
        self.n_bytes += o.n_bytes
        self.bytes_all += o.bytes_all
        self.bytes_no_ttl += o.bytes_no_ttl
        self.sq_bytes_ttl += o.sq_bytes_ttl
        self.sq_bytes_no_ttl += o.sq_bytes_no_ttl
        self.ttl_s += o.ttl_s


def wilson(share: float, n_eff: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval: sane near 0% and 100%, where the normal one collapses."""
    if n_eff <= 0:
        return (0.0, 1.0)
    if z <= 0:
        return (share, share)
    z2 = z * z
    denom = 1.0 + z2 / n_eff
    centre = (share + z2 / (2 * n_eff)) / denom
    half = z * math.sqrt(max(0.0, share * (1 - share) / n_eff + z2 / (4 * n_eff * n_eff))) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(slots=True)
class PrefixAccumulator:
    """Everything sampled for one (db, pattern); mergeable across nodes and patterns."""

    db: int
    by_stratum: dict[tuple[str, int], _Sums] = field(default_factory=dict)
    types: Counter[str] = field(default_factory=Counter)

    def add(self, s: KeySample) -> None:
        sums = self.by_stratum.get((s.node, s.db))
        if sums is None:
            sums = self.by_stratum[(s.node, s.db)] = _Sums()
        sums.add(s)
        self.types[s.type] += 1

    def merge(self, other: PrefixAccumulator) -> PrefixAccumulator:
        for k, v in other.by_stratum.items():
            mine = self.by_stratum.get(k)
            if mine is None:
                self.by_stratum[k] = mine = _Sums()
            mine.merge(v)
        self.types.update(other.types)
        return self

    @property
    def sampled(self) -> int:
        return sum(s.n for s in self.by_stratum.values())

    def estimated_keys(self, strata: Mapping[tuple[str, int], Stratum]) -> float:
        return sum(strata[k].weight * s.n for k, s in self.by_stratum.items())

    def report(self, pattern: str, strata: Mapping[tuple[str, int], Stratum]) -> PrefixReport:
        """The estimates for this prefix given the final size of every stratum."""
        parts = [(strata[k], s) for k, s in self.by_stratum.items()]
        n = sum(s.n for _, s in parts)
        keys = sum(st.weight * s.n for st, s in parts)
        no_ttl = sum(st.weight * s.no_ttl for st, s in parts)
        share = no_ttl / keys if keys else 0.0

        # Kish effective sample size folds unequal stratum weights into one n.
        w2n = sum(st.weight**2 * s.n for st, s in parts)
        n_eff = keys * keys / w2n if w2n else 0.0
        fpc = sum(st.fpc * st.weight * s.n for st, s in parts) / keys if keys else 0.0
        keys_ci = wilson(share, n_eff, Z95 * math.sqrt(fpc))

        var_keys = 0.0
        for st, s in parts:
            if st.sampled > 1:
                q = s.n / st.sampled
                var_keys += st.population**2 * st.fpc * q * (1 - q) / (st.sampled - 1)
        margin = round(Z95 * math.sqrt(var_keys))

        bytes_est: int | None = None
        bytes_share: float | None = None
        bytes_ci: tuple[float, float] | None = None
        known = [(st, s) for st, s in parts if s.n_bytes]
        if known:
            # Keys whose size could not be read count at the mean size of their stratum.
            scale = [(st.weight * s.n / s.n_bytes, st, s) for st, s in known]
            total = sum(w * s.bytes_all for w, _, s in scale)
            nottl_b = sum(w * s.bytes_no_ttl for w, _, s in scale)
            bytes_est = round(total)
            bytes_share = nottl_b / total if total else 0.0
            bytes_ci = self._ratio_ci(bytes_share, total, scale, keys_ci)

        ttl_n = sum(st.weight * (s.n - s.no_ttl) for st, s in parts)
        ttl_sum = sum(st.weight * s.ttl_s for st, s in parts)
        return PrefixReport(
            pattern=pattern,
            db=self.db,
            keys_sampled=n,
            keys_estimated=round(keys),
            keys_margin95=margin,
            no_ttl_keys_share=share,
            no_ttl_keys_ci95=keys_ci,
            bytes_estimated=bytes_est,
            no_ttl_bytes_share=bytes_share,
            no_ttl_bytes_ci95=bytes_ci,
            avg_ttl_s=round(ttl_sum / ttl_n, 1) if ttl_n else None,
            types=dict(sorted(self.types.items())),
            nodes=sorted({node for node, _ in self.by_stratum}),
        )

    @staticmethod
    def _ratio_ci(
        share: float,
        total: float,
        scale: Iterable[tuple[float, Stratum, _Sums]],
        keys_ci: tuple[float, float],
    ) -> tuple[float, float]:
        """Linearised variance of a ratio estimator (bytes without TTL / all bytes)."""
        if total <= 0:
            return (0.0, 1.0)
        var = 0.0
        for w, st, s in scale:
            resid = (1 - share) ** 2 * s.sq_bytes_no_ttl + share**2 * s.sq_bytes_ttl
            var += w * w * st.fpc * resid
        var /= total * total
        if var == 0.0 and keys_ci[0] < keys_ci[1]:
            # Every sampled key agreed (all with or all without TTL): the byte share
            # is no better known than the key share, so borrow its interval.
            return keys_ci
        half = Z95 * math.sqrt(var)
        return (max(0.0, share - half), min(1.0, share + half))
