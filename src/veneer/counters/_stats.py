"""What counters report: per-process statistics and the outcome of a flush pass."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["CounterStats", "FlushReport"]


@dataclass(slots=True)
class CounterStats:
    """Counts since this ``Counters`` was built (this process only)."""

    exact_increments: int = 0
    """Exact increments acknowledged (each committed to the journal first)."""
    buffered_increments: int = 0
    """Buffered increments acknowledged by Redis."""
    direct_increments: int = 0
    """Buffered increments written straight to the database because Redis was down."""
    in_doubt: int = 0
    """Buffered increments whose Redis call got no answer, not resolved yet."""
    in_doubt_applied: int = 0
    """... found applied by Redis once it answered (they are in the buffer)."""
    in_doubt_written: int = 0
    """... found not applied, fenced, then written to the database."""
    in_doubt_lost: int = 0
    """... undecidable because Redis lost its data meanwhile: counted as lost (within the
    stated bound of buffered counters), never twice."""
    journal_batches: int = 0
    """Group commits to the journal (each one database transaction)."""
    db_transactions: int = 0
    """Database transactions this process committed for counters (journal, flushes,
    compaction, registration)."""
    redis_errors: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class FlushReport:
    """One pass of a flusher."""

    claimed: int = 0
    """Shard buffers claimed (new claims and replays)."""
    replays: int = 0
    """Claims left unfinished by a flusher that died, taken over."""
    already_applied: int = 0
    """Replays whose flush id the ledger already had: nothing applied twice."""
    applied: int = 0
    """Flushes committed to the database by this pass."""
    keys: int = 0
    increments: int = 0
    """Sum of the deltas this pass committed."""
    compacted: int = 0
    """Journal rows folded into totals."""
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
