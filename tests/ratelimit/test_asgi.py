"""The ASGI middleware and per-route limits, through a real uvicorn server on loopback.

Headers, 429 with Retry-After, shadow mode, a spoofed X-Forwarded-For ignored by
default (and honoured only from a trusted proxy), a Starlette route decorator and
a FastAPI dependency.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from servers import RedisServer, free_port
from veneer.ratelimit import AsyncRateLimiter, RateLimiter, RateLimitMiddleware, RouteLimit


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


class Site:
    """One uvicorn server; each mount has its own limiter (its own accounts)."""

    def __init__(self, redis_url: str, namespace: str) -> None:
        def limiter(name: str, limits: str, **options: Any) -> AsyncRateLimiter:
            return AsyncRateLimiter.from_url(
                redis_url, limits, namespace=namespace, name=name, redis_timeout=1.0, **options
            )

        self.limiters = {
            "plain": limiter("plain", "3/minute"),
            "spoof": limiter("spoof", "3/minute"),
            "trusted": limiter("trusted", "3/minute"),
            "shadow": limiter("shadow", "2/minute", shadow=True),
            "routes": limiter("routes", "100/minute"),
        }
        login = RouteLimit(self.limiters["routes"], "2/minute", name="login")
        search = RouteLimit(self.limiters["routes"], "1/minute", name="search")

        @login
        async def login_endpoint(request: Request) -> Response:
            return PlainTextResponse("logged in")

        api = FastAPI()

        @api.get("/search", dependencies=[Depends(search.dependency)])
        async def search_endpoint() -> dict[str, str]:
            return {"found": "nothing"}

        def mount(path: str, app: Any) -> Mount:
            return Mount(path, app=app)

        plain = Starlette(routes=[Route("/", hello)])
        routes = Starlette(routes=[Route("/", hello), Route("/login", login_endpoint)])
        app = Starlette(
            routes=[
                mount("/plain", RateLimitMiddleware(plain, self.limiters["plain"])),
                mount("/spoof", RateLimitMiddleware(plain, self.limiters["spoof"])),
                mount(
                    "/trusted",
                    RateLimitMiddleware(
                        plain, self.limiters["trusted"], trusted_proxies=["127.0.0.0/8"]
                    ),
                ),
                mount("/shadow", RateLimitMiddleware(plain, self.limiters["shadow"])),
                mount("/routes", routes),
                mount("/api", api),
            ],
            lifespan=self._lifespan,
        )
        # proxy_headers off: uvicorn would otherwise rewrite the peer address itself from
        # X-Forwarded-For when the peer is 127.0.0.1, and the test is about veneer's rule.
        config = uvicorn.Config(
            app, host="127.0.0.1", port=free_port(), proxy_headers=False, log_level="warning",
            ws="none", lifespan="on",
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.base = f"http://127.0.0.1:{config.port}"
        self._thread = threading.Thread(target=self.server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)

    @asynccontextmanager
    async def _lifespan(self, app: Any) -> AsyncIterator[None]:
        yield
        for limiter in self.limiters.values():
            await limiter.close()

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(20)


@pytest.fixture(scope="module")
def site(redis_server: RedisServer) -> Iterator[Site]:
    site = Site(redis_server.url, "asgi")
    yield site
    site.stop()


@pytest.fixture
def http(site: Site) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site.base, timeout=10) as client:
        yield client


def test_headers_then_429_with_retry_after(http: httpx.Client) -> None:
    """Allowed responses carry RateLimit-Policy and RateLimit; past the limit the answer is
    429 with Retry-After and the same fields."""
    responses = [http.get("/plain/") for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    first = responses[0]
    assert first.text == "hello"
    assert first.headers["ratelimit-policy"] == '"3/minute";q=3;w=60'
    assert re.fullmatch(r'"3/minute";r=2;t=(19|20)', first.headers["ratelimit"])
    refused = responses[3]
    assert re.fullmatch(r'"3/minute";r=0;t=(59|60)', refused.headers["ratelimit"])
    assert 19 <= int(refused.headers["retry-after"]) <= 20
    assert "retry-after" not in first.headers


def test_a_spoofed_forwarded_for_is_ignored_by_default(http: httpx.Client) -> None:
    """A client cannot escape its account by sending X-Forwarded-For: without trusted
    proxies the peer address is the subject."""
    codes = [
        http.get("/spoof/", headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
        for i in range(5)
    ]
    assert codes == [200, 200, 200, 429, 429]


def test_forwarded_for_is_read_from_a_trusted_proxy(http: httpx.Client) -> None:
    """Behind a trusted proxy the client is the first untrusted address from the right of
    X-Forwarded-For, so clients get their own accounts and a spoofed left part is ignored."""

    def get(chain: str) -> int:
        return http.get("/trusted/", headers={"X-Forwarded-For": chain}).status_code

    assert [get("198.51.100.7") for _ in range(4)] == [200, 200, 200, 429]
    assert get("198.51.100.8") == 200  # another client
    # The client put a fake address first; the proxy appended the real one.
    assert get("10.9.9.9, 198.51.100.7") == 429
    assert get("198.51.100.7, 127.0.0.5") == 429  # a trusted hop is skipped


def test_shadow_mode_lets_everything_through_and_counts(site: Site, http: httpx.Client) -> None:
    """In shadow mode nothing is refused and no header shows, while refusals are counted."""
    responses = [http.get("/shadow/") for _ in range(5)]
    assert [r.status_code for r in responses] == [200] * 5
    assert not any("ratelimit" in r.headers for r in responses)
    stats = site.limiters["shadow"].stats()
    assert stats.shadow_refusals == 3 and stats.refused == 0


def test_route_limits_by_decorator_and_by_dependency(http: httpx.Client) -> None:
    """A Starlette endpoint decorator and a FastAPI dependency each apply their route's own
    limit, with the same 429 and headers."""
    codes = [http.get("/routes/login").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert http.get("/routes/").status_code == 200  # the route limit is the route's alone
    ok = http.get("/routes/login")
    assert ok.headers["ratelimit-policy"] == '"2/minute";q=2;w=60'
    found = http.get("/api/search")
    assert found.status_code == 200 and found.json() == {"found": "nothing"}
    assert found.headers["ratelimit"].startswith('"1/minute";r=0;')
    refused = http.get("/api/search")
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1


def test_a_threaded_limiter_is_refused(redis_server: RedisServer) -> None:
    """The middleware takes an AsyncRateLimiter: a threaded one would block the loop."""
    limiter = RateLimiter.from_url(redis_server.url, "1/second", namespace="asgi-sync")
    try:
        with pytest.raises(TypeError, match="block the event loop"):
            RateLimitMiddleware(hello, limiter)  # type: ignore[arg-type]
    finally:
        limiter.close()
