"""Fixtures of the HTTP cache tests: a Starlette app whose calls are counted, wrapped in
``HttpCache`` and served by a real uvicorn server on a free loopback port."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from servers import RedisServer, free_port
from veneer import AsyncCache
from veneer.http import HttpCache

Endpoint = Callable[[Request], Awaitable[Response]]


class Origin:
    """The app behind the cache: one endpoint for every path, each call counted per path."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.calls: Counter[str] = Counter()
        self.requests: list[Request] = []

    async def handle(self, request: Request) -> Response:
        self.calls[request.url.path] += 1
        self.requests.append(request)
        return await self.endpoint(request)

    def app(self) -> Starlette:
        methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]
        return Starlette(routes=[Route("/{path:path}", self.handle, methods=methods)])


@contextlib.asynccontextmanager
async def serving(app: Any, *, log_level: str = "warning") -> AsyncIterator[str]:
    """Run ``app`` under uvicorn on a free loopback port; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level, lifespan="off")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.ensure_future(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if task.done():
        task.result()
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


Site = tuple[str, Origin, HttpCache]
SiteFactory = Callable[..., Awaitable[tuple[httpx.AsyncClient, Origin, HttpCache]]]


@pytest.fixture
async def site(redis_server: RedisServer, namespace: str) -> AsyncIterator[SiteFactory]:
    """``await site(endpoint, **HttpCache options)`` -> (client, origin, middleware)."""
    stack = contextlib.AsyncExitStack()
    caches: list[AsyncCache] = []

    async def make(
        endpoint: Endpoint, *, cache_options: dict[str, Any] | None = None, **options: Any
    ) -> tuple[httpx.AsyncClient, Origin, HttpCache]:
        cache = AsyncCache.from_url(
            redis_server.url, namespace=namespace, **{"redis_timeout": 1.0, **(cache_options or {})}
        )
        caches.append(cache)
        assert await cache.ready(5.0)
        origin = Origin(endpoint)
        middleware = HttpCache(origin.app(), cache, **options)
        base = await stack.enter_async_context(serving(middleware))
        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=base, timeout=30, limits=httpx.Limits(max_connections=400))
        )
        return client, origin, middleware

    yield make
    await stack.aclose()
    for cache in caches:
        await cache.close()
