"""Rate limits that hold across processes (GCRA on Redis) and degrade by a chosen policy.

    from veneer.ratelimit import RateLimiter

    limiter = RateLimiter(cache, "10/second; 1000/hour")
    decision = limiter.hit(user_id)
    if not decision.allowed:
        ...  # refuse, retry in decision.retry_after seconds

See docs/ratelimit.md.
"""

from __future__ import annotations

from ._asgi import RateLimitMiddleware, RouteLimit, peer_address, rate_limit_headers
from ._async._limiter import AsyncRateLimiter
from ._decision import Decision, LimitState
from ._limits import Limit, parse_limits
from ._stats import RateLimitStats
from ._sync._limiter import RateLimiter

__all__ = [
    "AsyncRateLimiter",
    "Decision",
    "Limit",
    "LimitState",
    "RateLimitMiddleware",
    "RateLimitStats",
    "RateLimiter",
    "RouteLimit",
    "parse_limits",
    "peer_address",
    "rate_limit_headers",
]
