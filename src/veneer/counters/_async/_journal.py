"""Exact increments: appended to the journal in group commits (see ``_group``).

Several batches may be in flight at once (``leaders``): inserts never wait on each
other's locks, so a second transaction overlaps the first one's commit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from .._headroom import Headroom
from .._spec import CounterOverflow, CounterStoreError
from .._sql import Pair
from ._group import AsyncGroupCommit, Slot
from ._store import AsyncCounterStore

__all__ = ["AsyncJournalWriter"]


def _interrupted(exc: BaseException) -> BaseException:
    return CounterStoreError(
        f"the batch's transaction was interrupted ({exc.__class__.__name__}); its "
        "increments may or may not be counted"
    )


class AsyncJournalWriter:
    """Appends increments to the journal in group commits; ``on_commit(pairs)`` runs after
    each commit, before any caller of that batch returns (it invalidates cached reads)."""

    def __init__(
        self,
        store: AsyncCounterStore,
        on_commit: Callable[[list[Pair]], Awaitable[None]],
        *,
        leaders: int = 1,
        gather: float = 0.0005,
    ) -> None:
        self._store = store
        self._on_commit = on_commit
        self._headroom = Headroom()
        self._group = AsyncGroupCommit(
            self._append, leaders=leaders, gather=gather, interrupted=_interrupted
        )
        self.increments = 0

    @property
    def batches(self) -> int:
        return self._group.batches

    def after_fork(self) -> None:
        self._group.after_fork()

    async def write(self, items: Sequence[tuple[Pair, int]]) -> None:
        """Return once ``items`` are committed (all of them, or none: CounterOverflow)."""
        if not await self._group.submit(items):
            pairs = ", ".join(f"{name}[{key!r}]" for (name, key), _ in items)
            raise CounterOverflow(
                f"increment refused: it would take {pairs} past a signed 64-bit count "
                "(9223372036854775807); nothing was counted"
            )

    async def _append(self, batch: list[Slot]) -> Callable[[], Awaitable[None]] | None:
        batches = [slot.items for slot in batch]
        check = self._headroom.to_check(batches)
        try:
            accepted, totals = await self._store.append(batches, check)
        except CounterStoreError as exc:
            for slot in batch:
                slot.error = CounterStoreError(str(exc))
                slot.error.__cause__ = exc.__cause__
            return None
        unchecked = [(pair, n) for items, ok in zip(batches, accepted, strict=True) if ok
                     for pair, n in items if pair not in check]  # fmt: skip
        self._headroom.learn(totals, unchecked)
        pairs: set[Pair] = set()
        for slot, ok in zip(batch, accepted, strict=True):
            slot.result = ok
            if ok:
                self.increments += len(slot.items)
                pairs.update(pair for pair, _ in slot.items)
        if not pairs:
            return None

        async def invalidate() -> None:
            try:
                await self._on_commit(sorted(pairs))
            except Exception:  # invalidation is best effort: the cache queues what it can't
                pass

        return invalidate
