"""RFC 9111 semantics of ``HttpCache``, each through a real uvicorn server and an HTTP client,
with the origin's calls counted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from servers import RedisServer
from veneer import AsyncCache
from veneer.http import HttpCache, tag

from .conftest import SiteFactory, serving


def counter_body(request: Request, calls: dict[str, int]) -> bytes:
    calls[request.url.path] = calls.get(request.url.path, 0) + 1
    return f"{request.url.path} #{calls[request.url.path]}".encode()


async def test_a_fresh_response_is_reused_until_max_age_then_fetched_again(
    site: SiteFactory,
) -> None:
    """``max-age`` makes a response fresh: reused without the origin, fetched after it expires."""
    seen: dict[str, int] = {}

    async def endpoint(request: Request) -> Response:
        return Response(counter_body(request, seen), headers={"cache-control": "max-age=1"})

    client, origin, _ = await site(endpoint)
    first = await client.get("/a")
    second = await client.get("/a")
    assert first.text == second.text == "/a #1"
    assert int(second.headers["age"]) <= 1
    assert origin.calls["/a"] == 1
    await asyncio.sleep(1.3)
    third = await client.get("/a")
    assert third.text == "/a #2"
    assert origin.calls["/a"] == 2


async def test_a_stale_response_is_revalidated_and_updated_from_a_304(site: SiteFactory) -> None:
    """A stale response with an ETag is revalidated with If-None-Match; the app's 304
    freshens it (new headers stored, body kept) and the client gets a full 200."""
    version = {"n": 0}

    async def endpoint(request: Request) -> Response:
        version["n"] += 1
        if request.headers.get("if-none-match") == '"v1"':
            return Response(
                status_code=304,
                headers={
                    "etag": '"v1"',
                    "cache-control": "max-age=30",
                    "x-checked": str(version["n"]),
                },
            )
        return Response(b"body v1", headers={"etag": '"v1"', "cache-control": "max-age=0"})

    client, origin, _ = await site(endpoint)
    assert (await client.get("/r")).text == "body v1"
    second = await client.get("/r")
    assert second.status_code == 200 and second.text == "body v1"
    assert origin.requests[-1].headers["if-none-match"] == '"v1"'
    assert second.headers["x-checked"] == "2"
    third = await client.get("/r")  # fresh for 30 s now, from the 304's Cache-Control
    assert third.text == "body v1" and third.headers["x-checked"] == "2"
    assert origin.calls["/r"] == 2


async def test_the_cache_answers_a_clients_conditional_request_with_a_304(
    site: SiteFactory,
) -> None:
    """A client's If-None-Match matching a fresh stored response gets a 304 from the cache."""

    async def endpoint(request: Request) -> Response:
        return Response(b"x" * 100, headers={"etag": 'W/"abc"', "cache-control": "max-age=60"})

    client, origin, _ = await site(endpoint)
    assert (await client.get("/c")).status_code == 200
    answer = await client.get("/c", headers={"if-none-match": '"zzz", W/"abc"'})
    assert answer.status_code == 304 and answer.content == b""
    assert answer.headers["etag"] == 'W/"abc"'
    assert (await client.get("/c", headers={"if-none-match": '"other"'})).status_code == 200
    assert origin.calls["/c"] == 1


async def test_vary_keeps_one_variant_per_request_header_value(site: SiteFactory) -> None:
    """``Vary: Accept-Language`` stores a variant per language; each is reused only for its own."""

    async def endpoint(request: Request) -> Response:
        lang = request.headers.get("accept-language", "none")
        headers = {"cache-control": "max-age=60", "vary": "Accept-Language"}
        return Response(f"hello in {lang}".encode(), headers=headers)

    client, origin, _ = await site(endpoint)
    for _ in range(2):
        assert (await client.get("/v", headers={"accept-language": "de"})).text == "hello in de"
        assert (await client.get("/v", headers={"accept-language": "en"})).text == "hello in en"
        assert (await client.get("/v")).text == "hello in none"
    # Same preferences written differently are the same variant.
    same = await client.get("/v", headers={"accept-language": "DE"})
    assert same.text == "hello in de"
    assert origin.calls["/v"] == 3


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
async def test_an_unsafe_method_invalidates_the_url(site: SiteFactory, method: str) -> None:
    """A successful POST/PUT/DELETE drops the stored response of its URL (and of its
    Location); a failed one does not."""
    seen: dict[str, int] = {}

    async def endpoint(request: Request) -> Response:
        if request.method == "GET":
            return Response(counter_body(request, seen), headers={"cache-control": "max-age=60"})
        if request.query_params.get("fail"):
            return Response(b"no", status_code=500)
        return Response(b"done", status_code=201, headers={"location": "/other"})

    client, origin, _ = await site(endpoint)
    await client.get("/item")
    await client.get("/other")
    assert (await client.get("/item")).text == "/item #1"
    assert (await client.request(method, "/item?fail=1")).status_code == 500
    assert (await client.get("/item")).text == "/item #1"  # a failure invalidates nothing
    assert (await client.request(method, "/item")).status_code == 201
    assert (await client.get("/item")).text == "/item #2"
    assert (await client.get("/other")).text == "/other #2"
    assert origin.calls["/item"] == 4  # two GETs reached it, and the two writes


