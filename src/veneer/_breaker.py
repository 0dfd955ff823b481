"""Circuit breaker for one Redis endpoint: stop calling a Redis that keeps failing.

Closed: calls go through; it opens after ``failures`` consecutive failures, or
when at least ``min_calls`` calls in the current ``window`` failed at a share of
``rate`` or more. Open: calls are refused at once (no caller waits on a dead or
hung Redis) until a jittered cooldown has passed; then one call is let through
as a probe (half-open). The probe's success closes the breaker; its failure
opens it again with a doubled cooldown (up to ``max_cooldown``).

No I/O here: the caller reports outcomes. Every transition is logged once.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
import time
from collections.abc import Callable

__all__ = ["BreakerState", "CircuitBreaker"]

log = logging.getLogger("veneer")


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failures: int = 5,
        cooldown: float = 1.0,
        max_cooldown: float = 10.0,
        window: float = 10.0,
        rate: float = 0.5,
        min_calls: int = 20,
        probe_timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.name = name
        self._failures = failures
        self._cooldown = cooldown
        self._max_cooldown = max_cooldown
        self._window = window
        self._rate = rate
        self._min_calls = min_calls
        self._probe_timeout = probe_timeout
        self._clock = clock
        self._rand = rand
        self._lock = threading.Lock()
        self.state = BreakerState.CLOSED
        self.opened = 0  # how many times it opened
        self.open_seconds = 0.0  # total time spent not closed, finished periods
        self._opened_at = 0.0
        self._retry_at = 0.0
        self._next_cooldown = cooldown
        self._probe_started = 0.0
        self._consecutive = 0
        self._window_start = clock()
        self._window_calls = 0
        self._window_failures = 0

    @property
    def closed(self) -> bool:
        return self.state is BreakerState.CLOSED

    def seconds_open(self) -> float:
        """Total time not closed, including the current open period."""
        if self.state is BreakerState.CLOSED:
            return self.open_seconds
        return self.open_seconds + (self._clock() - self._opened_at)

    def allow(self) -> bool:
        """Whether a call may go to Redis now (CLOSED answers without a lock)."""
        if self.state is BreakerState.CLOSED:
            return True
        with self._lock:
            now = self._clock()
            if self.state is BreakerState.OPEN:
                if now < self._retry_at:
                    return False
                self._transition(BreakerState.HALF_OPEN, now)
                self._probe_started = now
                return True
            if self.state is BreakerState.HALF_OPEN:
                # One probe at a time; a probe that never reported (cancelled) expires.
                if now - self._probe_started >= self._probe_timeout:
                    self._probe_started = now
                    return True
                return False
            return True

    def record_success(self) -> None:
        if self.state is BreakerState.CLOSED:
            self._consecutive = 0
            self._count(failed=False)
            return
        with self._lock:
            if self.state is BreakerState.HALF_OPEN:
                self._next_cooldown = self._cooldown
                self._consecutive = 0
                self._reset_window(self._clock())
                self._transition(BreakerState.CLOSED, self._clock())

    def record_failure(self) -> None:
        with self._lock:
            now = self._clock()
            if self.state is BreakerState.HALF_OPEN:
                self._next_cooldown = min(self._next_cooldown * 2, self._max_cooldown)
                self._open(now)
                return
            if self.state is BreakerState.OPEN:
                return
            self._consecutive += 1
            self._count(failed=True)
            too_many = self._consecutive >= self._failures
            calls = self._window_calls
            too_often = calls >= self._min_calls and self._window_failures >= self._rate * calls
            if too_many or too_often:
                self._open(now)

    def _count(self, *, failed: bool) -> None:
        now = self._clock()
        if now - self._window_start >= self._window:
            self._reset_window(now)
        self._window_calls += 1
        if failed:
            self._window_failures += 1

    def _reset_window(self, now: float) -> None:
        self._window_start = now
        self._window_calls = 0
        self._window_failures = 0

    def _open(self, now: float) -> None:
        # Jitter (0.5x to 1.5x) so many processes do not probe a recovering Redis together.
        self._retry_at = now + self._next_cooldown * (0.5 + self._rand())
        if self.state is BreakerState.CLOSED:
            self.opened += 1
            self._opened_at = now
        self._transition(BreakerState.OPEN, now)

    def _transition(self, state: BreakerState, now: float) -> None:
        if state is self.state:
            return
        if state is BreakerState.CLOSED:
            self.open_seconds += now - self._opened_at
        previous, self.state = self.state, state
        level = logging.WARNING if state is BreakerState.OPEN else logging.INFO
        log.log(
            level, "veneer: circuit breaker %s %s -> %s", self.name, previous.value, state.value
        )
