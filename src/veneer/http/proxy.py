"""A small reverse proxy (ASGI, httpx), usually wrapped by :class:`~veneer.http.HttpCache`.

::

    from veneer import AsyncCache
    from veneer.http.proxy import cached_proxy

    app = cached_proxy("http://127.0.0.1:8000", AsyncCache.from_url(url, namespace="edge"))

or, configured from the environment (``VENEER_UPSTREAM``, ``VENEER_REDIS_URL``,
``VENEER_NAMESPACE``)::

    uvicorn --factory veneer.http.proxy:from_env --no-date-header --no-server-header

(uvicorn adds its own ``Date`` and ``Server`` to every response; a proxy must pass
the origin's on, so turn them off.)
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any, Final

import httpx

from .._async._cache import AsyncCache
from .._errors import ConfigurationError
from ._asgi import Headers, Message, Receive, Scope, Send
from ._middleware import HttpCache

__all__ = ["CachedProxy", "ReverseProxy", "cached_proxy", "from_env"]

log = logging.getLogger("veneer.http")

# RFC 9110 7.6.1: connection-specific fields, never forwarded.
_HOP_BY_HOP: Final = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"transfer-encoding",
     b"upgrade", b"trailer", b"proxy-authenticate", b"proxy-authorization",
     b"proxy-authentication-info"}
)  # fmt: skip


def _forwardable(headers: Any) -> Headers:
    """``headers`` (pairs of bytes) without hop-by-hop fields and those Connection names."""
    pairs = [(bytes(n).lower(), bytes(v)) for n, v in headers]
    listed = set(_HOP_BY_HOP)
    for name, value in pairs:
        if name == b"connection":
            listed.update(part.strip().lower() for part in value.split(b",") if part.strip())
    return [(n, v) for n, v in pairs if n not in listed]


class ReverseProxy:
    """Forwards every request (body streamed both ways) to ``upstream``.

    An unreachable or misbehaving upstream is a ``502 Bad Gateway`` (a timeout a
    ``504``) generated here: under :class:`HttpCache` that lets ``stale-if-error``
    answer instead.
    """

    def __init__(
        self,
        upstream: str,
        *,
        client: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
        forward_host: bool = False,
        keepalive: bool = True,
    ) -> None:
        parsed = httpx.URL(upstream)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigurationError(
                f"upstream={upstream!r} must be an http(s) URL such as http://127.0.0.1:8000"
            )
        self.upstream = str(parsed).rstrip("/")
        self._owns_client = client is None
        # keepalive=False: a new connection per request, for upstreams whose framing
        # cannot be trusted (a Content-Length shorter than the body leaves bytes that
        # the next response on that connection would be read from).
        limits = httpx.Limits(max_keepalive_connections=None if keepalive else 0)
        self._client = client or httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, trust_env=False, limits=limits
        )
        self._forward_host = forward_host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, self.aclose)
            return
        if scope["type"] != "http":
            raise RuntimeError(f"ReverseProxy serves HTTP only, not {scope['type']!r}")
        raw = scope.get("raw_path") or scope["path"].encode("utf-8")
        query = scope.get("query_string", b"")
        target = self.upstream + raw.decode("latin-1")
        if query:
            target += "?" + query.decode("latin-1")
        headers = _forwardable(scope.get("headers", []))
        if not self._forward_host:
            headers = [(n, v) for n, v in headers if n != b"host"]
            for name, value in scope.get("headers", []):
                if name == b"host":
                    headers.append((b"x-forwarded-host", value))
        headers.append((b"via", b"1.1 veneer"))
        has_body = any(
            n in (b"content-length", b"transfer-encoding") for n, _ in scope.get("headers", [])
        )
        request = self._client.build_request(
            scope["method"],
            target,
            headers=headers,
            content=_body(receive) if has_body else None,
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            await _error(send, 504, f"upstream timed out: {exc.__class__.__name__}")
            return
        except httpx.HTTPError as exc:
            await _error(send, 502, f"upstream failed: {exc.__class__.__name__}: {exc}")
            return
        if not 200 <= response.status_code <= 599:
            await response.aclose()
            await _error(send, 502, f"upstream sent status {response.status_code}")
            return
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": _forwardable(response.headers.raw),
                }
            )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def _error(send: Send, status: int, text: str) -> None:
    body = f"{status} {text}\n".encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _lifespan(receive: Receive, send: Send, *closers: Any) -> None:
    while True:
        message: Message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            for close in closers:
                with contextlib.suppress(Exception):
                    await close()
            await send({"type": "lifespan.shutdown.complete"})
            return


class CachedProxy:
    """:class:`HttpCache` over a :class:`ReverseProxy`; the ASGI lifespan shutdown (or
    :meth:`aclose`) closes the proxy's connections and the cache."""

    def __init__(self, proxy: ReverseProxy, cache: AsyncCache, **options: Any) -> None:
        self.proxy = proxy
        self.cache = cache
        self.http_cache = HttpCache(proxy, cache, **options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, self.aclose)
            return
        await self.http_cache(scope, receive, send)

    async def aclose(self) -> None:
        await self.proxy.aclose()
        await self.cache.close()


def cached_proxy(upstream: str, cache: AsyncCache, **options: Any) -> CachedProxy:
    """A reverse proxy to ``upstream`` behind an :class:`HttpCache` (``options`` go to it)."""
    return CachedProxy(ReverseProxy(upstream), cache, **options)


def from_env() -> CachedProxy:
    """The cached proxy ``uvicorn --factory`` builds from ``VENEER_UPSTREAM`` (required),
    ``VENEER_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``), ``VENEER_NAMESPACE``
    (default ``http``), ``VENEER_REDIS_TIMEOUT`` (seconds) and ``VENEER_UPSTREAM_KEEPALIVE``
    (``0``: a connection per request)."""
    upstream = os.environ.get("VENEER_UPSTREAM")
    if not upstream:
        raise ConfigurationError("set VENEER_UPSTREAM to the origin's URL (http://host:port)")
    options: dict[str, Any] = {}
    timeout = os.environ.get("VENEER_REDIS_TIMEOUT")
    if timeout:
        try:
            options["redis_timeout"] = float(timeout)
        except ValueError:
            raise ConfigurationError(
                f"VENEER_REDIS_TIMEOUT={timeout!r} must be a number of seconds"
            ) from None
    cache = AsyncCache.from_url(
        os.environ.get("VENEER_REDIS_URL", "redis://127.0.0.1:6379/0"),
        namespace=os.environ.get("VENEER_NAMESPACE", "http"),
        **options,
    )
    keepalive = os.environ.get("VENEER_UPSTREAM_KEEPALIVE", "1") not in ("0", "false", "no")
    return CachedProxy(ReverseProxy(upstream, keepalive=keepalive), cache)
