"""What differs between the asyncio and the threaded shell, written by hand for each.

Everything else in ``veneer/_async`` is the source of ``veneer/_sync`` (see
``scripts/unasync.py``); this module has a hand-written twin in ``_sync``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeAlias, TypeVar

__all__ = ["Background", "Loader", "ManyLoader", "call_loader", "is_our_kind", "sleep", "spawn"]

T = TypeVar("T")

Loader: TypeAlias = Callable[[], Awaitable[T] | T]
ManyLoader: TypeAlias = Callable[[list[str]], Awaitable[Any] | Any]


async def call_loader(loader: Callable[[], Any]) -> Any:
    """Run a loader; the async front accepts plain functions and coroutine functions alike."""
    result = loader()
    if inspect.isawaitable(result):
        result = await result
    return result


def is_our_kind(fn: Callable[..., Any]) -> bool:
    """Whether ``@cached`` on this front can wrap ``fn`` (async front: coroutine functions)."""
    return inspect.iscoroutinefunction(fn)


KIND_HINT = "AsyncCache.cached wraps 'async def' functions; use Cache.cached for plain ones"


async def sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


class Background:
    """A long-running helper: an asyncio task here, a daemon thread in the sync shell."""

    def __init__(self, run: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        self.stopping = False
        self._task: asyncio.Task[None] = asyncio.get_running_loop().create_task(run(), name=name)

    async def stop(self, interrupt: Callable[[], Awaitable[None]] | None = None) -> None:
        self.stopping = True
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        if interrupt is not None:
            await interrupt()


def spawn(run: Callable[[], Coroutine[Any, Any, None]], name: str) -> Background:
    return Background(run, name)
