"""``HttpCache``: a shared HTTP cache (RFC 9111) as ASGI middleware, stored in veneer.

The middleware moves messages; what they mean is decided in ``_policy``. Every
cache call goes through the public API of :class:`~veneer.AsyncCache`, which
never raises for Redis: with Redis down, responses come from the in-process
tier or from the app, never as errors.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any, Final
from urllib.parse import urljoin, urlsplit

from .._async._cache import AsyncCache
from .._errors import ConfigurationError, SourceOverloaded
from .._policy import lease_backoff
from ._origin import ASGIApp, Headers, Message, Origin, Outcome, Receive, Scope, Send
from ._policy import (
    Entry,
    Policy,
    Request,
    StoredResponse,
    Verdict,
    build_entry,
    conditional_status,
    field_map,
    judge,
    merge_304,
    not_modified_headers,
    range_response,
    response_directives,
    serve_headers,
    stale_on_error,
    tags_of,
    usable,
    validators,
)
from ._store import ResponseStore, UrlIndex

__all__ = ["HttpCache"]

log = logging.getLogger("veneer.http")

_SAFE: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_CONDITIONAL: Final = frozenset({b"if-none-match", b"if-modified-since"})
_PRECONDITIONS: Final = frozenset({b"if-match", b"if-unmodified-since", b"if-range"})
_NO_BODY_STATUS: Final = frozenset({204, 304})
_MAX_TAG_LENGTH: Final = 200


class _Pass:
    """Handed to requests that shared a load whose response they may not use."""

    __slots__ = ()


PASS: Final = _Pass()
BUSY: Final = object()


class _Fill:
    """What one request's loader learned; only that request reads it."""

    __slots__ = ("entry", "origin", "storage_ttl", "use_stale")

    def __init__(self) -> None:
        self.origin: Origin | None = None
        self.entry: Entry | None = None
        self.storage_ttl: float | None = None
        self.use_stale = False

    def ttl(self, value: Any) -> float | None:
        entry = self.entry
        if entry is not None and entry.stored is value and self.storage_ttl:
            return self.storage_ttl
        return None


