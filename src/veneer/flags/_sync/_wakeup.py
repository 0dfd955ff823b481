"""What differs between the asyncio and the threaded flags worker, written by hand for each.

The threaded twin of ``flags/_async/_wakeup.py``; everything else in
``flags/_sync`` is generated from ``flags/_async`` (``scripts/unasync.py``).
"""

from __future__ import annotations

import threading

__all__ = ["RESTARTS_IN_CHILD", "Wakeup"]

# A forked child has only the forking thread: the worker thread is started again there
# (gunicorn --preload forks after the app built its clients).
RESTARTS_IN_CHILD = True


class Wakeup:
    """A wake-up call for the worker thread: ``set()`` from any thread, ``wait(timeout)``
    in the worker."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        """Whether ``set()`` was called (before or during the wait); clears it."""
        woke = self._event.wait(max(0.0, timeout))
        self._event.clear()
        return woke
