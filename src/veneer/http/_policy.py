"""The HTTP cache's decision core (RFC 9111, RFC 5861, RFC 9213): no I/O.

What may be stored, for how long it is fresh, whether a stored response may
answer a request (fresh, stale, after revalidation), how a ``304`` updates it
and how a client's own conditional request is answered: pure functions over
header lists and clocks, unit-tested without servers. The middleware only
moves messages between the client, the app and the cache.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

import msgspec

from ._fields import (
    Directives,
    cdn_directives,
    first_age,
    http_date,
    list_items,
    parse_directives,
)

__all__ = [
    "AUTH_OK",
    "NOT_MODIFIED_FIELDS",
    "NOT_UPDATED",
    "NO_CACHE",
    "NO_STALE",
    "Entry",
    "Headers",
    "Policy",
    "Request",
    "StoredResponse",
    "Verdict",
    "build_entry",
    "current_age",
    "field_map",
    "judge",
    "normalize_field",
    "response_directives",
    "stale_on_error",
    "usable",
    "vary_values",
]

Headers = list[tuple[bytes, bytes]]

# Flags of a stored response, decided once when it is stored.
NO_STALE: Final = 1  # must-revalidate, proxy-revalidate, s-maxage or no-cache: never served stale
NO_CACHE: Final = 2  # unqualified no-cache: revalidated before every reuse
AUTH_OK: Final = 4  # public, must-revalidate or s-maxage: may answer requests with Authorization

HEURISTIC_STATUSES: Final = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501})
"""RFC 9110 15.1: cacheable by default, so heuristic freshness may apply."""
UNDERSTOOD_STATUSES: Final = frozenset(
    {200, 203, 204, 300, 301, 302, 303, 307, 308, 400, 403, 404, 405, 410, 414, 500, 501,
     502, 503, 504}
)  # fmt: skip
"""Statuses whose caching rules veneer implements, for ``must-understand``."""

# Never stored (RFC 9111 3.1: hop-by-hop and proxy fields) and never taken from a 304.
_NOT_STORED: Final = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"transfer-encoding",
     b"upgrade", b"trailer", b"proxy-authenticate", b"proxy-authentication-info",
     b"proxy-authorization", b"age"}
)  # fmt: skip
NOT_UPDATED: Final = _NOT_STORED | {b"content-length"}
NOT_MODIFIED_FIELDS: Final = (
    b"cache-control", b"content-location", b"date", b"etag", b"expires", b"vary",
    b"last-modified", b"cdn-cache-control",
)  # fmt: skip
_QLIST_FIELDS: Final = frozenset({"accept-language", "accept-encoding", "accept-charset"})


class StoredResponse(msgspec.Struct, array_like=True):
    """One stored response, with what its reuse needs decided at store time."""

    status: int
    headers: Headers
    body: bytes
    request_time: float
    response_time: float
    initial_age: float
    lifetime: float
    flags: int
    swr: float  # stale-while-revalidate seconds, -1: not given
    sie: float  # stale-if-error seconds, -1: not given (the middleware's default applies)
    vary: list[tuple[str, str | None]]  # the request's (normalized) value of each Vary field
    etag: str | None
    last_modified: str | None


@dataclass(frozen=True, slots=True)
class Policy:
    """The middleware's choices that the RFCs leave to the cache."""

    heuristic_fraction: float = 0.1
    heuristic_max: float = 3600.0
    stale_if_error: float = 60.0
    keep_stale: float = 60.0
    max_ttl: float = 86_400.0
    share_set_cookie: bool = False
    targeted_fields: tuple[str, ...] = ("cdn-cache-control",)
    tag_header: bytes = b"surrogate-key"


@dataclass(slots=True)
class Request:
    """What the cache reads from a request (GET or HEAD)."""

    method: str
    fields: dict[str, list[str]]
    directives: Directives = field(default_factory=Directives)

    @classmethod
    def from_headers(cls, method: str, headers: Iterable[tuple[bytes, bytes]], *,
                     directives: bool = True) -> Request:  # fmt: skip
        fields = field_map(headers)
        parsed = parse_directives(fields.get("cache-control", ())) if directives else Directives()
        return cls(method, fields, parsed)

    def has(self, name: str) -> bool:
        return name in self.fields

    def first(self, name: str) -> str | None:
        lines = self.fields.get(name)
        return lines[0] if lines else None


