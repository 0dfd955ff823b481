"""ASGI: a middleware for every request, and per-route limits (Starlette, FastAPI).

The subject of a request comes from a function of the ASGI scope. The default is
the peer address the server reports (``scope["client"]``); ``X-Forwarded-For``
is read only when that peer is one of ``trusted_proxies`` (fastapi-limiter #9/#10
were bypasses by a spoofed header), and then from the right: the first address
that is not a trusted proxy is the client.

Refused requests get ``429`` with ``Retry-After`` and the IETF draft
(draft-ietf-httpapi-ratelimit-headers) ``RateLimit-Policy`` and ``RateLimit``
fields; allowed responses carry the two fields too. In shadow mode nothing is
added and nothing is refused: clients cannot tell the limiter is there.

The middleware itself is plain ASGI (no framework needed); ``RouteLimit``'s
decorator and dependency need Starlette (``pip install veneer[asgi]``).
"""

from __future__ import annotations

import inspect
import ipaddress
import math
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from ._async._limiter import AsyncRateLimiter
from ._decision import Decision, Plan
from ._limits import Limit, LimitsSpec, parse_limits
from ._options import check_group

__all__ = [
    "RateLimitMiddleware",
    "RouteLimit",
    "Subject",
    "peer_address",
    "rate_limit_headers",
]

Scope = MutableMapping[str, Any]
Subject = Callable[[Scope], str | Awaitable[str | None] | None]
"""A request's subject from its ASGI scope; None exempts the request from the limit."""
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

_UNKNOWN_PEER = "unknown-peer"
_BODY = b"Too Many Requests\n"


def peer_address(trusted_proxies: Iterable[str] = ()) -> Callable[[Scope], str]:
    """The default subject: the peer's address, or the client a trusted proxy names.

    ``trusted_proxies`` are addresses or networks (``"10.0.0.0/8"``); without them
    ``X-Forwarded-For`` is ignored, whatever it says.
    """
    if isinstance(trusted_proxies, str):
        trusted_proxies = [trusted_proxies]
    networks = []
    for proxy in trusted_proxies:
        try:
            networks.append(ipaddress.ip_network(proxy, strict=False))
        except ValueError:
            raise ValueError(
                f"trusted_proxies: {proxy!r} is not an IP address or network "
                "(like '10.0.0.1' or '10.0.0.0/8')"
            ) from None

    def trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            return False
        return any(ip in network for network in networks)

    def subject(scope: Scope) -> str:
        client = scope.get("client")
        peer = str(client[0]) if client else _UNKNOWN_PEER
        if not networks or not trusted(peer):
            return peer
        hops = [
            hop.strip()
            for name, value in scope.get("headers", ())
            if name.lower() == b"x-forwarded-for"
            for hop in value.decode("latin-1").split(",")
            if hop.strip()
        ]
        for hop in reversed(hops):
            if not trusted(hop):
                return str(hop)
        return str(hops[0]) if hops else peer

    return subject


def _policy_id(limit: Limit) -> str:
    # An sf-string: printable ASCII, with '"' and '\' escaped (a Limit has neither).
    return str(limit)


def rate_limit_headers(decision: Decision) -> list[tuple[bytes, bytes]]:
    """``RateLimit-Policy`` and ``RateLimit`` for every limit of the decision (and
    ``Retry-After`` when it was refused)."""
    policy = ", ".join(
        f'"{_policy_id(s.limit)}";q={s.limit.rate};w={math.ceil(s.limit.per)}'
        for s in decision.states
    )
    current = ", ".join(
        f'"{_policy_id(s.limit)}";r={max(0, s.remaining)};t={math.ceil(s.reset_after)}'
        for s in decision.states
    )
    headers = [(b"ratelimit-policy", policy.encode()), (b"ratelimit", current.encode())]
    if not decision.allowed:
        headers.append((b"retry-after", str(max(1, math.ceil(decision.retry_after))).encode()))
    return headers


async def _send_refusal(send: Any, decision: Decision) -> None:
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(_BODY)).encode()),
        *rate_limit_headers(decision),
    ]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": _BODY})


