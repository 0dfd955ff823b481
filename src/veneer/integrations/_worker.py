"""The thread plumbing the relay and the listener share: start, stop, and a stop flag."""

from __future__ import annotations

import abc
import threading
from typing import Self

__all__ = ["ThreadedWorker"]


class ThreadedWorker(abc.ABC):
    """A ``run_forever`` loop that can also run in a daemon thread of this process.

    Subclasses implement ``run_forever`` and watch ``self._stop``.
    """

    _thread_name = "veneer-worker"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @abc.abstractmethod
    def run_forever(self) -> None:
        """The loop; it returns once ``self._stop`` is set."""

    def start(self) -> Self:
        """Run :meth:`run_forever` in a daemon thread of this process."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(
                target=self.run_forever, name=self._thread_name, daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop (the pass in progress finishes) and wait for the thread."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
