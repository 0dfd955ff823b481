"""Everything the checks look at, gathered by the runner; checks only read it."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._estimate import Stratum
from ._model import PrefixReport
from ._ranking import KeyRanking
from ._snapshot import NodeSnapshot
from ._target import Target

__all__ = ["AuditData"]


@dataclass(slots=True)
class AuditData:
    """The inputs of every check: pure data, so checks are tested without servers."""

    target: Target
    primaries: list[NodeSnapshot]
    prefixes: list[PrefixReport] = field(default_factory=list)
    ranking: KeyRanking = field(default_factory=KeyRanking)
    strata: dict[tuple[str, int], Stratum] = field(default_factory=dict)
    # read-from address (a replica with --replicas) -> its primary's address
    primary_of: dict[str, str] = field(default_factory=dict)
    sampling_complete: bool = True

    def primary_snapshot(self, address: str) -> NodeSnapshot | None:
        """The primary whose facts (persistence, eviction) govern keys read at ``address``."""
        wanted = self.primary_of.get(address, address)
        for snap in self.primaries:
            if snap.address == wanted:
                return snap
        return None

    def visible(self) -> list[NodeSnapshot]:
        """Primaries that answered INFO."""
        return [s for s in self.primaries if s.info]
