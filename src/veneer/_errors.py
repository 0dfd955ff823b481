"""veneer's own error hierarchy: third-party errors are translated at the boundary."""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "RedisDown",
    "RedisUnavailable",
    "SourceOverloaded",
    "SourceTimeout",
    "UnencodableValue",
    "ValueTooLarge",
    "VeneerError",
]


class VeneerError(Exception):
    """Root of every error veneer raises on purpose."""


class ConfigurationError(VeneerError, ValueError):
    """A bad option or URL, raised when the object is built; the message says what to change."""


class RedisUnavailable(VeneerError):
    """Raised by ``check()``: Redis does not answer, with the reason and what to do.

    Reads never raise it: they fall back to the source. Use ``check()`` in start-up
    and health checks to see why the cache is bypassed. The one other place is
    building a sync ``Cache`` on a Redis Cluster with no reachable node: redis-py's
    sync cluster client needs the slot map in its constructor.
    """


class RedisDown(VeneerError):
    """A component's Redis call was not served: unreachable, too slow, its breaker open,
    or refused by the server. veneer's components catch it and apply their outage
    policy; it never reaches an application through them.

    ``breaker_open`` is True when the call was refused without reaching Redis.
    """

    def __init__(self, message: str, *, breaker_open: bool = False) -> None:
        super().__init__(message)
        self.breaker_open = breaker_open


class ValueTooLarge(VeneerError, ValueError):
    """An explicit ``set`` of a value whose encoded size is above ``max_value_bytes``."""

    def __init__(self, key: str, size: int, limit: int) -> None:
        self.key = key
        self.size = size
        self.limit = limit
        super().__init__(
            f"value for key {key!r} is {size} bytes encoded, above max_value_bytes={limit}; "
            "store a smaller value, raise max_value_bytes, or keep it out of the cache"
        )


class UnencodableValue(VeneerError, TypeError):
    """An explicit ``set`` of a value the cache's codec cannot encode."""


class SourceOverloaded(VeneerError):
    """The per-process source bulkhead is full and no stale value exists."""

    def __init__(self, limit: int, waited: float) -> None:
        self.limit = limit
        self.waited = waited
        super().__init__(
            f"source_concurrency={limit} loads already running and the caller waited "
            f"{waited * 1000:.0f} ms (source_queue_timeout); the source is slower than the "
            "request rate: raise source_concurrency or source_queue_timeout, or add stale_ttl"
        )


class SourceTimeout(SourceOverloaded):
    """A miss waited ``lease_wait`` for another caller's load of its key in this process,
    no copy within ``max_stale`` was left, and every bulkhead slot was busy for a load
    of its own. A kind of :class:`SourceOverloaded`: handlers of that catch this too.
    """

    def __init__(self, key: str, waited: float, limit: int) -> None:
        self.key = key
        self.limit = limit
        self.waited = waited
        VeneerError.__init__(
            self,
            f"the load of key {key!r} this call shared ran past lease_wait={waited:g} s, with "
            f"no copy within max_stale and all source_concurrency={limit} slots busy; the "
            "source is slower than its callers wait: make the loader faster (or give its "
            "query a timeout in the database driver), add stale_ttl or max_stale, or raise "
            "lease_wait or source_concurrency",
        )


def describe_redis_failure(exc: BaseException, where: str) -> str:
    """A message for ``RedisUnavailable``: what failed at ``where`` and what to change."""
    import ssl

    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    text = " / ".join(f"{e.__class__.__name__}: {e}" for e in chain)
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in chain) or (
        "CERTIFICATE_VERIFY_FAILED" in text
    ):
        return (
            f"TLS certificate verification failed for {where}: the server's certificate is "
            "not signed by a CA this client trusts (or names another host). Pass the CA with "
            "?ssl_ca_certs=/path/to/ca.pem in the rediss:// URL; do not turn verification off. "
            f"({text})"
        )
    if any(isinstance(e, ssl.SSLError) for e in chain):
        return f"TLS handshake with {where} failed: is the port a TLS port? ({text})"
    lowered = text.lower()
    if "auth" in lowered or "wrongpass" in lowered or "noperm" in lowered:
        return (
            f"authentication to {where} failed: check the username and password in the URL "
            f"(redis://user:password@host:port) and the user's ACL. ({text})"
        )
    if "refused" in lowered:
        return f"nothing accepts connections at {where}: is Redis running there? ({text})"
    if "timeout" in lowered or "timed out" in lowered:
        return (
            f"{where} did not answer within the deadline (redis_timeout/connect_timeout): "
            f"is it overloaded, paused or unreachable? ({text})"
        )
    return f"{where} is unavailable: {text}"