async def test_responses_to_authorized_requests_are_never_shared(site: SiteFactory) -> None:
    """Two users with ``Authorization`` on one URL each get their own response, every time."""

    async def endpoint(request: Request) -> Response:
        user = request.headers.get("authorization", "anonymous")
        return Response(f"account of {user}".encode(), headers={"cache-control": "max-age=60"})

    client, origin, _ = await site(endpoint)
    for _ in range(2):
        alice = await client.get("/me", headers={"authorization": "Bearer alice"})
        bob = await client.get("/me", headers={"authorization": "Bearer bob"})
        assert alice.text == "account of Bearer alice"
        assert bob.text == "account of Bearer bob"
    assert origin.calls["/me"] == 4
    # An anonymous request does not get a stored authorized response either.
    assert (await client.get("/me")).text == "account of anonymous"


async def test_responses_that_set_cookies_are_never_shared(site: SiteFactory) -> None:
    """A response with ``Set-Cookie`` (a session, say) goes to its own user only."""

    async def endpoint(request: Request) -> Response:
        user = request.query_params.get("user", "")
        response = Response(f"welcome {user}".encode(), headers={"cache-control": "max-age=60"})
        response.set_cookie("session", f"secret-of-{user}")
        return response

    client, origin, _ = await site(endpoint)
    a = await client.get("/login", params={"user": "a"})
    b = await client.get("/login", params={"user": "b"})
    again = await client.get("/login", params={"user": "a"})
    assert a.cookies["session"] == "secret-of-a" and b.cookies["session"] == "secret-of-b"
    assert again.headers["set-cookie"].startswith("session=secret-of-a")
    assert "age" not in again.headers
    assert origin.calls["/login"] == 3


async def test_no_store_and_private_responses_are_not_stored(site: SiteFactory) -> None:
    """``no-store`` and ``private`` responses reach the origin every time."""
    seen: dict[str, int] = {}

    async def endpoint(request: Request) -> Response:
        directive = request.url.path.strip("/")
        headers = {"cache-control": f"{directive}, max-age=60"}
        return Response(counter_body(request, seen), headers=headers)

    client, origin, _ = await site(endpoint)
    for path in ("/no-store", "/private"):
        await client.get(path)
        await client.get(path)
        assert origin.calls[path] == 2


async def test_stale_while_revalidate_serves_stale_once_and_refreshes_in_the_background(
    site: SiteFactory,
) -> None:
    """Within ``stale-while-revalidate`` the stale response is served at once while one
    background request refreshes it."""
    seen: dict[str, int] = {}

    async def endpoint(request: Request) -> Response:
        body = counter_body(request, seen)
        if seen["/s"] == 1:
            cc = "max-age=1, stale-while-revalidate=30"
        else:
            await asyncio.sleep(1.0)  # the revalidation is slow: the burst comes meanwhile
            cc = "max-age=60"
        return Response(body, headers={"cache-control": cc})

    client, origin, _ = await site(endpoint)
    await client.get("/s")
    await asyncio.sleep(1.2)
    stale = await asyncio.gather(*[client.get("/s") for _ in range(5)])
    assert {r.text for r in stale} == {"/s #1"}  # none waited for the revalidation
    for _ in range(100):  # until the background revalidation has landed (bounded)
        if (await client.get("/s")).text == "/s #2":
            break
        await asyncio.sleep(0.05)
    assert (await client.get("/s")).text == "/s #2"
    assert origin.calls["/s"] == 2


async def test_stale_if_error_covers_the_app_raising_or_answering_5xx(site: SiteFactory) -> None:
    """When the app raises or returns a 5xx, a stale response within the window is served;
    past the window (or with must-revalidate) the error goes through."""
    state = {"mode": "ok"}

    async def endpoint(request: Request) -> Response:
        if state["mode"] == "raise":
            raise RuntimeError("database is down")
        if state["mode"] == "503":
            return Response(b"down", status_code=503)
        cc = "max-age=1, must-revalidate" if request.url.path == "/strict" else "max-age=1"
        return Response(b"good", headers={"cache-control": cc})

    client, _, _ = await site(endpoint, stale_if_error=30)
    await client.get("/e")
    await client.get("/strict")
    await asyncio.sleep(1.2)
    state["mode"] = "raise"
    assert (await client.get("/e")).text == "good"
    assert (await client.get("/strict")).status_code == 500
    state["mode"] = "503"
    assert (await client.get("/e")).text == "good"
    assert (await client.get("/strict")).status_code == 503


async def test_head_is_answered_from_a_stored_get(site: SiteFactory) -> None:
    """A HEAD for a stored GET is answered from the cache, headers only."""

    async def endpoint(request: Request) -> Response:
        return Response(b"0123456789", headers={"cache-control": "max-age=60"})

    client, origin, _ = await site(endpoint)
    await client.get("/h")
    head = await client.head("/h")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == "10"
    assert origin.calls["/h"] == 1


