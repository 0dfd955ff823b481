"""What a reachable Redis refuses to do, learnt from its answers (pure: no I/O).

A refusal is an answer, not an outage: Redis that is out of memory with
``noeviction`` still serves GETs, and an ACL user without ``EVALSHA`` or
``PUBLISH`` can still read and write values. The breaker must not open on them
(``_redis_io`` counts only connection errors and timeouts), and the cache should
keep doing what still works instead of treating the whole of Redis as down.

Three capabilities are tracked, each learnt from the error redis-py raises for it
(``ResponseError`` subclasses, never ``ConnectionError``):

- ``writes``: ``OOM`` (``maxmemory`` reached, nothing to evict), or ``NOPERM`` on
  a key or a write command (a read-only ACL).
- ``scripts``: ``NOPERM`` on ``EVAL``, ``EVALSHA``, ``SCRIPT`` or ``FCALL``.
- ``publish``: ``NOPERM`` on ``PUBLISH`` / ``SPUBLISH`` or on the channel.

A refused capability is tried again at most once per ``retry_after`` seconds
per process (the first caller after the window tries; the others skip it), so
a full Redis is not hammered with writes it will refuse; the first success
clears it. Warnings are rate-limited per capability.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Final

from redis.exceptions import NoPermissionError, OutOfMemoryError, ResponseError

__all__ = ["PUBLISH", "SCRIPTS", "WRITES", "Refusals", "StillRefused", "classify", "describe"]

WRITES: Final = "writes"
SCRIPTS: Final = "scripts"
PUBLISH: Final = "publish"

_SCRIPT_COMMANDS = frozenset({"eval", "evalsha", "eval_ro", "evalsha_ro", "script", "fcall"})
_PUBLISH_COMMANDS = frozenset({"publish", "spublish"})
# "NOPERM this user has no permissions to run the 'evalsha' command" (7.0), "NOPERM User
# u has no permissions to run the 'script|load' command" (7.2): the command's name.
_COMMAND = re.compile(r"run the '([a-z_]+)")

_WHAT: Final = {
    WRITES: "Redis refuses writes",
    SCRIPTS: "Redis refuses scripts (EVAL/EVALSHA)",
    PUBLISH: "Redis refuses PUBLISH",
}
_CONSEQUENCE: Final = {
    WRITES: (
        "values already in Redis are still read with GET; new values are kept in "
        "process only (l1_ttl) and writes are retried once a second"
    ),
    SCRIPTS: (
        "leases and fills go on without Lua (GET, SET NX, WATCH/MULTI); background "
        "refreshes of stale entries are off"
    ),
    PUBLISH: (
        "other processes do not hear invalidations: their in-process copies live "
        "up to l1_ttl; invalidate() returns False"
    ),
}


class StillRefused(ResponseError):
    """Not sent: ``capability`` was refused within its retry window, and the operation
    cannot do without it (a stamp that does not exist yet cannot be created)."""

    def __init__(self, capability: str, reason: str) -> None:
        super().__init__(reason)
        self.capability = capability


def classify(exc: BaseException) -> str | None:
    """The capability Redis refused with ``exc`` (an error reply), or None if it is not
    a refusal (a connection error, a timeout, a script's own bug, a bad command)."""
    if not isinstance(exc, ResponseError):
        return None
    if isinstance(exc, StillRefused):
        return exc.capability
    text = str(exc)
    lowered = text.lower()
    if isinstance(exc, OutOfMemoryError) or text.startswith("OOM") or "maxmemory" in lowered:
        return WRITES
    if isinstance(exc, NoPermissionError) or text.startswith("NOPERM") or "can't access" in lowered:
        found = _COMMAND.search(lowered)
        command = found.group(1).split("|")[0] if found else ""
        if command in _SCRIPT_COMMANDS:
            return SCRIPTS
        if command in _PUBLISH_COMMANDS or "channel" in lowered:
            return PUBLISH
        # A key it may not access, or a write command it may not run: a read-only user
        # (a user that cannot even GET has no cache at all; check() shows that).
        return WRITES
    return None


def describe(capability: str, exc: BaseException | str) -> str:
    """One sentence for logs and ``check()``: what is refused, why, and what still works."""
    return f"{_WHAT[capability]} ({exc}): {_CONSEQUENCE[capability]}"


class Refusals:
    """The capabilities one cache's Redis refuses now, with their retry windows."""

    __slots__ = (
        "_clock",
        "_last_warned",
        "_retry",
        "_until",
        "_warn_every",
        "errors",
        "scripts_until",
        "writes_until",
    )

    def __init__(
        self,
        *,
        retry_after: float = 1.0,
        warn_every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._retry = retry_after
        self._warn_every = warn_every
        self._clock = clock
        # Until when (monotonic) each refused capability is not tried again.
        self._until: dict[str, float] = {}
        self._last_warned: dict[str, float] = {}
        # What Redis answered, per refused capability (the error's text).
        self.errors: dict[str, str] = {}
        # The hot path's checks, plain floats (0.0: not refused): a miss reads them before
        # taking its lease.
        self.writes_until = 0.0
        self.scripts_until = 0.0

    def refused(self, capability: str, exc: BaseException | str) -> str | None:
        """Record a refusal; the warning to log, or None when one was logged recently."""
        now = self._clock()
        if not isinstance(exc, StillRefused):  # (one not sent does not move the window)
            self._until[capability] = now + self._retry
            self._publish(capability)
            self.errors[capability] = str(exc)
        message = describe(capability, self.errors.get(capability, str(exc)))
        last = self._last_warned.get(capability)
        if last is not None and now - last < self._warn_every:
            return None
        self._last_warned[capability] = now
        return message

    def allows(self, capability: str) -> bool:
        """Whether to try ``capability`` now: yes unless it was refused within the retry
        window. The first caller after the window is let through (and the window starts
        again, so concurrent callers do not all try)."""
        until = self._until.get(capability)
        if until is None:
            return True
        now = self._clock()
        if now < until:
            return False
        self._until[capability] = now + self._retry
        self._publish(capability)
        return True

    def refusing(self, capability: str) -> bool:
        """Whether ``capability`` was refused and has not worked since."""
        return capability in self._until

    def accepted(self, capability: str) -> None:
        """``capability`` worked: Redis takes it again."""
        if self._until.pop(capability, None) is not None:
            self.errors.pop(capability, None)
            self._publish(capability)

    def _publish(self, capability: str) -> None:
        """Mirror a window in the attribute the hot path reads."""
        until = self._until.get(capability, 0.0)
        if capability == WRITES:
            self.writes_until = until
        elif capability == SCRIPTS:
            self.scripts_until = until

    def degraded(self) -> tuple[str, ...]:
        """The refused capabilities, in a stable order (for ``stats().degraded``)."""
        return tuple(c for c in (WRITES, SCRIPTS, PUBLISH) if c in self._until)

    def reasons(self) -> tuple[str, ...]:
        """One sentence per refused capability (for ``check()``)."""
        return tuple(describe(c, self.errors.get(c, "refused")) for c in self.degraded())
