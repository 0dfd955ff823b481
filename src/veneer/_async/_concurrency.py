"""What differs between the asyncio and the threaded shell, written by hand for each.

Everything else in ``veneer/_async`` is the source of ``veneer/_sync`` (see
``scripts/unasync.py``); this module has a hand-written twin in ``_sync``.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeAlias, TypeVar

__all__ = [
    "EXPIRED",
    "SCHEDULED",
    "Alarm",
    "Background",
    "BackgroundRefreshes",
    "ConnectionSlots",
    "Flight",
    "LeaderGone",
    "Loader",
    "ManyLoader",
    "SourceBulkhead",
    "call_later",
    "call_loader",
    "current_loop",
    "dial",
    "is_our_kind",
    "on_loop_end",
    "send_packed",
    "sleep",
    "spawn",
]

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


class LeaderGone(Exception):
    """The caller doing a shared load was cancelled; its waiters retry on their own."""


class Flight:
    """One in-process load that concurrent misses of a key share (single-flight).

    Futures are made only for waiters: the uncontended miss (the common case)
    allocates nothing but this object.
    """

    __slots__ = ("_done", "_error", "_value", "_waiters", "seq", "started")

    def __init__(self, seq: int = 0, started: float = 0.0) -> None:
        self.seq = seq  # the cache's invalidation counter when the load began
        self.started = started  # monotonic: when it began (waits are bounded by its age)
        self._waiters: list[asyncio.Future[None]] = []
        self._done = False
        self._value: Any = None
        self._error: BaseException | None = None

    def resolve(self, value: Any) -> None:
        self._value = value
        self._finish()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._finish()

    def _finish(self) -> None:
        self._done = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, timeout: float | None = None) -> Any:
        """The shared result; :data:`EXPIRED` if it is not in after ``timeout`` seconds."""
        if not self._done:
            loop = asyncio.get_running_loop()
            waiter = loop.create_future()
            self._waiters.append(waiter)
            timer = None if timeout is None else loop.call_later(max(0.0, timeout), _expire, waiter)
            try:
                await waiter  # a cancelled waiter leaves; the shared load goes on
            finally:
                if timer is not None:
                    timer.cancel()
                if not self._done:
                    self._waiters.remove(waiter)
            if not self._done:
                return EXPIRED
        if self._error is not None:
            raise self._error
        return self._value


EXPIRED: Any = object()
"""What :meth:`Flight.wait` returns when its timeout ran out before the result."""


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


SCHEDULED: Any = object()


class BackgroundRefreshes:
    """Stale-while-revalidate refreshes: background tasks here, inline in the sync shell."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def run(self, refresh: Callable[[], Awaitable[Any]]) -> Any:
        async def run() -> Any:
            return await refresh()

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return SCHEDULED

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def call_later(delay: float, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``fn`` once, ``delay`` seconds from now, in the background."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = _LATER

    def start() -> None:
        task = loop.create_task(fn())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.call_later(delay, start)


_LATER: set[asyncio.Task[None]] = set()
# A forked child runs its own event loop; the parent's tasks are not its own.
os.register_at_fork(after_in_child=_LATER.clear)


class SourceBulkhead:
    """At most ``limit`` loads at once; a caller waits at most ``timeout`` for a slot."""

    def __init__(self, limit: int, timeout: float) -> None:
        self.limit = limit
        self.timeout = timeout
        self.active = 0
        self.waiting = 0
        self.peak = 0
        self._slots = asyncio.Semaphore(limit)

    async def try_acquire(self) -> bool:
        """A slot only if one is free now, ahead of no waiter (a caller whose wait ran out)."""
        if self._slots.locked():
            return False
        await self._slots.acquire()  # free and no one queued: returns without suspending
        self.active += 1
        self.peak = max(self.peak, self.active)
        return True

    async def acquire(self) -> bool:
        if not self._slots.locked():
            await self._slots.acquire()
        else:
            self.waiting += 1
            try:
                async with asyncio.timeout(self.timeout):
                    await self._slots.acquire()
            except TimeoutError:
                return False
            finally:
                self.waiting -= 1
        self.active += 1
        self.peak = max(self.peak, self.active)
        return True

    def release(self) -> None:
        self.active -= 1
        self._slots.release()


class ConnectionSlots(SourceBulkhead):
    """At most ``limit`` connections to one Redis in use at once; a caller waits at most
    ``timeout`` for one to free up (a queue in process, not an error of the server)."""

    def __init__(self, limit: int, timeout: float) -> None:
        super().__init__(limit, timeout)
        self.waits = 0
        self.timeouts = 0

    async def acquire(self) -> bool:
        if self.active >= self.limit:
            self.waits += 1
        if await super().acquire():
            return True
        self.timeouts += 1
        return False


def current_loop() -> object:
    """What connections and background tasks are bound to: the running event loop here
    (the threaded shell has one binding for the life of the process)."""
    return asyncio.get_running_loop()


async def send_packed(connection: Any, packed: bytes) -> None:
    """Write one buffer of commands on a redis-py connection.

    redis-py writes under ``asyncio.wait_for``, which on Python 3.11 returns normally
    when a cancellation lands just as the write completes: the caller's task would
    run on with the cancellation swallowed (issue 20, item 5: a cancelled call that
    returned a value seconds later). The cancellation is honoured here instead.
    """
    task = asyncio.current_task()
    before = task.cancelling() if task is not None else 0
    await connection.send_packed_command([packed], False)
    if task is not None and task.cancelling() > before:
        raise asyncio.CancelledError()


_DIALS: set[asyncio.Task[None]] = set()


async def dial(connection: Any, keep: Callable[[Any], bool]) -> None:
    """Connect a new redis-py connection (TCP, TLS, AUTH, HELLO: several round trips).

    The handshake runs in a task of its own: a caller cancelled meanwhile stops
    waiting at once (redis-py's handshake would swallow the cancellation, as in
    :func:`send_packed`), and the connection, once ready, goes to ``keep`` (the
    pool's free list) for the next caller instead of being thrown away, or is closed
    if ``keep`` refuses it (the pool was closed meanwhile).
    """
    task = asyncio.get_running_loop().create_task(connection.connect())
    _DIALS.add(task)
    task.add_done_callback(_DIALS.discard)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:

        def ready(done: asyncio.Task[None]) -> None:
            if done.cancelled() or done.exception() is not None or keep(connection):
                return
            closing = done.get_loop().create_task(connection.disconnect(nowait=True))
            _DIALS.add(closing)
            closing.add_done_callback(_DIALS.discard)

        task.add_done_callback(ready)
        raise


class Alarm:
    """A sleep that :meth:`ring` cuts short (here a task is cancelled instead: a plain sleep)."""

    async def wait(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def ring(self) -> None:
        return None


_GUARDS: set[asyncio.Task[None]] = set()


def on_loop_end(fn: Callable[[], Awaitable[None]]) -> Callable[[], None]:
    """Run ``fn`` while the running loop shuts down (``asyncio.run`` cancels every task at
    its end, so a task waiting here runs ``fn`` with the loop still alive: connections
    of that loop are closed by it, not left to a loop that is gone). Returns a cancel."""

    async def guard() -> None:
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            if not cancelled:
                await fn()

    cancelled = False
    task = asyncio.get_running_loop().create_task(guard(), name="veneer-loop-guard")
    _GUARDS.add(task)
    task.add_done_callback(_GUARDS.discard)

    def cancel() -> None:
        nonlocal cancelled
        cancelled = True
        if not task.get_loop().is_closed():  # (a loop closed with the task pending)
            task.cancel()

    return cancel
