"""Group commit: concurrent callers' work goes out in one batch, one round trip.

A caller that finds a free lead (at most ``leaders`` batches in flight) takes every
item waiting at that moment, its own included, and runs them as one batch; callers
that arrive meanwhile wait. A leader that finishes hands the next batch to the first
waiter, so no caller runs more than one batch and none waits longer than the batch in
progress plus its own. Under load a hot counter costs one transaction (or one Redis
call) per batch, not one per increment.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ._waiting import Signal

__all__ = ["AsyncGroupCommit", "Slot"]


class Slot:
    """One caller's items; the batch runner sets ``result`` or ``error`` on each."""

    __slots__ = ("batch", "error", "items", "result", "signal")

    def __init__(self, items: Sequence[Any]) -> None:
        self.items = items
        self.signal = Signal()
        self.batch: list[Slot] | None = None  # set when this caller is to lead a batch
        self.result: Any = None
        self.error: BaseException | None = None


After = Callable[[], Awaitable[None]] | None


class AsyncGroupCommit:
    """Runs ``run(batch)`` for batches of concurrent callers' slots. ``run`` may return
    an ``after`` step, run once the next batch has been handed its lead and before this
    batch's callers return (so it overlaps the next batch's round trip)."""

    def __init__(
        self,
        run: Callable[[list[Slot]], Awaitable[After]],
        *,
        leaders: int = 1,
        max_batch: int = 1000,
        gather: float = 0.0,
        interrupted: Callable[[BaseException], BaseException],
    ) -> None:
        self._run = run
        self._gather = gather
        self._leaders = leaders
        self._max_batch = max_batch
        self._interrupted = interrupted
        self._lock = threading.Lock()
        self._pending: list[Slot] = []
        self._active = 0
        self._loaded = False
        self._last = 0  # the size of the last batch: what a gathering leader waits for
        self._gathering: Signal | None = None
        self._gather_until = 0  # wake the gathering leader once this many are pending
        self.batches = 0
        self.gather_timeouts = 0  # gathers that waited out ``gather`` (fewer came back)

    def after_fork(self) -> None:
        """In a forked child: the parent's waiting callers do not exist here."""
        self._lock = threading.Lock()
        self._pending = []
        self._active = 0
        self._gathering = None

    async def submit(self, items: Sequence[Any]) -> Any:
        """Run ``items`` in a batch; returns the slot's result or raises its error."""
        slot = Slot(items)
        gathered: Signal | None = None
        with self._lock:
            if self._active < self._leaders:
                self._active += 1
                self._pending.append(slot)
                slot.batch = self._take()
            else:
                self._pending.append(slot)
                if self._gathering is not None and len(self._pending) >= self._gather_until:
                    gathered, self._gathering = self._gathering, None
        if gathered is not None:
            gathered.set()
        if slot.batch is None:
            try:
                await slot.signal.wait()
            except BaseException:
                self._abandon(slot)
                raise
        if slot.batch is not None:
            if self._gather and (slot.signal.is_set() or self._loaded):
                # Under load (handed the lead, or the last batch was shared): the callers
                # the last batch released are about to come back; wait for them rather
                # than run a batch of one and make them wait a whole round trip. Only
                # until as many are here as in the last batch: then waiting longer
                # only delays the commit (everyone who was coming has come).
                await self._gather_more(slot.batch)
            await self._lead(slot.batch)
        if slot.error is not None:
            raise slot.error
        return slot.result

    async def _gather_more(self, batch: list[Slot]) -> None:
        signal: Signal | None = None
        with self._lock:
            short = min(self._last, self._max_batch) - len(batch) - len(self._pending)
            if short > 0:
                signal = self._gathering = Signal()
                self._gather_until = len(self._pending) + short
        if signal is not None and not await signal.wait(self._gather):
            self.gather_timeouts += 1
        with self._lock:
            self._gathering = None
            batch.extend(self._take(self._max_batch - len(batch)))

    def _take(self, most: int | None = None) -> list[Slot]:
        most = self._max_batch if most is None else most
        batch = self._pending[:most]
        del self._pending[:most]
        return batch

    async def _lead(self, batch: list[Slot]) -> None:
        self._loaded = len(batch) > 1
        self._last = len(batch)
        try:
            after = await self._run(batch)
            self.batches += 1
        except BaseException as exc:
            for slot in batch:
                if slot.error is None and slot.result is None:
                    slot.error = self._interrupted(exc)
            self._hand_over(batch)
            raise
        self._promote()
        try:
            if after is not None:
                await after()
        finally:
            self._wake(batch)

    def _abandon(self, slot: Slot) -> None:
        """A cancelled waiter: drop its items if no batch took them, and run the batch it
        may have just been handed (its callers wait for it)."""
        with self._lock:
            if slot in self._pending:
                self._pending.remove(slot)
                return
            handed, slot.batch = slot.batch, None
        if handed:
            with self._lock:
                self._pending[:0] = [other for other in handed if other is not slot]
            self._hand_over([])

    def _hand_over(self, batch: list[Slot]) -> None:
        self._promote()
        self._wake(batch)

    def _promote(self) -> None:
        """Give the lead to the first waiter (with everything waiting), or give it up."""
        with self._lock:
            if self._pending:
                nxt = self._pending[0]
                nxt.batch = self._take()
            else:
                nxt = None
                self._active -= 1
        if nxt is not None:
            nxt.signal.set()

    @staticmethod
    def _wake(batch: list[Slot]) -> None:
        for slot in batch:
            if slot.batch is batch:
                slot.batch = None
            slot.signal.set()
