"""What fills and revalidations share: calling the app, judging what it answered,
learning tags, and answering the client from a stored or a fresh response."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Final

from .._async._cache import AsyncCache
from ._answers import (
    conditional_status,
    not_modified_headers,
    range_response,
    serve_headers,
    tags_of,
)
from ._asgi import ASGIApp, Headers, Receive, Scope, Send, respond, stripping, url_of
from ._config import HttpConfig
from ._origin import Origin, Outcome
from ._policy import Entry, Request, StoredResponse, build_entry, field_map, response_directives
from ._store import ResponseStore, UrlIndex

__all__ = ["BUSY", "Fill", "Loads"]

_NO_BODY_STATUS: Final = frozenset({204, 304})
_MAX_TAG_LENGTH: Final = 200


# A loader returns the response it got, or None: "nothing you may share" (the cache's
# ``type=`` conversion lets None through, and it is never stored: see Fill.ttl).
BUSY: Final = object()


class Fill:
    """What one request's loader learned; only that request reads it."""

    __slots__ = ("entry", "origin", "storage_ttl", "use_stale")

    def __init__(self) -> None:
        self.origin: Origin | None = None
        self.entry: Entry | None = None
        self.storage_ttl: float | None = None
        self.use_stale = False

    def ttl(self, value: Any) -> float | None:
        """The TTL function given to the cache: store only the response judged storable."""
        entry = self.entry
        if value is not None and entry is not None and entry.stored is value and self.storage_ttl:
            return self.storage_ttl
        return None


class Loads:
    def __init__(self, app: ASGIApp, cache: AsyncCache, config: HttpConfig) -> None:
        self.app = app
        self.cache = cache
        self.config = config
        self.policy = config.policy
        self.store = ResponseStore(cache, index_ttl=config.policy.max_ttl, pass_ttl=config.pass_ttl)

    # -------------------------------------------------------------- the app

    def origin(self, scope: Scope, receive: Receive | None, send: Send | None) -> Origin:
        return Origin(
            self.app,
            scope,
            receive,
            send,
            cap=self.config.max_body_bytes,
            keepable=self.keepable,
            strip=self.policy.tag_header,
        )

    async def pass_through(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app answers this request directly (only the tag header is removed)."""
        await self.app(scope, receive, stripping(send, self.policy.tag_header))

    def keepable(self, status: int, headers: Headers) -> bool:
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

    def entry(self, request: Request, origin: Origin) -> Entry:
        entry = build_entry(
            request,
            origin.status,
            origin.headers,
            origin.body,
            request_time=origin.request_time,
            response_time=origin.response_time,
            policy=self.policy,
        )
        entry.tags = self.tags_of(origin)
        return entry

    # ----------------------------------------------------------------- tags

    def tags_of(self, origin: Origin) -> list[str]:
        """Tags the response declared (tag header and :func:`~veneer.http.tag`), capped."""
        found = [*tags_of(origin.headers, self.policy), *origin.tags]
        unique = [t for t in dict.fromkeys(found) if 0 < len(t) <= _MAX_TAG_LENGTH]
        return unique[: self.config.max_tags]

    def known_tags(self, scope: Scope, index: UrlIndex) -> set[str]:
        """Tags known before the app runs: learned for the URL, or given by ``tags=``."""
        known = set(index.tags)
        if self.config.tags is not None:
            known.update(self.config.tags(scope))
        return known

    async def learn(self, url: str, index: UrlIndex, tags: Iterable[str]) -> None:
        union = set(index.tags) | set(tags)
        if len(union) > self.config.max_tags:
            return  # too many distinct tags for one URL: such responses stay unstored
        await self.store.learn(url, sorted(union))

    def url(self, scope: Scope) -> str:
        return self.config.key(scope) if self.config.key is not None else url_of(scope)

    # ------------------------------------------------------------- answering

    async def serve(self, stored: StoredResponse, request: Request, send: Send) -> None:
        """Answer from a stored response: a 304 to a satisfied conditional, a range, or
        the whole response, with its ``Age``."""
        now = time.time()
        if conditional_status(stored, request) == 304:
            await respond(send, 304, not_modified_headers(stored, now))
            return
        head = request.method == "HEAD"
        if request.has("range") and not head:
            ranged = range_response(stored, request.first("range") or "", now)
            if ranged is not None:
                await respond(send, *ranged)
                return
        no_body = stored.status in _NO_BODY_STATUS
        headers = serve_headers(stored, now, body_length=None if no_body else len(stored.body))
        await respond(send, stored.status, headers, b"" if head or no_body else stored.body)

    async def answer_own(
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
                await respond(send, 304, not_modified_headers(stored, None))
                return
            if request.has("range"):
                ranged = range_response(stored, request.first("range") or "", None)
                if ranged is not None:
                    await respond(send, *ranged)
                    return
        await respond(send, origin.status, origin.client_headers(), origin.body)