def _check_limiter(limiter: object) -> AsyncRateLimiter:
    if not isinstance(limiter, AsyncRateLimiter):
        raise TypeError(
            f"ASGI rate limits need an AsyncRateLimiter, not {type(limiter).__name__}: a "
            "threaded RateLimiter would block the event loop on every request (slowapi #130)"
        )
    return limiter


class _Checker:
    """What the middleware and a route share: subject, cost, and the hit."""

    def __init__(
        self,
        limiter: AsyncRateLimiter,
        subject: Subject | None,
        trusted_proxies: Iterable[str],
        cost: int | Callable[[Scope], int],
        limits: tuple[Limit, ...] | None,
        group: str,
    ) -> None:
        self.limiter = _check_limiter(limiter)
        if subject is not None and trusted_proxies:
            raise ValueError(
                "give subject= or trusted_proxies=, not both: trusted_proxies configures "
                "the default subject (the peer address)"
            )
        self._subject: Subject = subject or peer_address(trusted_proxies)
        if not callable(cost):
            Plan(limits or limiter.limits).check_cost(cost)  # a bad cost fails at start-up
        self._cost = cost
        self._limits = limits
        self._group = group

    async def check(self, scope: Scope) -> Decision | None:
        subject = self._subject(scope)
        if inspect.isawaitable(subject):
            subject = await subject
        if subject is None:
            return None
        cost = self._cost(scope) if callable(self._cost) else self._cost
        return await self.limiter.hit(subject, cost, limits=self._limits, group=self._group)


class RateLimitMiddleware:
    """Limit every HTTP request of an ASGI app with ``limiter``'s limits.

    ``subject(scope)`` names the caller (default: :func:`peer_address` with
    ``trusted_proxies``); returning None exempts a request. ``cost`` is a number
    or a function of the scope.
    """

    def __init__(
        self,
        app: ASGIApp,
        limiter: AsyncRateLimiter,
        *,
        subject: Subject | None = None,
        trusted_proxies: Iterable[str] = (),
        cost: int | Callable[[Scope], int] = 1,
    ) -> None:
        self.app = app
        self._checker = _Checker(limiter, subject, trusted_proxies, cost, None, "")
        self._headers = not limiter.shadow

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        decision = await self._checker.check(scope)
        if decision is None:
            await self.app(scope, receive, send)
            return
        if not decision.allowed:
            await _send_refusal(send, decision)
            return
        if not self._headers:
            await self.app(scope, receive, send)
            return
        extra = rate_limit_headers(decision)

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RouteLimit:
    """Limits of one route, in accounts of their own (``name``), on top of any middleware.

    Starlette: decorate the endpoint (``@RouteLimit(limiter, "5/minute", name="login")``).
    FastAPI: ``dependencies=[Depends(login_limit.dependency)]``. Both answer a refused
    request with 429 and the same headers as the middleware.
    """

    def __init__(
        self,
        limiter: AsyncRateLimiter,
        limits: LimitsSpec,
        /,
        *,
        name: str,
        subject: Subject | None = None,
        trusted_proxies: Iterable[str] = (),
        cost: int | Callable[[Scope], int] = 1,
    ) -> None:
        check_group(name)
        if not name:
            raise ValueError("RouteLimit needs a name: it keeps the route's accounts apart")
        self.name = name
        self.limits = parse_limits(limits)
        self._checker = _Checker(limiter, subject, trusted_proxies, cost, self.limits, name)
        self.headers = not limiter.shadow

    async def check(self, scope: Scope) -> Decision | None:
        """The decision for one request (None: exempt by the subject function)."""
        return await self._checker.check(scope)

    def __call__(
        self, endpoint: Callable[[Any], Awaitable[Any]]
    ) -> Callable[[Any], Awaitable[Any]]:
        from ._starlette import limited_endpoint

        return limited_endpoint(self, endpoint)

    @property
    def dependency(self) -> Callable[..., Awaitable[Decision | None]]:
        """A FastAPI dependency: raises HTTPException(429) with the headers when refused."""
        from ._starlette import dependency

        return dependency(self)
