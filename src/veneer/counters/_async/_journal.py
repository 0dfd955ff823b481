"""Group commit: concurrent callers' increments go to the journal in one transaction.

A caller that finds no write in progress leads: it takes every increment waiting
at that moment (its own included) and appends them in one transaction; callers
that arrive meanwhile wait. When the leader is done, it hands the lead to the
first of them, so each caller writes at most one batch and none waits for more
than the batch in progress plus its own. Under load a hot counter costs one
insert per batch, not one row lock per increment.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Sequence

from .._spec import CounterOverflow, CounterStoreError
from .._sql import Pair
from ._store import AsyncCounterStore
from ._waiting import Signal

__all__ = ["AsyncJournalWriter"]


class _Slot:
    __slots__ = ("accepted", "error", "items", "lead", "signal")

    def __init__(self, items: Sequence[tuple[Pair, int]]) -> None:
        self.items = items
        self.signal = Signal()
        self.lead = False
        self.accepted = False
        self.error: BaseException | None = None


class AsyncJournalWriter:
    """Appends increments to the journal in group commits; ``on_commit(pairs)`` runs after
    each commit, before any caller of that batch returns (it invalidates cached reads)."""

    def __init__(
        self,
        store: AsyncCounterStore,
        on_commit: Callable[[list[Pair]], Awaitable[None]],
        *,
        max_batch: int = 1000,
    ) -> None:
        self._store = store
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._pending: list[_Slot] = []
        self._writing = False
        self.batches = 0
        self.increments = 0

    def after_fork(self) -> None:
        """In a forked child: the parent's waiting callers do not exist here."""
        self._lock = threading.Lock()
        self._pending = []
        self._writing = False

    async def write(self, items: Sequence[tuple[Pair, int]]) -> None:
        """Return once ``items`` are committed (all of them, or none: CounterOverflow)."""
        slot = _Slot(items)
        with self._lock:
            self._pending.append(slot)
            lead = not self._writing
            if lead:
                self._writing = True
        if not lead:
            try:
                await slot.signal.wait()
            except BaseException:
                self._abandon(slot)
                raise
        if slot.lead or lead:
            await self._lead()
        if slot.error is not None:
            raise slot.error
        if not slot.accepted:
            pairs = ", ".join(f"{name}[{key!r}]" for (name, key), _ in items)
            raise CounterOverflow(
                f"increment refused: it would take {pairs} past a signed 64-bit count "
                "(9223372036854775807); nothing was counted"
            )

    async def _lead(self) -> None:
        with self._lock:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
        try:
            accepted = await self._store.append([slot.items for slot in batch])
        except CounterStoreError as exc:
            for slot in batch:
                slot.error = CounterStoreError(str(exc))
                slot.error.__cause__ = exc.__cause__
        except BaseException as exc:  # a cancelled leader: its batch's fate is unknown
            for slot in batch:
                slot.error = CounterStoreError(
                    f"the batch's transaction was interrupted ({exc.__class__.__name__}); "
                    "its increments may or may not be counted"
                )
            self._hand_over(batch)
            raise
        else:
            self.batches += 1
            for slot, ok in zip(batch, accepted, strict=True):
                slot.accepted = ok
                if ok:
                    self.increments += len(slot.items)
            pairs = sorted({pair for slot in batch if slot.accepted for pair, _ in slot.items})
            if pairs:
                try:
                    await self._on_commit(pairs)
                except Exception:  # invalidation is best effort: the cache queues it
                    pass
        self._hand_over(batch)

    def _abandon(self, slot: _Slot) -> None:
        """A waiter that was cancelled: drop its increments if no batch took them yet, and
        pass the lead on if it had just been handed to it."""
        with self._lock:
            if slot in self._pending:
                self._pending.remove(slot)
            handed = slot.lead
        if handed:
            self._hand_over([])

    def _hand_over(self, batch: list[_Slot]) -> None:
        with self._lock:
            if self._pending:
                self._pending[0].lead = True
                self._pending[0].signal.set()
            else:
                self._writing = False
        for slot in batch:
            slot.lead = False
            slot.signal.set()
