"""Which increments an exact group commit checks against the database for overflow.

Reading a key's durable total costs a query per commit, which would halve the write
rate of a hot counter, and overflow needs a total near 2^63. So each process checks
a key when it has not for ``every`` seconds, when the total it last saw plus what it
added since is within 2^61 of a limit, or when one increment is large (|n| >= 2^48).
Between checks, taking a total from below 2^61 past 2^63 would need thousands of
increments of 2^48 or more a second on one key, every one of which is checked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence

from ._sql import Pair

__all__ = ["Headroom"]

_NEAR = 1 << 61
_LARGE = 1 << 48
_MAX_KEYS = 100_000


class Headroom:
    def __init__(self, every: float = 1.0) -> None:
        self.every = every
        self._lock = threading.Lock()
        self._known: dict[Pair, tuple[int, float]] = {}  # total seen, when

    def to_check(self, batches: Iterable[Sequence[tuple[Pair, int]]]) -> set[Pair]:
        now = time.monotonic()
        check: set[Pair] = set()
        with self._lock:
            for batch in batches:
                for pair, n in batch:
                    seen = self._known.get(pair)
                    if (
                        seen is None
                        or now - seen[1] > self.every
                        or abs(n) >= _LARGE
                        or (abs(seen[0]) + abs(n) >= _NEAR)
                    ):
                        check.add(pair)
        return check

    def learn(self, totals: dict[Pair, int], added: Iterable[tuple[Pair, int]]) -> None:
        """``totals`` were read (and include this commit); ``added`` went in unchecked."""
        now = time.monotonic()
        with self._lock:
            if len(self._known) > _MAX_KEYS:
                self._known.clear()  # everything is checked once more
            for pair, total in totals.items():
                self._known[pair] = (total, now)
            for pair, n in added:
                seen = self._known.get(pair)
                if seen is not None:
                    self._known[pair] = (seen[0] + n, seen[1])
