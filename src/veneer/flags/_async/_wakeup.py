"""What differs between the asyncio and the threaded flags worker, written by hand for each.

The asyncio twin of ``flags/_sync/_wakeup.py``; everything else in
``flags/_async`` is the source of ``flags/_sync`` (``scripts/unasync.py``).
"""

from __future__ import annotations

import asyncio

__all__ = ["RESTARTS_IN_CHILD", "Wakeup"]

# A forked child has no event loop of the parent's: an asyncio client is started again
# by ``await flags.start()`` in the child (an ASGI lifespan does that in every worker).
RESTARTS_IN_CHILD = False


class Wakeup:
    """A wake-up call for the worker: ``set()`` from the worker's loop (the subscriber
    task, an after-commit hook), ``await wait(timeout)`` in the worker."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self, timeout: float) -> bool:
        """Whether ``set()`` was called (before or during the wait); clears it."""
        try:
            async with asyncio.timeout(max(0.0, timeout)):
                await self._event.wait()
        except TimeoutError:
            return False
        finally:
            self._event.clear()
        return True
