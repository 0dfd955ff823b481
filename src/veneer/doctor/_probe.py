"""One connection the doctor measures through: every command paced, counted and timed.

The target's probe goes through a ``Throttle`` at ``--budget`` commands per second
(the audit's pacing, shared) and a second one at ``--bandwidth`` bytes per second
for payloads; PINGs feed the throttle's back-off, so a struggling server slows the
doctor down. Payloads are ``ECHO`` arguments: nothing is written and no value is
read, yet the reply carries as many bytes as a ``GET`` of that size.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import redis

from .._throttle import Throttle

__all__ = ["Probe"]


class Probe:
    """Paced, counted commands on one client; ``watch`` lets slow PINGs back the rate off."""

    def __init__(
        self, client: redis.Redis, throttle: Throttle, bandwidth: Throttle, *, watch: bool
    ) -> None:
        self.client = client
        self.throttle = throttle
        self.bandwidth = bandwidth
        self.watch = watch
        self.calls: Counter[str] = Counter()  # per command, as INFO commandstats names them
        self.sent_at: list[float] = []  # when each command left (for the busiest second)
        self.payload_bytes = 0

    @property
    def commands(self) -> int:
        return self.throttle.commands

    def _count(self, name: str, n: int = 1) -> None:
        self.throttle.acquire(n)
        self.calls[name] += n
        now = time.monotonic()
        self.sent_at.extend([now] * n)

    def ping(self) -> float:
        """One PING; returns its round trip in seconds."""
        self._count("ping")
        started = time.perf_counter()
        self.client.ping()
        rtt = time.perf_counter() - started
        if self.watch:
            self.throttle.observe_ping(rtt)
        return rtt

    def info(self, section: str) -> dict[str, Any]:
        self._count("info")
        return dict(self.client.info(section))

    def echo(self, payload: bytes) -> float:
        """One reply of ``len(payload)`` bytes (a GET of that size); round trip in seconds."""
        self.bandwidth.acquire(2 * len(payload))  # the payload travels both ways
        self._count("echo")
        started = time.perf_counter()
        reply = self.client.execute_command("ECHO", payload)  # type: ignore[no-untyped-call]
        elapsed = time.perf_counter() - started
        self._check(reply, payload)
        self.payload_bytes += 2 * len(payload)
        return elapsed

    def echo_batch(self, payload: bytes, n: int) -> float:
        """``n`` replies of ``len(payload)`` bytes in one round trip (an MGET of that size)."""
        self.bandwidth.acquire(2 * len(payload) * n)
        self._count("echo", n)
        pipe = self.client.pipeline(transaction=False)
        for _ in range(n):
            pipe.execute_command("ECHO", payload)  # type: ignore[no-untyped-call]
        started = time.perf_counter()
        replies = pipe.execute()
        elapsed = time.perf_counter() - started
        for reply in replies:
            self._check(reply, payload)
        self.payload_bytes += 2 * len(payload) * n
        return elapsed

    @staticmethod
    def _check(reply: object, payload: bytes) -> None:
        # A proxy that truncates or rewrites replies would make every figure wrong.
        if not isinstance(reply, bytes) or len(reply) != len(payload):
            raise redis.ResponseError("ECHO returned a different payload: figures not reliable")

    def busiest_second(self) -> int:
        """Most commands sent within any one second."""
        worst, lo = 0, 0
        times = self.sent_at
        for hi, t in enumerate(times):
            while t - times[lo] >= 1.0:
                lo += 1
            worst = max(worst, hi - lo + 1)
        return worst
