"""The HTTP cache's counters in the Prometheus exposition (through httpx's ASGI transport)."""

from __future__ import annotations

import httpx
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from servers import RedisServer
from veneer import AsyncCache
from veneer.http import HttpCache
from veneer.metrics import PrometheusMetrics

from .scrape import delta, serving


async def test_http_cache_requests_by_outcome(redis_server: RedisServer, namespace: str) -> None:
    """A miss, two hits and a POST move the HTTP cache's requests counter by outcome, and
    the stored-responses counter by one; the URL is in no label."""
    calls = 0

    async def endpoint(request: Request) -> Response:
        nonlocal calls
        calls += 1
        return JSONResponse({"n": calls}, headers={"cache-control": "max-age=300"})

    app = Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST"])])
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    acache = AsyncCache.from_url(redis_server.url, namespace=namespace, ttl=60, broadcast=False)
    http_cache = HttpCache(app, acache)
    metrics.register(http_cache)
    try:
        with serving(registry) as server:
            before = server.scrape()
            transport = httpx.ASGITransport(app=http_cache)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                for _ in range(3):
                    assert (await client.get("/private-report-77")).json() == {"n": 1}
                assert (await client.post("/private-report-77")).status_code == 200
            after = server.scrape()
    finally:
        await acache.close()

    def moved(name: str, **extra: str) -> float:
        return delta(before, after, name, namespace=namespace, component="http", **extra)

    assert moved("veneer_http_requests_total", outcome="miss") == 1
    assert moved("veneer_http_requests_total", outcome="hit") == 2
    assert moved("veneer_http_requests_total", outcome="pass") == 1
    assert moved("veneer_http_stored_total") == 1
    assert calls == 2
    assert "private-report-77" not in server.text