def field_map(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for name, value in headers:
        fields.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    return fields


# -------------------------------------------------------------------- storing


@dataclass(slots=True)
class Entry:
    """The outcome of :func:`build_entry`: the response to store (or why not)."""

    stored: StoredResponse | None
    reason: str
    storage_ttl: float = 0.0
    tags: list[str] = field(default_factory=list)
    transient: bool = False
    """The refusal depends on this request or on a passing state (Authorization, a cookie
    being set, a 5xx): it says nothing about the URL's next responses."""


def response_directives(fields: dict[str, list[str]], policy: Policy) -> Directives:
    """The targeted field (RFC 9213) when present and valid, else Cache-Control."""
    for name in policy.targeted_fields:
        targeted = cdn_directives(fields.get(name, ()))
        if targeted is not None:
            return targeted
    return parse_directives(fields.get("cache-control", ()))


def build_entry(
    request: Request,
    status: int,
    headers: Headers,
    body: bytes,
    *,
    request_time: float,
    response_time: float,
    policy: Policy,
) -> Entry:
    """Decide whether a response to ``request`` may be stored and shared (RFC 9111 3)."""
    if request.method != "GET":
        return Entry(None, "method", transient=True)
    if "no-store" in request.directives:
        return Entry(None, "request no-store", transient=True)
    fields = field_map(headers)
    cc = response_directives(fields, policy)
    if "must-understand" in cc:
        if status not in UNDERSTOOD_STATUSES:
            return Entry(None, "must-understand, status not understood")
    elif "no-store" in cc:
        return Entry(None, "no-store")
    if status < 200 or status in (206, 304):
        return Entry(None, f"status {status}")
    if "private" in cc and cc.get("private") is None:
        return Entry(None, "private")
    shareable_with_auth = "public" in cc or "must-revalidate" in cc or "s-maxage" in cc
    if request.has("authorization") and not shareable_with_auth:
        return Entry(None, "request has Authorization", transient=True)
    if "set-cookie" in fields and not policy.share_set_cookie:
        return Entry(None, "Set-Cookie", transient=True)
    vary_names = [name.lower() for name in list_items(fields.get("vary", ()))]
    if "*" in vary_names:
        return Entry(None, "Vary: *")

    date = http_date(_first(fields, "date"))
    lifetime, explicit = _lifetime(fields, cc, status, date, response_time, policy)
    if not explicit:
        if request.has("cookie"):
            # A response to a request with a cookie is shared only when the origin
            # said how long: a heuristic would share personalised pages.
            return Entry(None, "heuristic freshness for a request with Cookie", transient=True)
        if status not in HEURISTIC_STATUSES and "public" not in cc:
            return Entry(None, f"status {status} without explicit freshness",
                         transient=status >= 500)  # fmt: skip
    etag = _first(fields, "etag")
    last_modified = _first(fields, "last-modified")
    no_cache = "no-cache" in cc and cc.get("no-cache") is None
    no_stale = no_cache or "must-revalidate" in cc or "proxy-revalidate" in cc or "s-maxage" in cc
    validator = etag is not None or last_modified is not None
    if lifetime <= 0 and not validator and (no_stale or not explicit):
        return Entry(None, "nothing to reuse it for")

    swr = _seconds_or_none(cc, "stale-while-revalidate")
    sie = _seconds_or_none(cc, "stale-if-error")
    keep = policy.keep_stale if validator else 0.0
    if not no_stale:
        keep = max(keep, swr, sie if sie >= 0 else policy.stale_if_error)
    age_value = first_age(fields.get("age", ()))
    apparent_age = max(0.0, response_time - date) if date is not None else 0.0
    initial_age = max(apparent_age, age_value + max(0.0, response_time - request_time))
    storage_ttl = min(policy.max_ttl, max(0.0, lifetime - initial_age) + keep)
    if storage_ttl <= 0:
        return Entry(None, "already past its storage window")

    drop = set(_NOT_STORED)
    drop.add(policy.tag_header)
    for listed in list_items(fields.get("connection", ())):
        drop.add(listed.lower().encode("latin-1"))
    for qualified in ("no-cache", "private"):
        for name in cc.field_names(qualified):
            drop.add(name.encode("latin-1"))
    kept = [(name, value) for name, value in headers if name not in drop]
    flags = (NO_STALE if no_stale else 0) | (NO_CACHE if no_cache else 0)
    flags |= AUTH_OK if shareable_with_auth else 0
    stored = StoredResponse(
        status=status,
        headers=kept,
        body=body,
        request_time=request_time,
        response_time=response_time,
        initial_age=initial_age,
        lifetime=lifetime,
        flags=flags,
        swr=float(swr),
        sie=float(sie),
        vary=vary_values(vary_names, request),
        etag=etag,
        last_modified=last_modified,
    )
    return Entry(stored, "stored", storage_ttl)


def _first(fields: dict[str, list[str]], name: str) -> str | None:
    lines = fields.get(name)
    return lines[0] if lines else None


def _seconds_or_none(cc: Directives, name: str) -> int:
    value = cc.seconds(name)
    return -1 if value is None else value


def _lifetime(
    fields: dict[str, list[str]],
    cc: Directives,
    status: int,
    date: float | None,
    response_time: float,
    policy: Policy,
) -> tuple[float, bool]:
    """Freshness lifetime (RFC 9111 4.2.1) for a shared cache, and whether it is explicit.

    An explicit directive that cannot be used (``max-age=abc``, two different
    ``max-age``) makes the response stale rather than heuristically fresh.
    """
    for name in ("s-maxage", "max-age"):
        seconds = cc.seconds(name)
        if seconds is not None:
            return float(max(seconds, 0)), True
    expires = fields.get("expires")
    if expires is not None:
        when = http_date(expires[0]) if len(expires) == 1 else None
        if when is None:
            return 0.0, True  # an invalid Expires (such as "0") means already expired
        return when - (date if date is not None else response_time), True
    if policy.heuristic_fraction <= 0 or policy.heuristic_max <= 0:
        return 0.0, False
    if status not in HEURISTIC_STATUSES and "public" not in cc:
        return 0.0, False
    modified = http_date(_first(fields, "last-modified"))
    if modified is None:
        return 0.0, False
    since = (date if date is not None else response_time) - modified
    return min(max(0.0, since * policy.heuristic_fraction), policy.heuristic_max), False


# ---------------------------------------------------------------------- vary


def normalize_field(name: str, lines: Sequence[str] | None) -> str | None:
    """A request field's value as Vary compares it: lines combined, whitespace around
    list members dropped; ``Accept-Language``/``-Encoding``/``-Charset`` compared as
    sets of (case-insensitive) choices with their weights."""
    if lines is None:
        return None
    items = list_items(lines)
    if name not in _QLIST_FIELDS:
        return ",".join(items)
    weighted: list[tuple[float, str]] = []
    for item in items:
        choice, _, params = item.partition(";")
        weight = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 1.0
        weighted.append((-weight, choice.strip().lower()))
    weighted.sort()
    return ",".join(c if w == -1.0 else f"{c};q={-w:g}" for w, c in weighted)


def vary_values(names: Sequence[str], request: Request) -> list[tuple[str, str | None]]:
    return [(name, normalize_field(name, request.fields.get(name))) for name in names]


def usable(stored: StoredResponse, request: Request) -> bool:
    """Whether ``stored`` may answer ``request`` at all (Vary, Authorization)."""
    if request.has("authorization") and not stored.flags & AUTH_OK:
        return False
    for name, value in stored.vary:
        if normalize_field(name, request.fields.get(name)) != value:
            return False
    return True


# --------------------------------------------------------------------- reuse


class Verdict(enum.Enum):
    FRESH = "fresh"
    STALE = "stale"  # the client accepts it stale (max-stale)
    STALE_REVALIDATE = "stale-while-revalidate"  # serve it, revalidate in the background
    REVALIDATE = "revalidate"  # ask the origin first


def current_age(stored: StoredResponse, now: float) -> float:
    return stored.initial_age + max(0.0, now - stored.response_time)


def judge(stored: StoredResponse, request: Request, now: float) -> Verdict:
    """How a usable stored response may answer ``request`` (RFC 9111 4, RFC 5861)."""
    cc = request.directives
    if stored.flags & NO_CACHE or "no-cache" in cc:
        return Verdict.REVALIDATE
    age = current_age(stored, now)
    fresh = stored.lifetime > age
    max_age = cc.seconds("max-age")
    if max_age is not None and age > max_age:
        return Verdict.REVALIDATE
    min_fresh = cc.seconds("min-fresh")
    if min_fresh is not None and stored.lifetime - age < min_fresh:
        return Verdict.REVALIDATE
    if fresh:
        return Verdict.FRESH
    if stored.flags & NO_STALE:
        return Verdict.REVALIDATE
    staleness = age - stored.lifetime
    if "max-stale" in cc:
        allowed = cc.seconds("max-stale")
        if cc.get("max-stale") is None or (allowed is not None and staleness <= allowed):
            return Verdict.STALE
    if stored.swr >= 0 and staleness <= stored.swr:
        return Verdict.STALE_REVALIDATE
    return Verdict.REVALIDATE


def stale_on_error(stored: StoredResponse, request: Request, now: float, default: float) -> bool:
    """Whether ``stored`` may be served because the origin failed (stale-if-error, RFC 5861;
    the middleware's ``default`` window when the response gave none)."""
    if stored.flags & NO_STALE:
        return False
    staleness = current_age(stored, now) - stored.lifetime
    window = stored.sie if stored.sie >= 0 else default
    asked = request.directives.seconds("stale-if-error")
    if asked is not None and asked >= 0:
        window = max(window, asked)
    return staleness <= window
