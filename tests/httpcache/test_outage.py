"""Redis hung (SIGSTOP) or killed (SIGKILL) under HTTP traffic: no 5xx caused by the cache."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from starlette.requests import Request
from starlette.responses import Response

from servers import RedisServer
from veneer import AsyncCache
from veneer.http import HttpCache

from .conftest import Origin, serving

Step = tuple[float, Callable[[], None]]


async def endpoint(request: Request) -> Response:
    await asyncio.sleep(0.002)  # a quick query
    body = f"page {request.url.path}".encode()
    return Response(body, headers={"cache-control": "max-age=1"})


async def traffic(base: str, seconds: float, steps: list[Step]) -> tuple[Counter[int], int]:
    """16 clients reading 20 URLs for ``seconds``, running ``steps`` at their times;
    returns the statuses seen and the number of wrong bodies."""
    statuses: Counter[int] = Counter()
    wrong = 0
    started = time.monotonic()

    async def client_loop(i: int, client: httpx.AsyncClient) -> None:
        nonlocal wrong
        n = 0
        while time.monotonic() - started < seconds:
            path = f"/p{(i * 7 + n) % 20}"
            n += 1
            try:
                response = await client.get(path)
            except httpx.HTTPError:
                statuses[0] += 1  # the connection itself failed
                continue
            statuses[response.status_code] += 1
            if response.status_code == 200 and response.text != f"page {path}":
                wrong += 1

    async def scheduler() -> None:
        for at, action in steps:
            await asyncio.sleep(max(0.0, at - (time.monotonic() - started)))
            action()

    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        await asyncio.gather(scheduler(), *[client_loop(i, client) for i in range(16)])
    return statuses, wrong


async def test_redis_hung_then_killed_under_traffic_causes_no_5xx(own_redis: RedisServer) -> None:
    """SIGSTOP for a second, then SIGKILL (and an empty restart) while 16 clients read:
    every response is a 200 with the right page (from L1 or the app), none an error."""
    cache = AsyncCache.from_url(
        own_redis.url, namespace="outage", redis_timeout=0.05, breaker_cooldown=0.3
    )
    assert await cache.ready(5.0)
    origin = Origin(endpoint)
    try:
        async with serving(HttpCache(origin.app(), cache)) as base:
            statuses, wrong = await traffic(
                base,
                3.6,
                [
                    (0.6, own_redis.pause),
                    (1.6, own_redis.resume),
                    (2.0, own_redis.kill),
                    (2.8, own_redis.start),
                ],
            )
    finally:
        with contextlib.suppress(Exception):
            own_redis.resume()
        await cache.close()
    assert set(statuses) == {200}, statuses
    assert wrong == 0
    assert statuses[200] > 200  # the clients kept being served throughout
    stats = cache.stats()
    assert stats.breaker_opened >= 1 or stats.redis_errors >= 1  # Redis really failed


class NaiveRedisCache:
    """Control: the usual decorator-style cache, calling Redis directly on every request."""

    def __init__(self, app: Any, client: redis.asyncio.Redis) -> None:
        self.app, self.client = app, client

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key = "naive:" + scope["path"]
        body = await self.client.get(key)
        if body is None:
            chunks: list[bytes] = []

            async def capture(message: Any) -> None:
                if message["type"] == "http.response.body":
                    chunks.append(message.get("body", b""))

            await self.app(scope, receive, capture)
            body = b"".join(chunks)
            await self.client.set(key, body, ex=1)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


async def test_control_a_naive_redis_cache_fails_requests_when_redis_dies(
    own_redis: RedisServer,
) -> None:
    """Control: the same traffic through a cache that calls Redis directly gets 5xx (or
    broken connections) once Redis is killed, so the test above can fail."""
    # No retries, so that its failures come quickly (redis-py's default retries make
    # every failed request wait seconds first).
    client = redis.asyncio.Redis(
        port=own_redis.port, socket_timeout=0.05, retry=Retry(NoBackoff(), 0)
    )
    origin = Origin(endpoint)
    try:
        # Its errors are the point: uvicorn need not log each traceback.
        async with serving(NaiveRedisCache(origin.app(), client), log_level="critical") as base:
            statuses, _ = await traffic(base, 1.0, [(0.4, own_redis.kill)])
    finally:
        await client.aclose()
    assert statuses[500] + statuses[0] > 0, statuses
