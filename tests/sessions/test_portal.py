"""The greenlet portal that lets Starlette's synchronous request.session load lazily."""

from __future__ import annotations

import asyncio

import pytest

from veneer.sessions._portal import in_portal, portal_await, run_with_portal


async def test_sync_code_waits_for_a_coroutine_while_other_tasks_run() -> None:
    """A synchronous call inside the driven coroutine suspends only its own task."""
    ticks: list[int] = []

    async def other() -> None:
        for i in range(5):
            ticks.append(i)
            await asyncio.sleep(0.001)

    async def load() -> str:
        await asyncio.sleep(0.02)
        return "loaded"

    def sync_access() -> str:
        assert in_portal()
        return portal_await(load())

    async def endpoint() -> str:
        await asyncio.sleep(0)
        value = sync_access()
        await asyncio.sleep(0.001)
        return value

    background = asyncio.create_task(other())
    assert await run_with_portal(endpoint()) == "loaded"
    await background
    assert ticks == [0, 1, 2, 3, 4]
    assert not in_portal()


async def test_errors_and_cancellation_reach_the_driven_coroutine() -> None:
    """An exception propagates out; cancelling the task cancels the coroutine where it
    waits, and its cleanup runs."""

    async def failing() -> None:
        await asyncio.sleep(0)
        raise KeyError("boom")

    with pytest.raises(KeyError):
        await run_with_portal(failing())

    cleaned: list[str] = []

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            cleaned.append("done")

    task = asyncio.create_task(run_with_portal(slow()))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["done"]

    async def yields_bare() -> None:  # asyncio.sleep(0) yields None, not a future
        try:
            while True:
                await asyncio.sleep(0)
        finally:
            cleaned.append("bare")

    task = asyncio.create_task(run_with_portal(yields_bare()))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["done", "bare"]


async def test_a_session_first_used_outside_the_portal_says_what_to_do() -> None:
    """Synchronous first use from a task the middleware does not drive is a clear error."""
    from veneer.sessions.asgi import LazySession, SessionNotLoaded

    session = LazySession(store=None, token="t" * 43)  # type: ignore[arg-type]
    with pytest.raises(SessionNotLoaded, match=r"await request\.session\.load\(\)"):
        session.get("user")
    empty = LazySession(store=None, token=None)  # type: ignore[arg-type]
    assert dict(empty) == {} and "LazySession" in repr(empty)
