"""Let synchronous code inside an asyncio coroutine wait for a coroutine (a greenlet portal).

Starlette's ``request.session`` is a plain mapping, read synchronously from async
endpoints, while a lazily loaded session needs I/O on first use. The middleware
runs the downstream app through :func:`run_with_portal`. The app's coroutine is
stepped inside a greenlet, and every object it yields is handed to the event
loop unchanged from the request's own task. So a synchronous call deep inside
it can suspend with :func:`portal_await`, exactly as SQLAlchemy's ``AsyncSession``
runs its synchronous core (this uses SQLAlchemy's ``greenlet_spawn`` and
``await_``). Cancellation, exceptions and context variables behave as in the
task itself: a cancelled wait is delivered into the coroutine where it yielded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Coroutine, Generator
from typing import Any, TypeVar

from sqlalchemy.util.concurrency import await_, greenlet_spawn, in_greenlet

__all__ = ["in_portal", "portal_await", "run_with_portal"]

T = TypeVar("T")


class _Yielded:
    """Awaiting it yields ``item`` (what the driven coroutine yielded) to the task."""

    __slots__ = ("item",)

    def __init__(self, item: Any) -> None:
        self.item = item

    def __await__(self) -> Generator[Any, Any, None]:
        yield self.item


def _drive(coroutine: Coroutine[Any, Any, T]) -> T:
    error: BaseException | None = None
    while True:
        try:
            item = coroutine.send(None) if error is None else coroutine.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        error = None
        try:
            await_(_Yielded(item))
        except BaseException as exc:  # a cancellation of the task, delivered where it waits
            error = exc


async def run_with_portal(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` so that synchronous code it calls may use :func:`portal_await`."""
    return await greenlet_spawn(_drive, coroutine)


def in_portal() -> bool:
    return in_greenlet()


def portal_await(awaitable: Awaitable[T]) -> T:
    """Wait for ``awaitable`` from synchronous code running under :func:`run_with_portal`."""
    return await_(awaitable)
