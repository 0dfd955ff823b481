"""ASGI types and the small message helpers the HTTP cache shares."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "ASGIApp",
    "Headers",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "canonical_url",
    "has_body",
    "respond",
    "simple_response",
    "stripping",
    "url_of",
    "with_headers",
    "without",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]


async def respond(send: Send, status: int, headers: Headers, body: bytes = b"") -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def simple_response(send: Send, status: int, text: bytes) -> None:
    """A response the cache generates itself (never stored downstream)."""
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"%d" % len(text)),
        (b"cache-control", b"no-store"),
    ]
    await respond(send, status, headers, text)


def stripping(send: Send, field: bytes) -> Send:
    """``send`` without response field ``field`` (the tag header)."""

    async def forward(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = message.get("headers", [])
            if any(bytes(n).lower() == field for n, _ in headers):
                kept = [(n, v) for n, v in headers if bytes(n).lower() != field]
                message = dict(message, headers=kept)
        await send(message)

    return forward


def has_body(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"transfer-encoding":
            return True
        if name == b"content-length" and value.strip() not in (b"", b"0"):
            return True
    return False


def without(headers: Iterable[tuple[bytes, bytes]], names: Iterable[bytes]) -> Headers:
    drop = set(names)
    return [(n, v) for n, v in headers if n not in drop]


def with_headers(scope: Scope, headers: Headers) -> Scope:
    copied: Scope = dict(scope)
    copied["headers"] = headers
    return copied


def url_of(scope: Scope) -> str:
    """``scheme://host/path?query`` of a request: the cache's primary key."""
    host = ""
    for name, value in scope.get("headers", []):
        if name == b"host":
            host = value.decode("latin-1").lower()
            break
    if not host:
        server = scope.get("server")
        host = f"{server[0]}:{server[1]}" if server else ""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else scope.get("root_path", "") + scope.get("path", "")
    query = scope.get("query_string", b"").decode("latin-1")
    scheme = scope.get("scheme", "http")
    return f"{scheme}://{host}{path}" + (f"?{query}" if query else "")


def canonical_url(url: str) -> str:
    """``url`` spelled as :func:`url_of` spells a request's URL."""
    parts = urlsplit(url)
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme or 'http'}://{parts.netloc.lower()}{parts.path or '/'}{query}"
