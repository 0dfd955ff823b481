"""Circuit breaker for one Redis endpoint: stop calling a Redis that keeps failing.

Health is judged over a short window of time slots, not by counting failures.
Each slot is one read deadline long (``slot``, the cache's ``redis_timeout``);
a slot *fails* when calls failed in it and none succeeded, and it is *healthy*
when any call succeeded in it. Calls that were in flight together when Redis
stalled (or when this host paused) time out within one deadline of each other,
so they fill one or two slots, not N: concurrency does not multiply a hiccup.

Closed: calls go through; it opens when, in the last ``window_slots`` slots, at
least ``failures`` slots failed and they are at least as many as the healthy
ones, or at once after ``failures`` refused connections in a row (nothing listens:
no pause explains that). Open: calls are refused at once (no caller waits on a dead or hung Redis).
After a cooldown (``cooldown`` jittered to 0.5x-1x, the same for every probe:
nothing carries over from earlier outages) one *probe* is handed out; the I/O
layer runs it in the background with its own deadline rules (see
``AsyncL2.probe``), so no caller pays for it. Any reply within the read
deadline closes the breaker, whoever saw it: the probe, a call that was still
in flight, or the invalidation channel asking for an early probe
(:meth:`hint_alive`). So once Redis answers again, the breaker closes within one
cooldown plus one probe: that is the ceiling ``docs/outages.md`` states.

No I/O here, and a clock is passed in, so it is tested in virtual time. Every
transition is logged once.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable

from ._random import rng

__all__ = ["BreakerState", "CircuitBreaker"]

log = logging.getLogger("veneer")


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"  # a probe is out


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failures: int = 5,
        slot: float = 0.1,
        window_slots: int = 20,
        cooldown: float = 1.0,
        probe_timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = rng.random,
    ) -> None:
        self.name = name
        self._failures = failures
        self._slot = max(slot, 0.001)
        self._window = max(window_slots, failures)
        self._cooldown = cooldown
        self._probe_timeout = probe_timeout
        self._clock = clock
        self._rand = rand
        self._lock = threading.Lock()
        self.state = BreakerState.CLOSED
        self.opened = 0  # how many times it opened
        self.open_seconds = 0.0  # total time spent not closed, finished periods
        self.probes = 0  # probes handed out
        self._opened_at = 0.0
        self._retry_at = 0.0
        self._probe_started = 0.0
        # Slot ring: index of the slot each position holds, and what was seen in it.
        self._index = [-1] * self._window
        self._failed = [False] * self._window
        self._ok = [False] * self._window
        # Index of the last failing slot; -1 when none is in the window (the hot path
        # then records nothing for a success).
        self._last_failure = -1
        self._refusals = 0  # refused connections in a row

    @property
    def closed(self) -> bool:
        return self.state is BreakerState.CLOSED

    def seconds_open(self) -> float:
        """Total time not closed, including the current open period."""
        if self.state is BreakerState.CLOSED:
            return self.open_seconds
        return self.open_seconds + (self._clock() - self._opened_at)

    def allow(self) -> bool:
        """Whether a call may go to Redis now. Only a closed breaker lets calls through:
        probes are not callers' calls (see :meth:`claim_probe`)."""
        return self.state is BreakerState.CLOSED

    def claim_probe(self) -> bool:
        """Whether the caller should run a probe now (at most one at a time; one that
        never reported, cancelled or lost, expires after ``probe_timeout``)."""
        if self.state is BreakerState.CLOSED:
            return False
        with self._lock:
            now = self._clock()
            if self.state is BreakerState.OPEN:
                if now < self._retry_at:
                    return False
            elif self.state is BreakerState.HALF_OPEN:
                if now - self._probe_started < self._probe_timeout:
                    return False
            else:
                return False
            self._probe_started = now
            self.probes += 1
            self._transition(BreakerState.HALF_OPEN, now)
            return True

    def hint_alive(self) -> None:
        """Redis answered somewhere else (the invalidation channel reconnected or heard a
        reply): make the next probe due now instead of after the cooldown."""
        if self.state is BreakerState.OPEN:
            with self._lock:
                self._retry_at = min(self._retry_at, self._clock())

    def record_success(self) -> None:
        """A reply within the deadline: a healthy slot; closes an open breaker."""
        if self.state is BreakerState.CLOSED:
            if self._last_failure >= 0:
                self._note_success()
            return
        with self._lock:
            if not self.closed:  # (another thread may have closed it meanwhile)
                self._close(self._clock())

    def record_failure(self, *, refused: bool = False) -> None:
        """A connection error or a deadline overrun (ignored while already open).

        ``refused``: a new connection was refused, so nothing listens there now. Unlike
        a timeout (a pause?) or a reset (a pooled socket that predates a restart), that
        is proof each time: ``failures`` refusals in a row open the breaker at once.
        """
        if self.state is not BreakerState.CLOSED:
            return
        with self._lock:
            if not self.closed:
                return
            now = self._clock()
            index = self._mark(now)
            self._failed[index % self._window] = True
            self._last_failure = index
            self._refusals = self._refusals + 1 if refused else 0
            if self._refusals >= self._failures or self._unhealthy(index):
                self._open(now)

    def probe_failed(self) -> None:
        """The probe got no reply within the deadline: wait one more cooldown."""
        with self._lock:
            if self.state is BreakerState.HALF_OPEN:
                self._open(self._clock())

    # ------------------------------------------------------------- internals

    def _note_success(self) -> None:
        with self._lock:
            self._refusals = 0
            index = self._mark(self._clock())
            if index - self._last_failure >= self._window:
                self._last_failure = -1  # the failures left the window
            else:
                self._ok[index % self._window] = True

    def _mark(self, now: float) -> int:
        """The current slot's index, its ring position reset if it held an older slot."""
        index = int(now / self._slot)
        position = index % self._window
        if self._index[position] != index:
            self._index[position] = index
            self._failed[position] = False
            self._ok[position] = False
        return index

    def _unhealthy(self, index: int) -> bool:
        failing = healthy = 0
        for position in range(self._window):
            if index - self._index[position] >= self._window:
                continue  # a slot from before the window
            if self._ok[position]:
                healthy += 1
            elif self._failed[position]:
                failing += 1
        return failing >= self._failures and failing >= healthy

    def _reset_slots(self) -> None:
        self._index = [-1] * self._window
        self._failed = [False] * self._window
        self._ok = [False] * self._window
        self._last_failure = -1
        self._refusals = 0

    def _open(self, now: float) -> None:
        # Jitter (0.5x to 1x) so many processes do not probe a recovering Redis together;
        # the upper end is the recovery ceiling, so the jitter only ever shortens it.
        self._retry_at = now + self._cooldown * (0.5 + 0.5 * self._rand())
        if self.state is BreakerState.CLOSED:
            self.opened += 1
            self._opened_at = now
        self._transition(BreakerState.OPEN, now)

    def _close(self, now: float) -> None:
        self._reset_slots()
        self._transition(BreakerState.CLOSED, now)

    def _transition(self, state: BreakerState, now: float) -> None:
        if state is self.state:
            return
        if state is BreakerState.CLOSED:
            self.open_seconds += now - self._opened_at
        previous, self.state = self.state, state
        # One warning per outage; the probes in between are debug noise.
        if state is BreakerState.OPEN:
            level = logging.WARNING if previous is BreakerState.CLOSED else logging.DEBUG
        else:
            level = logging.INFO if state is BreakerState.CLOSED else logging.DEBUG
        log.log(
            level, "veneer: circuit breaker %s %s -> %s", self.name, previous.value, state.value
        )

    def after_fork(self) -> None:
        """In a forked child: a fresh lock (a parent thread may have held this one), and
        a probe the parent was running is not waited for (its thread is not here)."""
        self._lock = threading.Lock()
        self._probe_started = -self._probe_timeout
