"""A burst of requests for one cold URL is one origin call (single-flight through the cache)."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .conftest import SiteFactory


async def test_200_concurrent_requests_for_one_cold_url_make_one_origin_call(
    site: SiteFactory,
) -> None:
    """200 clients asking at once for a URL nobody has cached: the app runs once, every
    client gets its answer."""
    entered = asyncio.Event()

    async def endpoint(request: Request) -> Response:
        entered.set()
        await asyncio.sleep(0.3)  # a slow query: the burst piles up behind it
        return JSONResponse({"products": list(range(50))}, headers={"cache-control": "max-age=60"})

    client, origin, _ = await site(endpoint)
    responses = await asyncio.gather(*[client.get("/catalog") for _ in range(200)])
    assert [r.status_code for r in responses] == [200] * 200
    assert {r.content for r in responses} == {responses[0].content}
    assert origin.calls["/catalog"] == 1


async def test_a_burst_on_an_uncacheable_url_gives_each_client_its_own_answer(
    site: SiteFactory,
) -> None:
    """Requests that shared a load whose response may not be shared (``private``) each
    ask the app themselves: nobody gets somebody else's private page."""

    async def endpoint(request: Request) -> Response:
        await asyncio.sleep(0.05)
        who = request.headers["x-user"]
        return Response(f"private page of {who}".encode(), headers={"cache-control": "private"})

    client, origin, _ = await site(endpoint)
    responses = await asyncio.gather(
        *[client.get("/mine", headers={"x-user": str(i)}) for i in range(20)]
    )
    assert [r.text for r in responses] == [f"private page of {i}" for i in range(20)]
    assert origin.calls["/mine"] == 20
