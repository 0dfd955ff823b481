"""Redis URL checks and the connection options veneer imposes on every client it builds."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ._errors import ConfigurationError

__all__ = ["client_kwargs", "mask_url", "validate_url"]

SUPPORTED_SCHEMES = ("redis", "rediss", "unix")


def mask_url(url: str) -> str:
    """The URL with its password replaced, safe for logs and reports."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{user}:***@{host}{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def validate_url(url: object) -> str:
    if not isinstance(url, str) or not url:
        raise ConfigurationError(f"Redis URL must be a non-empty string, got {url!r}")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigurationError(f"bad Redis URL {mask_url(url)!r}: {exc}") from None
    if parts.scheme not in SUPPORTED_SCHEMES:
        raise ConfigurationError(
            f"Redis URL scheme {parts.scheme!r} in {mask_url(url)!r} is not supported; use "
            "redis://host:port/db, rediss://host:port/db (TLS) or unix:///path/to/redis.sock"
        )
    if parts.scheme == "unix" and not parts.path:
        raise ConfigurationError(f"unix URL {mask_url(url)!r} has no socket path")
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigurationError(f"Redis URL {mask_url(url)!r} has no host")
    return url


def client_kwargs(redis_timeout: float, connect_timeout: float) -> dict[str, Any]:
    """Options for every client veneer builds: short deadlines (retries are switched off
    by the caller with its own ``Retry`` class, which differs between redis and redis.asyncio).

    A cache call that waits out three retries of a dead server is worse than a
    miss; veneer falls through to the source instead (and the breaker, not a
    retry loop, decides when to try Redis again).
    """
    return {
        "socket_timeout": redis_timeout,
        "socket_connect_timeout": connect_timeout,
        "decode_responses": False,
        "health_check_interval": 0,
    }
