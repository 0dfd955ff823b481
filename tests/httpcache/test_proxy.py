"""``veneer.http.proxy``: a reverse proxy (httpx) behind the cache, to a real upstream."""

from __future__ import annotations

import httpx
from starlette.requests import Request
from starlette.responses import Response

from servers import RedisServer, free_port
from veneer import AsyncCache
from veneer.http.proxy import ReverseProxy, cached_proxy

from .conftest import Origin, serving


async def upstream_endpoint(request: Request) -> Response:
    body = await request.body()
    text = f"{request.method} {request.url.path}?{request.url.query} body={body.decode()}"
    return Response(
        text.encode(),
        headers={
            "cache-control": "max-age=60",
            "x-seen-via": request.headers.get("via", ""),
            "x-seen-upgrade": request.headers.get("upgrade", "none"),
            "connection": "x-hop",
            "x-hop": "secret",
        },
    )


async def test_the_cached_proxy_forwards_requests_and_caches_responses(
    redis_server: RedisServer, namespace: str
) -> None:
    """Requests (method, path, query, body) reach the upstream with a Via and without
    hop-by-hop fields; responses come back without theirs; a GET is then served cached."""
    upstream = Origin(upstream_endpoint)
    cache = AsyncCache.from_url(redis_server.url, namespace=namespace)
    async with serving(upstream.app()) as upstream_url:
        app = cached_proxy(upstream_url, cache)
        async with serving(app) as base, httpx.AsyncClient(base_url=base) as client:
            first = await client.get("/a/b", params={"q": "1"}, headers={"upgrade": "h2c"})
            assert first.text == "GET /a/b?q=1 body="
            assert first.headers["x-seen-via"] == "1.1 veneer"
            assert first.headers["x-seen-upgrade"] == "none"
            assert "x-hop" not in first.headers
            again = await client.get("/a/b", params={"q": "1"})
            assert again.text == first.text and "age" in again.headers
            posted = await client.post("/form", content=b"x=1")
            assert posted.text == "POST /form? body=x=1"
        await app.aclose()
    assert upstream.calls == {"/a/b": 1, "/form": 1}


async def test_an_unreachable_upstream_is_a_502() -> None:
    """Nothing listening upstream: the proxy answers 502 Bad Gateway itself, never stored."""
    proxy = ReverseProxy(f"http://127.0.0.1:{free_port()}", timeout=2)
    async with serving(proxy) as base, httpx.AsyncClient(base_url=base) as client:
        answer = await client.get("/x")
    await proxy.aclose()
    assert answer.status_code == 502
    assert answer.headers["cache-control"] == "no-store"