class HttpCache:
    """A shared HTTP cache in front of an ASGI app, kept in a veneer :class:`AsyncCache`.

    ``app.add_middleware(HttpCache, cache=acache)`` (Starlette, FastAPI) or
    ``HttpCache(app, acache)``. Responses are stored by the rules of RFC 9111 for a
    shared cache; a route tags its response with :func:`veneer.http.tag` or the
    ``Surrogate-Key`` response header (removed before the client sees it), and
    ``await acache.invalidate_tag(name)`` (or the SQLAlchemy integration, after
    commit) purges every response with that tag, in every process.

    Options:

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
    ) -> None:
        if not isinstance(cache, AsyncCache):
            raise ConfigurationError(
                f"HttpCache needs a veneer AsyncCache (ASGI is asyncio), got {cache!r}"
            )
        for name, value in (
            ("stale_if_error", stale_if_error),
            ("keep_stale", keep_stale),
            ("heuristic_fraction", heuristic_fraction),
            ("heuristic_max", heuristic_max),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigurationError(f"{name}={value!r} must be a number >= 0 (0 turns it off)")
        if heuristic_fraction > 1:
            raise ConfigurationError(
                f"heuristic_fraction={heuristic_fraction!r} must be at most 1 (0.1 is usual)"
            )
        limit = cache.options.max_value_bytes if max_body_bytes is None else max_body_bytes
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigurationError(f"max_body_bytes={max_body_bytes!r} must be an integer >= 1")
        if isinstance(max_tags, bool) or not isinstance(max_tags, int) or max_tags < 1:
            raise ConfigurationError(f"max_tags={max_tags!r} must be an integer >= 1")
        ceiling = cache.options.max_ttl if max_ttl is None else cache.options.resolve_ttl(max_ttl)
        header = tag_header.strip().lower()
        if not header:
            raise ConfigurationError("tag_header must name a response header (surrogate-key)")
        self.app = app
        self.cache = cache
        self.policy = Policy(
            heuristic_fraction=float(heuristic_fraction),
            heuristic_max=float(heuristic_max),
            stale_if_error=float(stale_if_error),
            keep_stale=float(keep_stale),
            max_ttl=ceiling,
            share_set_cookie=share_set_cookie,
            targeted_fields=tuple(f.lower() for f in targeted_fields),
            tag_header=header.encode("latin-1"),
        )
        self.max_body_bytes = limit
        self.request_directives = request_directives
        self._key = key
        self._tags = tags
        self._max_tags = max_tags
        self.store = ResponseStore(cache, index_ttl=ceiling)
        self._revalidations: dict[str, asyncio.Future[StoredResponse | None]] = {}
        self._background: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ entry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method in ("GET", "HEAD"):
            await self._safe(scope, receive, send)
        elif method in _SAFE:
            await self.app(scope, receive, self._stripping(send))
        else:
            await self._unsafe(scope, receive, send)

    async def invalidate_url(self, url: str) -> None:
        """Drop every stored variant of ``url`` (``https://host/path?query``)."""
        await self.store.invalidate_url(_canonical(url))

    # ------------------------------------------------------------- safe methods

    async def _safe(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = scope.get("headers", [])
        request = Request.from_headers(scope["method"], headers, directives=self.request_directives)
        if _has_body(headers) or any(name in _PRECONDITIONS for name, _ in headers):
            await self.app(scope, receive, self._stripping(send))
            return
        url = self._url(scope)
        index = await self.store.index(url)
        entry, slot = await self._lookup(url, index, request)
        now = time.time()
        if "only-if-cached" in request.directives:
            if entry is not None and judge(entry, request, now) is not Verdict.REVALIDATE:
                await self._serve(entry, request, send, now)
            else:
                await _simple(send, 504, b"Gateway Timeout: not in cache (only-if-cached)")
            return
        if entry is not None:
            verdict = judge(entry, request, now)
            if verdict is Verdict.FRESH or verdict is Verdict.STALE:
                await self._serve(entry, request, send, now)
                return
            if verdict is Verdict.STALE_REVALIDATE:
                await self._serve(entry, request, send, now)
                assert index is not None
                self._revalidate_later(url, index, slot, entry, request, scope)
                return
            if request.method == "HEAD":
                await self.app(scope, receive, self._stripping(send))
                return
            assert index is not None
            await self._revalidate(url, index, slot, entry, request, scope, receive, send)
            return
        if request.method == "HEAD" or request.has("range") or "no-store" in request.directives:
            await self.app(scope, receive, self._stripping(send))
            return
        await self._fill(url, index, slot, request, scope, receive, send)

    async def _lookup(
        self, url: str, index: UrlIndex | None, request: Request
    ) -> tuple[StoredResponse | None, str]:
        """The stored response for ``request`` (or None) and the slot it lives (or goes) in."""
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
        if index is None:
            index = await self.store.create_index(url)
        known = self._known_tags(scope, index)
        fill = _Fill()
        origin_scope = _with_headers(scope, _without(scope.get("headers", []), _CONDITIONAL))
        calls = 0

        async def load() -> StoredResponse | _Pass:
            nonlocal calls
            calls += 1
            first = calls == 1
            origin = self._origin(origin_scope, receive if first else None, send if first else None)
            if first:
                fill.origin = origin
            outcome = await origin.start()
            if outcome is not Outcome.COMPLETE:
                return PASS
            entry = self._entry(request, origin)
            if first:
                fill.entry = entry
            if entry.stored is None:
                return PASS
            if not set(entry.tags) <= known:
                await self._learn(url, index, entry.tags)
                return entry.stored  # shareable, but stored only once its tags are known
            if first:
                fill.storage_ttl = entry.storage_ttl
            elif entry.storage_ttl:
                # A background refresh (the cache's own early refresh): it stores itself.
                fill.entry, fill.storage_ttl = entry, entry.storage_ttl
            return entry.stored

        key = self.store.entry_key(url, index, slot)
        try:
            value = await self.cache.get_or_load(
                key, load, ttl=fill.ttl, tags=sorted(known), type=StoredResponse
            )
        except SourceOverloaded:
            # The cache's bulkhead is full: the app is the source, so ask it directly.
            await self.app(scope, receive, self._stripping(send))
            return
        except BaseException:
            if fill.origin is not None:
                fill.origin.cancel()
            raise
        origin = fill.origin
        if origin is not None:
            await self._answer_own(origin, fill.entry, request, send)
            return
        if isinstance(value, StoredResponse) and usable(value, request):
            await self._serve(value, request, send, time.time())
            return
        await self.app(scope, receive, self._stripping(send))

    async def _answer_own(
        self, origin: Origin, entry: Entry | None, request: Request, send: Send
    ) -> None:
        """Send the response this request's own app call produced (no ``Age``: it is the
        origin's answer to this very request)."""
        if origin.outcome is Outcome.FAILED:
            assert origin.error is not None
            raise origin.error
        if origin.outcome is not Outcome.COMPLETE:
            await origin.finish()  # it is being streamed to the client
            return
        stored = entry.stored if entry is not None else None
        if stored is not None:
            if conditional_status(stored, request) == 304:
                await _respond(send, 304, not_modified_headers(stored, None))
                return
            if request.has("range"):
                ranged = range_response(stored, request.first("range") or "", None)
                if ranged is not None:
                    await _respond(send, *ranged)
                    return
        await _respond(send, origin.status, origin.client_headers(), origin.body)

    # ----------------------------------------------------------- revalidation

    async def _revalidate(
        self,
        url: str,
        index: UrlIndex,
        slot: str,
        entry: StoredResponse,
        request: Request,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        key = self.store.entry_key(url, index, slot)
        running = self._revalidations.get(key)
        if running is not None:
            # Another request in this process is asking the app already: share its answer.
            fresh = await asyncio.shield(running)
            if fresh is not None and usable(fresh, request):
                await self._serve(fresh, request, send, time.time())
                return
            if stale_on_error(entry, request, time.time(), self.policy.stale_if_error):
                await self._serve(entry, request, send, time.time())
                return
            await self.app(scope, receive, self._stripping(send))
            return
        future: asyncio.Future[StoredResponse | None] = asyncio.get_running_loop().create_future()
        self._revalidations[key] = future
        outcome: StoredResponse | None = None
        try:
            outcome = await self._ask(url, index, key, entry, request, scope, receive, send)
        finally:
            if self._revalidations.get(key) is future:
                del self._revalidations[key]
            future.set_result(outcome)

    async def _ask(
        self,
        url: str,
        index: UrlIndex,
        key: str,
        entry: StoredResponse,
        request: Request,
        scope: Scope,
        receive: Receive | None,
        send: Send | None,
    ) -> StoredResponse | None:
        """Revalidate ``entry`` with the app and answer the client (if any); returns the
        response other requests may now use (None: they cannot use this answer)."""
        known = self._known_tags(scope, index)
        fill = _Fill()
        headers = _without(scope.get("headers", []), _CONDITIONAL | {b"range"})
        origin_scope = _with_headers(scope, headers + validators(entry))

        async def load() -> StoredResponse | _Pass:
            origin = self._origin(origin_scope, receive, send)
            fill.origin = origin
            outcome = await origin.start()
            now = time.time()
            failed = outcome is Outcome.FAILED or (
                outcome is Outcome.COMPLETE and origin.status >= 500
            )
            if failed and stale_on_error(entry, request, now, self.policy.stale_if_error):
                fill.use_stale = True
                return PASS
            if outcome is not Outcome.COMPLETE:
                return PASS
            if origin.status == 304:
                fill.entry = merge_304(
                    entry,
                    origin.headers,
                    request=request,
                    request_time=origin.request_time,
                    response_time=origin.response_time,
                    policy=self.policy,
                )
                fill.entry.tags = self._tags_of(origin)
            else:
                fill.entry = self._entry(request, origin)
            stored = fill.entry.stored
            if stored is None:
                return PASS
            if not set(fill.entry.tags) <= known:
                await self._learn(url, index, fill.entry.tags)
                return stored
            fill.storage_ttl = fill.entry.storage_ttl
            return stored

        try:
            value = await self.cache.refresh(
                key, load, ttl=fill.ttl, tags=sorted(known), default=BUSY
            )
        except BaseException:
            if fill.origin is not None:
                fill.origin.cancel()
            raise
        if value is BUSY:
            if send is None or receive is None:
                return None
            # Another process is revalidating it: wait (bounded) for its answer.
            return await self._await_other(key, entry, request, scope, receive, send)
        shared = value if isinstance(value, StoredResponse) else None
        origin = fill.origin
        if send is None or origin is None:
            return shared
        if fill.use_stale:
            await self._serve(entry, request, send, time.time())
            return None
        if shared is not None and origin.status == 304:
            await self._serve(shared, request, send, time.time())  # freshened from the store
            return shared
        await self._answer_own(origin, fill.entry, request, send)
        return shared

    async def _await_other(
        self,
        key: str,
        entry: StoredResponse,
        request: Request,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> StoredResponse | None:
        """Poll (bounded by the cache's ``lease_wait``) for another process's revalidation;
        then ask the app without storing."""
        deadline = time.monotonic() + self.cache.options.lease_wait_seconds
        attempt = 0
        while time.monotonic() < deadline:
            await asyncio.sleep(lease_backoff(attempt, random.random()))
            attempt += 1
            found = await self.store.entry(key)
            if found is not None and found.response_time != entry.response_time:
                if usable(found, request) and judge(found, request, time.time()) in (
                    Verdict.FRESH,
                    Verdict.STALE,
                ):
                    await self._serve(found, request, send, time.time())
                    return found
                break
        await self.app(scope, receive, self._stripping(send))
        return None

    def _revalidate_later(
        self,
        url: str,
        index: UrlIndex,
        slot: str,
        entry: StoredResponse,
        request: Request,
        scope: Scope,
    ) -> None:
        """stale-while-revalidate: one background revalidation per key in this process."""
        key = self.store.entry_key(url, index, slot)
        if key in self._revalidations:
            return
        future: asyncio.Future[StoredResponse | None] = asyncio.get_running_loop().create_future()
        self._revalidations[key] = future
        copied = dict(scope)

        async def run() -> None:
            outcome: StoredResponse | None = None
            try:
                outcome = await self._ask(url, index, key, entry, request, copied, None, None)
            except Exception:
                log.warning("veneer.http: background revalidation of %s failed", url,
                            exc_info=True)  # fmt: skip
            finally:
                if self._revalidations.get(key) is future:
                    del self._revalidations[key]
                future.set_result(outcome)

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --------------------------------------------------------------- unsafe

    async def _unsafe(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; on a non-error answer, invalidate the URL (and the same-host
        Location / Content-Location) before the client sees the answer."""
        strip = self.policy.tag_header

        async def forward(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(bytes(n).lower(), bytes(v)) for n, v in message.get("headers", [])]
                if int(message["status"]) < 400:
                    await self._invalidate_after_unsafe(scope, headers)
                message = dict(message, headers=[(n, v) for n, v in headers if n != strip])
            await send(message)

        await self.app(scope, receive, forward)

    async def _invalidate_after_unsafe(self, scope: Scope, headers: Headers) -> None:
        url = self._url(scope)
        targets = [url]
        if self._key is None:
            for name in (b"location", b"content-location"):
                for field_name, value in headers:
                    if field_name == name:
                        other = _canonical(urljoin(url, value.decode("latin-1").strip()))
                        if urlsplit(other).netloc == urlsplit(url).netloc:
                            targets.append(other)
        for target in dict.fromkeys(targets):
            await self.store.invalidate_url(target)

    # ----------------------------------------------------------------- helpers

    def _origin(self, scope: Scope, receive: Receive | None, send: Send | None) -> Origin:
        return Origin(
            self.app,
            scope,
            receive,
            send,
            cap=self.max_body_bytes,
            keepable=self._keepable,
            strip=self.policy.tag_header,
        )

    def _keepable(self, status: int, headers: Headers) -> bool:
        """A first look at ``http.response.start``: could this response be stored? If
        not, it is streamed to its client at once instead of being buffered."""
        if status < 200 or status == 206:
            return False
        if status >= 500:
            return True  # kept in hand: stale-if-error may answer instead of it
        if not self.policy.share_set_cookie and any(n == b"set-cookie" for n, _ in headers):
            return False
        cc = response_directives(field_map(headers), self.policy)
        if "no-store" in cc and "must-understand" not in cc:
            return False
        return not ("private" in cc and cc.get("private") is None)

    def _entry(self, request: Request, origin: Origin) -> Entry:
        entry = build_entry(
            request,
            origin.status,
            origin.headers,
            origin.body,
            request_time=origin.request_time,
            response_time=origin.response_time,
            policy=self.policy,
        )
        entry.tags = self._tags_of(origin)
        return entry

    def _tags_of(self, origin: Origin) -> list[str]:
        found = [*tags_of(origin.headers, self.policy), *origin.tags]
        unique = [t for t in dict.fromkeys(found) if 0 < len(t) <= _MAX_TAG_LENGTH]
        return unique[: self._max_tags]

    def _known_tags(self, scope: Scope, index: UrlIndex) -> set[str]:
        known = set(index.tags)
        if self._tags is not None:
            known.update(self._tags(scope))
        return known

    async def _learn(self, url: str, index: UrlIndex, tags: Iterable[str]) -> None:
        union = set(index.tags) | set(tags)
        if len(union) > self._max_tags:
            return  # too many distinct tags for one URL: such responses stay unstored
        await self.store.learn(url, sorted(union))

    def _url(self, scope: Scope) -> str:
        if self._key is not None:
            return self._key(scope)
        return _url_of(scope)

    def _stripping(self, send: Send) -> Send:
        """``send`` without the tag header (responses that bypass the cache)."""
        strip = self.policy.tag_header

        async def forward(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                if any(bytes(n).lower() == strip for n, _ in headers):
                    message = dict(
                        message, headers=[(n, v) for n, v in headers if bytes(n).lower() != strip]
                    )
            await send(message)

        return forward

    async def _serve(self, entry: StoredResponse, request: Request, send: Send, now: float) -> None:
        status = conditional_status(entry, request)
        if status == 304:
            await _respond(send, 304, not_modified_headers(entry, now))
            return
        head = request.method == "HEAD"
        if request.has("range") and not head:
            ranged = range_response(entry, request.first("range") or "", now)
            if ranged is not None:
                await _respond(send, *ranged)
                return
        no_body = entry.status in _NO_BODY_STATUS
        headers = serve_headers(entry, now, body_length=None if no_body else len(entry.body))
        await _respond(send, entry.status, headers, b"" if head or no_body else entry.body)


# ------------------------------------------------------------------------ ASGI


async def _respond(send: Send, status: int, headers: Headers, body: bytes = b"") -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _simple(send: Send, status: int, text: bytes) -> None:
    await _respond(
        send,
        status,
        [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(text)),
            (b"cache-control", b"no-store"),
        ],
        text,
    )


def _has_body(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"transfer-encoding":
            return True
        if name == b"content-length" and value.strip() not in (b"", b"0"):
            return True
    return False


def _without(headers: Iterable[tuple[bytes, bytes]], names: Iterable[bytes]) -> Headers:
    drop = set(names)
    return [(n, v) for n, v in headers if n not in drop]


def _with_headers(scope: Scope, headers: Headers) -> Scope:
    copied: MutableMapping[str, Any] = dict(scope)
    copied["headers"] = headers
    return copied


def _url_of(scope: Scope) -> str:
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


def _canonical(url: str) -> str:
    parts = urlsplit(url)
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme or 'http'}://{parts.netloc.lower()}{parts.path or '/'}{query}"
