"""Manners for probing a live Redis (audit, doctor): an ops/s budget that backs off.

Every command the audit sends (one pipeline of ``n`` commands is ``n``) first
asks the throttle. Pacing is GCRA-style: a batch may go out at once, the next
one waits until the budget has paid for it, and idle time earns no credit, so
over any window ``W`` at most ``rate * W + one batch`` commands are sent.

The rate itself is AIMD on latency. Every round trip is observed, PINGs and
pipelines alike, against what it should take on an idle server (the best
single round trip seen, plus the best per-command cost times the pipeline's
size). Pipelines matter as much as PINGs: a PING sent right after a pipeline
that waited behind a long command tends to slip in before the next one, so
PINGs alone can miss a server that is blocked most of the time. A slow round
trip halves the rate (down to a floor) and pauses the audit briefly; while
round trips are healthy the rate climbs back by a tenth of the budget per
``ping_interval``. The controller is pure: clock and sleep are injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Throttle"]


class Throttle:
    """Paces commands under ``budget`` ops/s and slows down when round trips slow down."""

    def __init__(
        self,
        budget: float,
        *,
        ping_interval: float = 0.25,
        min_share: float = 0.05,
        slow_factor: float = 4.0,
        slow_margin: float = 0.010,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if budget <= 0:
            raise ValueError("budget must be positive (commands per second)")
        self.budget = float(budget)
        self.rate = self.budget
        self.min_rate = self.budget
        self.ping_interval = ping_interval
        self._floor = self.budget * min_share
        self._slow_factor = slow_factor
        self._slow_margin = slow_margin
        self._clock = clock
        self._sleep = sleep
        self._tat = clock()
        self._last_ping = float("-inf")
        self._last_raise = float("-inf")
        self.commands = 0
        self.backoffs = 0
        self.baseline_rtt: float | None = None  # best single-command round trip
        self.per_command: float | None = None  # best extra cost of one pipelined command
        self.max_rtt: float | None = None  # slowest PING

    def acquire(self, n: int = 1) -> None:
        """Block until ``n`` more commands fit in the budget, then count them as sent."""
        now = self._clock()
        if self._tat > now:
            self._sleep(self._tat - now)
            now = self._clock()
        self._tat = max(self._tat, now) + n / self.rate
        self.commands += n

    def ping_due(self) -> bool:
        return self._clock() - self._last_ping >= self.ping_interval

    def expected(self, commands: int = 1) -> float | None:
        """What a round trip of ``commands`` pipelined commands takes on an idle server."""
        if self.baseline_rtt is None:
            return None
        return self.baseline_rtt + (self.per_command or 0.0) * (commands - 1)

    def slow_threshold(self, commands: int = 1) -> float | None:
        """A round trip slower than this (seconds) means the server is struggling."""
        expected = self.expected(commands)
        if expected is None:
            return None
        return max(expected * self._slow_factor, expected + self._slow_margin)

    def observe_ping(self, rtt: float) -> bool:
        """Feed one PING round trip (seconds); returns True when it caused a back-off."""
        self._last_ping = self._clock()
        self.max_rtt = rtt if self.max_rtt is None else max(self.max_rtt, rtt)
        return self.observe(rtt, 1)

    def observe(self, rtt: float, commands: int = 1) -> bool:
        """Feed one round trip of ``commands`` commands; True when it caused a back-off."""
        threshold = self.slow_threshold(commands)
        # The best round trips seen are the baseline: load can only inflate latency.
        if commands == 1:
            if self.baseline_rtt is None or rtt < self.baseline_rtt:
                self.baseline_rtt = rtt
        elif self.baseline_rtt is not None:
            extra = max(0.0, rtt - self.baseline_rtt) / (commands - 1)
            if self.per_command is None or extra < self.per_command:
                self.per_command = extra
        if threshold is not None and rtt > threshold:
            self.rate = max(self._floor, self.rate / 2)
            self.min_rate = min(self.min_rate, self.rate)
            self.backoffs += 1
            # Give the server a breather as long as the slow round trip itself, capped.
            self._sleep(min(rtt, 2.0))
            now = self._clock()
            self._tat = max(self._tat, now)
            self._last_raise = now
            return True
        now = self._clock()
        if now - self._last_raise >= self.ping_interval:
            self.rate = min(self.budget, self.rate + self.budget / 10)
            self._last_raise = now
        return False
