"""The audit's manners: a global commands-per-second budget that backs off when Redis slows down.

Every command the audit sends (one pipeline of ``n`` commands is ``n``) first
asks the throttle. Pacing is GCRA-style: a batch may go out at once, the next
one waits until the budget has paid for it, and idle time earns no credit, so
over any window ``W`` at most ``rate * W + one batch`` commands are sent.

The rate itself is AIMD on PING latency: when a PING takes clearly longer than
the best one seen, the rate halves (down to a floor) and the audit pauses
briefly; each healthy PING gives back a tenth of the budget. The controller is
pure: the clock and the sleep are injected, so it is tested without a server.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Throttle"]


class Throttle:
    """Paces commands under ``budget`` ops/s and slows down when PING latency rises."""

    def __init__(
        self,
        budget: float,
        *,
        ping_interval: float = 0.25,
        min_share: float = 0.05,
        slow_factor: float = 4.0,
        slow_margin: float = 0.005,
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
        self.commands = 0
        self.backoffs = 0
        self.baseline_rtt: float | None = None
        self.max_rtt: float | None = None

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

    def slow_threshold(self) -> float | None:
        """A PING slower than this (seconds) means the server is struggling."""
        if self.baseline_rtt is None:
            return None
        return max(self.baseline_rtt * self._slow_factor, self.baseline_rtt + self._slow_margin)

    def observe_ping(self, rtt: float) -> bool:
        """Feed one PING round trip (seconds); returns True when it caused a back-off."""
        self._last_ping = self._clock()
        self.max_rtt = rtt if self.max_rtt is None else max(self.max_rtt, rtt)
        threshold = self.slow_threshold()
        # The best round trip seen is the baseline: latency can only be inflated by load.
        if self.baseline_rtt is None or rtt < self.baseline_rtt:
            self.baseline_rtt = rtt
        if threshold is not None and rtt > threshold:
            self.rate = max(self._floor, self.rate / 2)
            self.min_rate = min(self.min_rate, self.rate)
            self.backoffs += 1
            # Give the server a breather as long as the slow PING itself, capped.
            self._sleep(min(rtt, 2.0))
            self._tat = max(self._tat, self._clock())
            return True
        self.rate = min(self.budget, self.rate + self.budget / 10)
        return False
