"""veneer's own random source, for jitter, sampling and non-secret tokens.

A library should not draw from the application's ``random`` module: an application
that seeds it for a reproducible run would see veneer's background threads (reconnect
back-off, lease polling, sender ids) move its sequence, and property-testing tools
that check the global state around each draw (Hypothesis) report a flaky test when
one of those threads draws between two checks. Nothing here is a secret: session
tokens come from ``secrets``.
"""

from __future__ import annotations

import os
import random

__all__ = ["rng"]

rng = random.Random()

# Forked workers (gunicorn --preload) start with the parent's state; reseeded, they do
# not jitter in step, as the ``random`` module does for its own instance.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=rng.seed)
