"""What differs between the asyncio and the threaded shell, written by hand for each.

Everything else in ``veneer/_sync`` is generated from ``veneer/_async`` by
``scripts/unasync.py``; this module is the hand-written twin of
``veneer/_async/_concurrency.py``.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections import deque
from collections.abc import Callable
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

Loader: TypeAlias = Callable[[], T]
ManyLoader: TypeAlias = Callable[[list[str]], Any]


def call_loader(loader: Callable[[], Any]) -> Any:
    return loader()


def is_our_kind(fn: Callable[..., Any]) -> bool:
    """Whether ``@cached`` on this front can wrap ``fn`` (sync front: plain functions)."""
    return not inspect.iscoroutinefunction(fn)


KIND_HINT = "Cache.cached wraps plain functions; use AsyncCache.cached for 'async def' ones"


def sleep(seconds: float) -> None:
    time.sleep(seconds)


class Background:
    """A long-running helper: a daemon thread here, an asyncio task in the async shell."""

    def __init__(self, run: Callable[[], None], name: str) -> None:
        self.stopping = False
        self._thread = threading.Thread(target=run, name=name, daemon=True)
        self._thread.start()

    def stop(self, interrupt: Callable[[], None] | None = None) -> None:
        # The thread may be blocked in a socket read: the interrupt (closing that
        # socket) wakes it, and it sees `stopping` and returns.
        self.stopping = True
        if interrupt is not None:
            interrupt()
        self._thread.join(timeout=5.0)


def spawn(run: Callable[[], None], name: str) -> Background:
    return Background(run, name)


class LeaderGone(Exception):
    """The thread doing a shared load died of a BaseException; its waiters retry."""


class Flight:
    """One in-process load that concurrent misses of a key share (single-flight).

    A plain lock held by the leader until the result is in: cheaper to make
    than an Event, and the uncontended miss (the common case) never waits on it.
    """

    __slots__ = ("_error", "_lock", "_value", "seq", "started")

    def __init__(self, seq: int = 0, started: float = 0.0) -> None:
        self.seq = seq  # the cache's invalidation counter when the load began
        self.started = started  # monotonic: when it began (waits are bounded by its age)
        self._lock = threading.Lock()
        self._lock.acquire()
        self._value: Any = None
        self._error: BaseException | None = None

    def resolve(self, value: Any) -> None:
        self._value = value
        self._lock.release()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._lock.release()

    def wait(self, timeout: float | None = None) -> Any:
        """The shared result; :data:`EXPIRED` if it is not in after ``timeout`` seconds."""
        # Each waiter passes through the lock once the leader released it.
        if not self._lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            return EXPIRED
        self._lock.release()
        if self._error is not None:
            raise self._error
        return self._value


EXPIRED: Any = object()
"""What :meth:`Flight.wait` returns when its timeout ran out before the result."""


SCHEDULED: Any = object()


class BackgroundRefreshes:
    """Stale-while-revalidate refreshes: inline here (the caller that won the refresh
    lease pays for it), background tasks in the asyncio shell."""

    def run(self, refresh: Callable[[], Any]) -> Any:
        return refresh()

    def close(self) -> None:
        return None


def call_later(delay: float, fn: Callable[[], None]) -> None:
    """Run ``fn`` once, ``delay`` seconds from now, on a daemon timer thread."""
    timer = threading.Timer(delay, fn)
    timer.daemon = True
    timer.start()


class SourceBulkhead:
    """At most ``limit`` loads at once; a caller waits at most ``timeout`` for a slot.

    First come, first served: a released slot is handed to the oldest waiter. A
    plain semaphore lets the releasing thread take its slot straight back on its
    next read (it still holds the GIL), so under steady demand one waiter could lose
    every race until its timeout: that made the kill-phase p99 reach
    ``source_queue_timeout`` (issue 17; ``tests/test_bulkhead.py``).
    """

    def __init__(self, limit: int, timeout: float) -> None:
        self.limit = limit
        self.timeout = timeout
        self.active = 0
        self.waiting = 0
        self.peak = 0
        self._queue: deque[threading.Lock] = deque()
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        """A slot only if one is free now, ahead of no waiter (a caller whose wait ran out)."""
        with self._lock:
            if self.active < self.limit and not self._queue:
                self.active += 1
                self.peak = max(self.peak, self.active)
                return True
            return False

    def acquire(self) -> bool:
        with self._lock:
            if self.active < self.limit and not self._queue:
                self.active += 1
                self.peak = max(self.peak, self.active)
                return True
            turn = threading.Lock()
            turn.acquire()
            self._queue.append(turn)
            self.waiting += 1
        if turn.acquire(timeout=self.timeout):
            return True
        with self._lock:
            try:
                self._queue.remove(turn)
            except ValueError:
                return True  # handed a slot just as the wait ran out: it is ours
            self.waiting -= 1
            return False

    def release(self) -> None:
        with self._lock:
            if self._queue:
                # The slot passes to the oldest waiter; ``active`` stays the same.
                self.waiting -= 1
                self._queue.popleft().release()
            else:
                self.active -= 1


class ConnectionSlots(SourceBulkhead):
    """At most ``limit`` connections to one Redis in use at once; a caller waits at most
    ``timeout`` for one to free up (a queue in process, not an error of the server).
    First come, first served, like the bulkhead."""

    def __init__(self, limit: int, timeout: float) -> None:
        super().__init__(limit, timeout)
        self.waits = 0
        self.timeouts = 0

    def acquire(self) -> bool:
        if self.active >= self.limit:
            self.waits += 1  # approximate under threads, as every counter
        if super().acquire():
            return True
        self.timeouts += 1
        return False


_PROCESS = object()


def current_loop() -> object:
    """What connections are bound to: one binding for the life of the process here (the
    asyncio shell binds them to the running event loop)."""
    return _PROCESS


def dial(connection: Any, keep: Callable[[Any], bool]) -> None:
    """Connect a new redis-py connection (the asyncio twin survives its caller's
    cancellation and hands the connection to ``keep``)."""
    connection.connect()


def send_packed(connection: Any, packed: bytes) -> None:
    """Write one buffer of commands on a redis-py connection (connecting if needed); the
    asyncio twin also guards against a swallowed cancellation."""
    connection.send_packed_command([packed], False)


class Alarm:
    """A sleep that :meth:`ring` cuts short, so a stopping thread does not make ``close()``
    wait out its period (the asyncio twin cancels its task instead)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def wait(self, seconds: float) -> None:
        self._event.wait(seconds)

    def ring(self) -> None:
        self._event.set()


def on_loop_end(fn: Callable[[], None]) -> Callable[[], None]:
    """Nothing to watch in the threaded shell (no event loops); returns a no-op cancel."""
    return _nothing


def _nothing() -> None:
    return None
