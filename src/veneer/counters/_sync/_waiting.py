"""What waiting means in the threaded shell; the hand-written twin of ``_async/_waiting.py``."""

from __future__ import annotations

import threading

__all__ = ["Signal"]


class Signal:
    """A one-shot wake-up for one waiting caller: a bare lock, taken at birth and released
    by ``set``. Every increment of a group commit creates, waits on and sets one, and a
    ``threading.Event`` (a Condition, a second lock per wait, a waiter list) costs several
    times as much CPU for the same wake-up."""

    __slots__ = ("_is_set", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._is_set = False

    def set(self) -> None:
        if self._is_set:
            return
        self._is_set = True
        try:
            self._lock.release()
        except RuntimeError:  # a second, concurrent set: already released
            pass

    def is_set(self) -> bool:
        return self._is_set

    def wait(self, timeout: float | None = None) -> bool:
        """True once set (at once if it is); False after ``timeout`` seconds. One waiter."""
        if self._is_set:
            return True
        # The lock stays taken after a wake-up: the signal is set for good, and a later
        # wait returns at the check above.
        return self._lock.acquire(timeout=-1 if timeout is None else timeout) or self._is_set
