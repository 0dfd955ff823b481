"""``HttpCache``: a shared HTTP cache (RFC 9111) as ASGI middleware, stored in veneer.

The middleware routes requests; what responses mean is decided in ``_policy``.
Every cache call goes through the public API of :class:`~veneer.AsyncCache`,
which never raises for Redis: with Redis down, responses come from the
in-process tier or from the app, never as errors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Final
from urllib.parse import urljoin, urlsplit

from .._async._cache import AsyncCache
from .._errors import SourceOverloaded
from ._asgi import (
    ASGIApp,
    Headers,
    Message,
    Receive,
    Scope,
    Send,
    canonical_url,
    has_body,
    simple_response,
    with_headers,
    without,
)
from ._config import HttpConfig
from ._loads import Fill, Loads
from ._origin import Origin, Outcome
from ._policy import Entry, Request, StoredResponse, Verdict, judge, usable
from ._revalidation import CONDITIONAL, Revalidator
from ._stats import HttpStats
from ._store import UrlIndex

__all__ = ["HttpCache"]

_SAFE: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_PRECONDITIONS: Final = frozenset({b"if-match", b"if-unmodified-since", b"if-range"})


class HttpCache:
    """A shared HTTP cache in front of an ASGI app, kept in a veneer :class:`AsyncCache`.

    ``app.add_middleware(HttpCache, cache=acache)`` (Starlette, FastAPI) or
    ``HttpCache(app, acache)``. Responses are stored by the rules of RFC 9111 for a
    shared cache; a route tags its response with :func:`veneer.http.tag` or the
    ``Surrogate-Key`` response header (removed before the client sees it), and
    ``await acache.invalidate_tag(name)`` (or the SQLAlchemy integration, after
    commit) purges every response with that tag, in every process.

    Options (see ``docs/http.md``):

    - ``stale_if_error``: seconds past freshness a response is served when the app
      raises or answers 5xx, unless the response set its own ``stale-if-error`` or
      forbids stale use (``must-revalidate``, ``no-cache``, ``s-maxage``).
    - ``keep_stale``: seconds a stale response with a validator is kept for revalidation.
    - ``heuristic_fraction`` / ``heuristic_max``: freshness of a response with only a
      ``Last-Modified`` (10% of its age, at most an hour; 0 turns it off).
    - ``max_body_bytes``: larger bodies pass through unstored, streamed as they come
      (default: the cache's ``max_value_bytes``).
    - ``share_set_cookie``: store responses that set cookies (off: never shared).
    - ``request_directives``: honour the client's ``Cache-Control`` (``no-cache``,
      ``max-age``, ``min-fresh``, ``max-stale``, ``only-if-cached``, ``no-store``).
    - ``targeted_fields``: fields that override ``Cache-Control`` for this cache
      (RFC 9213), most specific first.
    - ``key``: ``scope -> str`` for the primary key (default: scheme, host, path, query).
    - ``tags``: ``scope -> tags`` known before the app runs (stored on the first load).
    - ``pass_ttl``: seconds a URL whose response could not be stored is passed straight
      to the app, without a shared load (0: never).
    """

    def __init__(
        self,
        app: ASGIApp,
        cache: AsyncCache,
        *,
        stale_if_error: float = 60.0,
        keep_stale: float = 60.0,
        heuristic_fraction: float = 0.1,
        heuristic_max: float = 3600.0,
        max_body_bytes: int | None = None,
        share_set_cookie: bool = False,
        request_directives: bool = True,
        targeted_fields: Iterable[str] = ("cdn-cache-control",),
        tag_header: str = "surrogate-key",
        key: Callable[[Scope], str] | None = None,
        tags: Callable[[Scope], Iterable[str]] | None = None,
        max_ttl: float | None = None,
        max_tags: int = 64,
        pass_ttl: float = 60.0,
    ) -> None:
        self.config = HttpConfig.build(
            cache,
            stale_if_error=stale_if_error,
            keep_stale=keep_stale,
            heuristic_fraction=heuristic_fraction,
            heuristic_max=heuristic_max,
            max_body_bytes=max_body_bytes,
            share_set_cookie=share_set_cookie,
            request_directives=request_directives,
            targeted_fields=targeted_fields,
            tag_header=tag_header,
            key=key,
            tags=tags,
            max_ttl=max_ttl,
            max_tags=max_tags,
            pass_ttl=pass_ttl,
        )
        self.app = app
        self.cache = cache
        self._loads = Loads(app, cache, self.config)
        self.store = self._loads.store
        self._revalidator = Revalidator(self._loads)
        self._stats = HttpStats()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method in ("GET", "HEAD"):
            await self._safe(scope, receive, send)
        elif method in _SAFE:
            self._stats.passes += 1
            await self._loads.pass_through(scope, receive, send)
        else:
            self._stats.passes += 1
            await self._unsafe(scope, receive, send)

    def stats(self) -> HttpStats:
        """A copy of this middleware's counters (the cache's own are in ``cache.stats()``)."""
        s = self._stats
        return HttpStats(**{name: getattr(s, name) for name in s.__dataclass_fields__})

    async def invalidate_url(self, url: str) -> None:
        """Drop every stored variant of ``url`` (``https://host/path?query``)."""
        await self.store.invalidate_url(canonical_url(url))

    # ------------------------------------------------------------- safe methods

    async def _safe(self, scope: Scope, receive: Receive, send: Send) -> None:
        loads = self._loads
        headers = scope.get("headers", [])
        directives = self.config.request_directives
        request = Request.from_headers(scope["method"], headers, directives=directives)
        if has_body(headers) or any(name in _PRECONDITIONS for name, _ in headers):
            self._stats.passes += 1
            await loads.pass_through(scope, receive, send)
            return
        url = loads.url(scope)
        index = await self.store.index(url)
        only_cached = "only-if-cached" in request.directives
        if index is not None and index.passthrough and not only_cached:
            self._stats.passes += 1
            await loads.pass_through(scope, receive, send)
            return
        entry, slot = await self._lookup(url, index, request)
        if only_cached:
            if entry is not None and judge(entry, request, time.time()) is not Verdict.REVALIDATE:
                await loads.serve(entry, request, send)
            else:
                await simple_response(send, 504, b"Gateway Timeout: not in cache (only-if-cached)")
            return
        if entry is not None:
            assert index is not None
            verdict = judge(entry, request, time.time())
            if verdict is Verdict.FRESH:
                self._stats.hits += 1
                await loads.serve(entry, request, send)
            elif verdict is Verdict.STALE:
                self._stats.stale_hits += 1
                await loads.serve(entry, request, send)
            elif verdict is Verdict.STALE_REVALIDATE:
                self._stats.stale_hits += 1
                await loads.serve(entry, request, send)
                key = self.store.entry_key(url, index, slot)
                self._revalidator.later(url, index, key, entry, request, scope)
            elif request.method == "HEAD":
                self._stats.passes += 1
                await loads.pass_through(scope, receive, send)
            else:
                self._stats.revalidations += 1
                key = self.store.entry_key(url, index, slot)
                await self._revalidator.now(url, index, key, entry, request, scope, receive, send)
            return
        if request.method == "HEAD" or request.has("range") or "no-store" in request.directives:
            self._stats.passes += 1
            await loads.pass_through(scope, receive, send)
            return
        self._stats.misses += 1
        await self._fill(url, index, slot, request, scope, receive, send)

    async def _lookup(
        self, url: str, index: UrlIndex | None, request: Request
    ) -> tuple[StoredResponse | None, str]:
        """The stored response for ``request`` (or None) and the slot it lives (or goes) in.

        The slot ``-`` holds the URL's first variant, which also tells the Vary fields
        that key the others.
        """
        if index is None:
            return None, "-"
        first = await self.store.entry(self.store.entry_key(url, index, "-"))
        if first is None:
            return None, "-"
        if usable(first, request):
            return first, "-"
        if not first.vary:
            return None, "-"
        slot = self.store.slot(first.vary, request)
        found = await self.store.entry(self.store.entry_key(url, index, slot))
        if found is not None and not usable(found, request):
            found = None
        return found, slot

    # --------------------------------------------------------------------- miss

    async def _fill(
        self,
        url: str,
        index: UrlIndex | None,
        slot: str,
        request: Request,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """A miss: one load of the app per key (single-flight here, a lease across
        processes); its answer is shared with the requests that waited for it when it
        may be shared, and stored when it may be stored."""
        loads = self._loads
        if index is None:
            index = await self.store.create_index(url)
        known = loads.known_tags(scope, index)
        fill = Fill()
        origin_scope = with_headers(scope, without(scope.get("headers", []), CONDITIONAL))
        calls = 0

        async def load() -> StoredResponse | None:
            nonlocal calls
            calls += 1
            first = calls == 1  # later calls: the cache's own background refresh
            origin = loads.origin(origin_scope, receive if first else None, send if first else None)
            if first:
                fill.origin = origin
            outcome = await origin.start()
            if outcome is not Outcome.COMPLETE:
                return None
            entry = loads.entry(request, origin)
            if first:
                fill.entry = entry
            if entry.stored is None:
                return None
            if not set(entry.tags) <= known:
                await loads.learn(url, index, entry.tags)
                return entry.stored  # shareable, but stored only once its tags are known
            if first:
                fill.storage_ttl = entry.storage_ttl
            elif entry.storage_ttl:
                fill.entry, fill.storage_ttl = entry, entry.storage_ttl
            return entry.stored

        key = self.store.entry_key(url, index, slot)
        try:
            value = await self.cache.get_or_load(
                key, load, ttl=fill.ttl, tags=sorted(known), type=StoredResponse
            )
        except SourceOverloaded:
            # The cache's bulkhead is full: the app is the source, so ask it directly.
            await loads.pass_through(scope, receive, send)
            return
        except BaseException:
            if fill.origin is not None:
                fill.origin.cancel()
            raise
        origin = fill.origin
        if fill.storage_ttl:
            self._stats.stored += 1
        if origin is not None:
            if slot == "-" and _not_storable_here(origin, fill.entry):
                await self.store.mark_pass(url, index)
            await loads.answer_own(origin, fill.entry, request, send)
        elif isinstance(value, StoredResponse) and usable(value, request):
            await loads.serve(value, request, send)
        else:
            await loads.pass_through(scope, receive, send)

    # ------------------------------------------------------------------ unsafe

    async def _unsafe(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; on a non-error answer, invalidate the URL (and the same-host
        Location / Content-Location) before the client sees the answer."""
        strip = self.config.policy.tag_header

        async def forward(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(bytes(n).lower(), bytes(v)) for n, v in message.get("headers", [])]
                if int(message["status"]) < 400:
                    await self._invalidate_after_unsafe(scope, headers)
                message = dict(message, headers=[(n, v) for n, v in headers if n != strip])
            await send(message)

        await self.app(scope, receive, forward)

    async def _invalidate_after_unsafe(self, scope: Scope, headers: Headers) -> None:
        url = self._loads.url(scope)
        targets = [url]
        if self.config.key is None:
            for name in (b"location", b"content-location"):
                for field_name, value in headers:
                    if field_name == name:
                        other = canonical_url(urljoin(url, value.decode("latin-1").strip()))
                        if urlsplit(other).netloc == urlsplit(url).netloc:
                            targets.append(other)
        for target in dict.fromkeys(targets):
            await self.store.invalidate_url(target)


def _not_storable_here(origin: Origin, entry: Entry | None) -> bool:
    """Whether this URL's responses are, for now, not storable (so later requests should
    skip the shared load): not for one request's own reasons or a passing failure."""
    if origin.outcome in (Outcome.STREAMING, Outcome.TOO_LARGE):
        return origin.status < 500
    if origin.outcome is not Outcome.COMPLETE or entry is None:
        return False
    return entry.stored is None and not entry.transient