async def test_a_range_is_served_from_a_stored_complete_response(site: SiteFactory) -> None:
    """``Range: bytes=`` on a stored 200 is a 206 from the cache (416 when unsatisfiable)."""

    async def endpoint(request: Request) -> Response:
        return Response(b"0123456789", headers={"cache-control": "max-age=60"})

    client, origin, _ = await site(endpoint)
    await client.get("/r")
    part = await client.get("/r", headers={"range": "bytes=2-4"})
    assert part.status_code == 206 and part.content == b"234"
    assert part.headers["content-range"] == "bytes 2-4/10"
    assert (await client.get("/r", headers={"range": "bytes=-3"})).content == b"789"
    assert (await client.get("/r", headers={"range": "bytes=20-"})).status_code == 416
    assert origin.calls["/r"] == 1


async def test_request_no_cache_revalidates_and_only_if_cached_never_calls_the_app(
    site: SiteFactory,
) -> None:
    """The client's ``no-cache`` reaches the origin; ``only-if-cached`` gets a 504 on a miss."""
    seen: dict[str, int] = {}

    async def endpoint(request: Request) -> Response:
        return Response(counter_body(request, seen), headers={"cache-control": "max-age=60"})

    client, origin, _ = await site(endpoint)
    await client.get("/q")
    assert (await client.get("/q", headers={"cache-control": "no-cache"})).text == "/q #2"
    assert (await client.get("/q")).text == "/q #2"
    assert (
        await client.get("/cold", headers={"cache-control": "only-if-cached"})
    ).status_code == 504
    assert origin.calls["/cold"] == 0

    ignoring, origin2, _ = await site(endpoint, request_directives=False)
    await ignoring.get("/q2")
    await ignoring.get("/q2", headers={"cache-control": "no-cache"})
    assert origin2.calls["/q2"] == 1


async def test_bodies_over_the_cap_stream_through_unstored(site: SiteFactory) -> None:
    """A body larger than ``max_body_bytes`` is streamed to its client and not stored; a
    streaming response under the cap is stored whole."""

    async def endpoint(request: Request) -> StreamingResponse:
        size = int(request.query_params["kb"]) * 1024

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(size // 1024):
                yield b"x" * 1024

        return StreamingResponse(chunks(), headers={"cache-control": "max-age=60"})

    client, origin, middleware = await site(endpoint, max_body_bytes=8 * 1024)
    for _ in range(2):
        big = await client.get("/big", params={"kb": 64})
        assert len(big.content) == 64 * 1024
        small = await client.get("/small", params={"kb": 4})
        assert len(small.content) == 4 * 1024
    assert origin.calls["/big"] == 2
    assert origin.calls["/small"] == 1
    assert middleware.cache.stats().l1_entries >= 1


async def test_tags_purge_responses_and_the_tag_header_never_reaches_the_client(
    site: SiteFactory,
) -> None:
    """Tags from :func:`tag` or ``Surrogate-Key`` are learned on the first response, stored
    from the second, stripped from what clients see, and ``invalidate_tag`` purges them."""
    seen: dict[str, int] = {}

    async def endpoint(request: Request) -> Response:
        if request.url.path == "/p/1":
            tag("product:1")
            headers = {"cache-control": "max-age=60"}
        else:
            headers = {"cache-control": "max-age=60", "surrogate-key": "product:1 list"}
        return Response(counter_body(request, seen), headers=headers)

    client, origin, middleware = await site(endpoint)
    for path in ("/p/1", "/list"):
        first = await client.get(path)
        assert "surrogate-key" not in first.headers
        await client.get(path)
        cached = await client.get(path)
        assert cached.text == f"{path} #2" and "surrogate-key" not in cached.headers
    assert await middleware.cache.invalidate_tag("product:1")
    assert (await client.get("/p/1")).text == "/p/1 #3"
    assert (await client.get("/list")).text == "/list #3"
    assert origin.calls == {"/p/1": 3, "/list": 3}


async def test_tag_works_from_a_sync_endpoint_run_in_a_thread_pool(
    redis_server: RedisServer, namespace: str
) -> None:
    """``tag()`` called by a sync Starlette endpoint (run in a worker thread) tags the response."""
    calls = []

    def page(request: Request) -> Response:
        calls.append(1)
        tag("sync-tagged")
        return Response(b"sync", headers={"cache-control": "max-age=60"})

    cache = AsyncCache.from_url(redis_server.url, namespace=namespace)
    assert await cache.ready(5.0)
    app = HttpCache(Starlette(routes=[Route("/sync", page)]), cache)
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as client:
        for _ in range(3):
            await client.get("/sync")
        assert len(calls) == 2  # learned, then stored
        await cache.invalidate_tag("sync-tagged")
        await client.get("/sync")
    await cache.close()
    assert len(calls) == 3
