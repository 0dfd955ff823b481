"""Keeping the leases this process holds alive while their loads run (``_sync`` twin generated).

A lease lives ``lease_heartbeat`` (0.5 s by default) unless renewed. The keeper
renews, every third of that, the leases of the loads still running here, in one
round trip per node, for at most ``lease_ttl`` in all. A lease nobody renews was
taken by a call that gave up: its command timed out on the client but ran when
Redis resumed (SIGSTOP, a slow server), its task was cancelled, or its process
died. Such a lease blocks other callers for at most one heartbeat, not
``lease_ttl`` (issue 20, item 1).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable

from .._fork import park
from ._concurrency import Alarm, Background, current_loop, spawn
from ._redis_io import AsyncL2

__all__ = ["AsyncLeaseKeeper"]

_monotonic = time.monotonic

# value key, lease key, token, mark, when it was taken
_Held = tuple[bytes, bytes, bytes, bytes, float]


class AsyncLeaseKeeper:
    def __init__(
        self,
        l2: AsyncL2,
        *,
        heartbeat: float,
        longest: float,
        errors: tuple[type[BaseException], ...],
        on_error: Callable[[BaseException], object],
    ) -> None:
        self._l2 = l2
        self._period = heartbeat / 3
        self._px = max(1, int(heartbeat * 1000))
        self._longest = longest
        self._errors = errors
        self._on_error = on_error
        self._held: dict[int, _Held] = {}
        self._ids = itertools.count()
        self._worker: Background | None = None
        self._alarm = Alarm()
        self._bound: object = None
        self._pid = os.getpid()
        self.renewals = 0  # leases renewed (tests count them)

    def hold(self, value_key: bytes, lease_key: bytes, token: bytes, mark: bytes) -> int:
        """Renew this lease until :meth:`drop`; returns the handle to drop it with."""
        handle = next(self._ids)
        self._held[handle] = (value_key, lease_key, token, mark, _monotonic())
        if self._worker is None or self._bound is not current_loop() or self._pid != os.getpid():
            # First lease, or the old worker belongs to another event loop (or process).
            self._bound = current_loop()
            self._pid = os.getpid()
            self._alarm = Alarm()
            self._worker = spawn(self._run, "veneer-lease-keeper")
        return handle

    def drop(self, handle: int) -> None:
        self._held.pop(handle, None)

    async def _run(self) -> None:
        alarm = self._alarm
        while True:
            await alarm.wait(self._period)
            worker = self._worker
            if worker is None or worker.stopping or alarm is not self._alarm:
                return  # closed, or replaced by the worker of another loop
            now = _monotonic()
            # Leases taken in the last half period were taken with a full heartbeat.
            due = [
                held[:4]
                for held in list(self._held.values())
                if self._period / 2 <= now - held[4] < self._longest
            ]
            if due:
                try:
                    await self._l2.renew_leases(due, self._px)
                    self.renewals += len(due)
                except self._errors as exc:
                    self._on_error(exc)  # the next beat tries again, if the lease lives

    async def close(self) -> None:
        worker, self._worker = self._worker, None
        self._held.clear()
        if worker is not None and self._bound is current_loop() and self._pid == os.getpid():
            await worker.stop(self._interrupt)

    async def _interrupt(self) -> None:
        self._alarm.ring()

    def after_fork(self) -> None:
        """The parent's loads are not this process's: nothing to renew here."""
        park(self._worker)
        self._worker = None
        self._held = {}
