"""What waiting means in the asyncio shell; ``_sync/_waiting.py`` is its hand-written twin."""

from __future__ import annotations

import asyncio

__all__ = ["Signal"]


class Signal:
    """A one-shot wake-up for one waiting caller (an ``asyncio.Event`` here)."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self, timeout: float | None = None) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self._event.wait()
        except TimeoutError:
            return False
        return True
