"""The Starlette side of ``RouteLimit``: an endpoint decorator and a FastAPI dependency.

Imported only when a route limit is used, so the middleware needs no framework.
The annotations below are resolved by FastAPI from this module's globals, which
is why Starlette is imported at the top here.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ._asgi import rate_limit_headers
from ._decision import Decision

if TYPE_CHECKING:
    from ._asgi import RouteLimit

__all__ = ["dependency", "limited_endpoint"]


def _headers(decision: Decision) -> dict[str, str]:
    return {name.decode(): value.decode() for name, value in rate_limit_headers(decision)}


def limited_endpoint(
    route: RouteLimit, endpoint: Callable[[Request], Awaitable[Response]]
) -> Callable[[Request], Awaitable[Response]]:
    @functools.wraps(endpoint)
    async def limited(request: Request) -> Response:
        decision = await route.check(request.scope)
        if decision is not None and not decision.allowed:
            return PlainTextResponse("Too Many Requests\n", 429, headers=_headers(decision))
        response = await endpoint(request)
        if decision is not None and route.headers:
            response.headers.update(_headers(decision))
        return response

    return limited


def dependency(route: RouteLimit) -> Callable[..., Awaitable[Decision | None]]:
    async def rate_limited(request: Request, response: Response) -> Decision | None:
        decision = await route.check(request.scope)
        if decision is None:
            return None
        if not decision.allowed:
            raise HTTPException(429, "Too Many Requests", headers=_headers(decision))
        if route.headers:
            response.headers.update(_headers(decision))
        return decision

    rate_limited.__qualname__ = f"RouteLimit[{route.name}].dependency"
    return rate_limited
