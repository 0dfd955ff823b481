"""GCRA, the generic cell rate algorithm: the whole decision, with no clock and no I/O.

A subject's state is one number, its *delay*: how far its theoretical arrival
time (TAT) runs ahead of now, in integer microseconds (0 or less: the bucket is
full). A hit of ``cost`` moves the TAT by ``cost * interval``; it is allowed
when the TAT stays within ``tolerance`` (``burst * interval``) of now. A refused
hit changes nothing, so refusals cost the subject nothing and a shadow-mode
refusal is the refusal enforcement would have made.

The Lua script in ``_script.py`` mirrors :func:`decide` line for line (it only
adds reading and writing the delay); ``tests/ratelimit/test_gcra.py`` checks
both against a virtual clock. Integers throughout: a Lua double holds them
exactly up to 2**53 microseconds.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Verdict", "decide"]


class Verdict(NamedTuple):
    allowed: bool
    delay: int
    """The delay after this hit (unchanged when refused): also the time until the bucket is full."""
    remaining: int
    """Hits of cost 1 that would be allowed right after this one."""
    retry_after: int
    """0 when allowed; else microseconds until the same hit would be allowed."""


def decide(delay: int, cost: int, interval: int, tolerance: int) -> Verdict:
    """The verdict on a hit of ``cost`` for a subject whose TAT is ``delay`` us ahead of now."""
    base = delay if delay > 0 else 0
    new = base + cost * interval
    if new <= tolerance:
        return Verdict(True, new, (tolerance - new) // interval, 0)
    return Verdict(False, base, (tolerance - base) // interval, new - tolerance)
