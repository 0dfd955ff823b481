"""What waiting means in the threaded shell; the hand-written twin of ``_async/_waiting.py``."""

from __future__ import annotations

import threading

__all__ = ["Signal"]


class Signal:
    """A one-shot wake-up for one waiting caller (a ``threading.Event`` here)."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)
