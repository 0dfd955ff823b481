"""The circuit breaker's view of health, in virtual time (no servers, no sleeping)."""

from __future__ import annotations

from veneer._breaker import BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def breaker(clock: Clock, rand: float = 1.0) -> CircuitBreaker:
    # 50 ms slots (redis_timeout=0.05), 5 failing slots open it, 1 s cooldown.
    return CircuitBreaker(
        "test", failures=5, slot=0.05, cooldown=1.0, probe_timeout=2.0, clock=clock,
        rand=lambda: rand,
    )  # fmt: skip


def fail_for(b: CircuitBreaker, clock: Clock, seconds: float, calls: int = 12) -> None:
    """A Redis that answers nothing for ``seconds``: ``calls`` callers each fail once per
    deadline (50 ms), as callers with a read deadline do against a hung server."""
    for _ in range(round(seconds / 0.05)):
        clock.advance(0.05)
        for _ in range(calls):
            b.record_failure()


def test_concurrent_timeouts_of_one_stall_do_not_open_it() -> None:
    """Twelve calls in flight together that time out within 44 ms are one failing moment,
    not twelve consecutive failures; the replies that follow count as health."""
    clock = Clock()
    b = breaker(clock)
    for _ in range(12):
        clock.advance(0.004)
        b.record_failure()
    for _ in range(8):
        clock.advance(0.004)
        b.record_success()
    assert b.state is BreakerState.CLOSED
    # The same stall again and again, with replies in between: still no outage.
    for _ in range(10):
        clock.advance(0.2)
        for _ in range(12):
            b.record_failure()
        clock.advance(0.01)
        b.record_success()
    assert b.state is BreakerState.CLOSED and b.opened == 0


def test_a_hung_redis_opens_it_within_five_deadlines() -> None:
    """No reply at all for five read deadlines opens it, whatever the number of callers."""
    clock = Clock()
    b = breaker(clock)
    fail_for(b, clock, 0.20)
    assert b.state is BreakerState.CLOSED
    fail_for(b, clock, 0.05)
    assert b.state is BreakerState.OPEN and b.opened == 1
    clock2 = Clock()
    b2 = breaker(clock2)
    fail_for(b2, clock2, 0.25, calls=1)
    assert b2.state is BreakerState.OPEN


def test_mostly_failing_opens_it_even_with_some_replies() -> None:
    """Failures in most slots of the window open it although a few slots saw replies."""
    clock = Clock()
    b = breaker(clock)
    for i in range(12):
        clock.advance(0.05)
        if i % 3 == 0:
            b.record_success()
        b.record_failure()
    assert b.state is BreakerState.OPEN


def test_failures_older_than_the_window_are_forgotten() -> None:
    """Four failing slots, a quiet second, four more: never five within one window."""
    clock = Clock()
    b = breaker(clock)
    for _ in range(5):
        fail_for(b, clock, 0.2)
        clock.advance(1.1)
        b.record_success()
    assert b.state is BreakerState.CLOSED


def test_open_refuses_calls_and_hands_out_one_probe_per_cooldown() -> None:
    """Open: no caller is let through; after the cooldown one probe, not two."""
    clock = Clock()
    b = breaker(clock, rand=1.0)  # the longest cooldown: 1 s
    fail_for(b, clock, 0.25)
    assert not b.allow() and not b.claim_probe()
    clock.advance(0.99)
    assert not b.claim_probe()
    clock.advance(0.02)
    assert b.claim_probe() and b.state is BreakerState.HALF_OPEN
    assert not b.claim_probe() and not b.allow()


def test_a_late_reply_closes_it() -> None:
    """A reply that arrives while open (a call that was still in flight) closes it: the
    server answers, whatever opened the breaker."""
    clock = Clock()
    b = breaker(clock)
    fail_for(b, clock, 0.25)
    assert b.state is BreakerState.OPEN
    clock.advance(0.01)
    b.record_success()
    assert b.state is BreakerState.CLOSED and b.allow()


def test_backoff_does_not_grow_nor_carry_over_between_outages() -> None:
    """Failed probes never lengthen the cooldown, so recovery after a long outage, or
    after one outage right after another, is within one cooldown plus one probe."""
    clock = Clock()
    b = breaker(clock, rand=1.0)
    fail_for(b, clock, 0.25)
    for _ in range(20):  # 20 s of failed probes
        clock.advance(1.0)
        assert b.claim_probe()
        b.probe_failed()
    clock.advance(1.0)
    assert b.claim_probe()
    b.record_success()  # Redis is back: the probe succeeds one cooldown after
    assert b.state is BreakerState.CLOSED
    clock.advance(0.3)
    fail_for(b, clock, 0.25)  # the next outage
    assert b.state is BreakerState.OPEN
    clock.advance(1.0)
    assert b.claim_probe()


def test_jitter_only_shortens_the_cooldown() -> None:
    """Jitter spreads probes over 0.5x-1x the cooldown: never later than the ceiling."""
    for rand in (0.0, 0.5, 0.999):
        clock = Clock()
        b = breaker(clock, rand=rand)
        fail_for(b, clock, 0.25)
        clock.advance(0.5 * 1.0 - 0.001)
        assert not b.claim_probe()
        clock.advance(0.5 + 0.002)
        assert b.claim_probe()


def test_a_sign_of_life_makes_the_probe_due_now() -> None:
    """The invalidation channel hearing Redis (hint_alive) brings the probe forward."""
    clock = Clock()
    b = breaker(clock)
    fail_for(b, clock, 0.25)
    clock.advance(0.05)
    assert not b.claim_probe()
    b.hint_alive()
    assert b.claim_probe()


def test_a_probe_that_never_reports_expires() -> None:
    """A probe whose task died is replaced after probe_timeout, not waited on forever."""
    clock = Clock()
    b = breaker(clock)
    fail_for(b, clock, 0.25)
    clock.advance(1.0)
    assert b.claim_probe()
    clock.advance(1.9)
    assert not b.claim_probe()
    clock.advance(0.2)
    assert b.claim_probe()
    assert b.probes == 2


def test_open_time_is_counted() -> None:
    """seconds_open covers every period not closed, the current one included."""
    clock = Clock()
    b = breaker(clock)
    fail_for(b, clock, 0.25)
    clock.advance(2.0)
    assert abs(b.seconds_open() - 2.0) < 1e-9
    b.record_success()
    clock.advance(5.0)
    assert abs(b.seconds_open() - 2.0) < 1e-9


def test_refused_connections_open_it_at_once() -> None:
    """Refused connections are proof that nothing listens: five in a row open it within
    one slot; a reply in between starts the count again."""
    clock = Clock()
    b = breaker(clock)
    for _ in range(4):
        b.record_failure(refused=True)
    b.record_success()
    for _ in range(4):
        b.record_failure(refused=True)
    assert b.state is BreakerState.CLOSED
    b.record_failure(refused=True)
    assert b.state is BreakerState.OPEN
