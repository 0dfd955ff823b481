"""Revalidating a stale stored response with the app, in the foreground or (for
``stale-while-revalidate``) in the background.

One revalidation per key runs in a process (others wait for its answer) and one
across processes (``AsyncCache.refresh`` takes the key's lease); the stale entry
stays readable meanwhile, so a failing app can still be answered from it
(``stale-if-error``), and an invalidation during the revalidation refuses its fill.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Final

from .._policy import lease_backoff
from .._random import rng
from ._answers import merge_304, validators
from ._asgi import Receive, Scope, Send, with_headers, without
from ._loads import BUSY, Fill, Loads
from ._origin import Outcome
from ._policy import Request, StoredResponse, Verdict, judge, stale_on_error, usable
from ._store import UrlIndex

__all__ = ["Revalidator"]

log = logging.getLogger("veneer.http")

CONDITIONAL: Final = frozenset({b"if-none-match", b"if-modified-since"})


class Revalidator:
    def __init__(self, loads: Loads) -> None:
        self.loads = loads
        self._running: dict[str, asyncio.Future[StoredResponse | None]] = {}
        self._background: set[asyncio.Task[None]] = set()

    def _stale_ok(self, entry: StoredResponse, request: Request) -> bool:
        return stale_on_error(entry, request, time.time(), self.loads.policy.stale_if_error)

    async def now(
        self,
        url: str,
        index: UrlIndex,
        key: str,
        entry: StoredResponse,
        request: Request,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """Revalidate before answering (the entry may not be served as it is)."""
        loads = self.loads
        running = self._running.get(key)
        if running is not None:
            # Another request in this process is asking the app already: share its answer.
            fresh = await asyncio.shield(running)
            if fresh is not None and usable(fresh, request):
                await loads.serve(fresh, request, send)
            elif self._stale_ok(entry, request):
                await loads.serve(entry, request, send)
            else:
                await loads.pass_through(scope, receive, send)
            return
        future: asyncio.Future[StoredResponse | None] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        outcome: StoredResponse | None = None
        try:
            outcome = await self._ask(url, index, key, entry, request, scope, receive, send)
        finally:
            if self._running.get(key) is future:
                del self._running[key]
            future.set_result(outcome)

    def later(
        self,
        url: str,
        index: UrlIndex,
        key: str,
        entry: StoredResponse,
        request: Request,
        scope: Scope,
    ) -> None:
        """stale-while-revalidate: one background revalidation per key in this process."""
        if key in self._running:
            return
        future: asyncio.Future[StoredResponse | None] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        copied = dict(scope)

        async def run() -> None:
            outcome: StoredResponse | None = None
            try:
                outcome = await self._ask(url, index, key, entry, request, copied, None, None)
            except Exception:
                log.warning("veneer.http: background revalidation of %s failed", url, exc_info=True)
            finally:
                if self._running.get(key) is future:
                    del self._running[key]
                future.set_result(outcome)

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

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
        loads = self.loads
        known = loads.known_tags(scope, index)
        fill = Fill()
        headers = without(scope.get("headers", []), CONDITIONAL | {b"range"})
        origin_scope = with_headers(scope, headers + validators(entry))

        async def load() -> StoredResponse | None:
            origin = loads.origin(origin_scope, receive, send)
            fill.origin = origin
            outcome = await origin.start()
            failed = outcome is Outcome.FAILED or (
                outcome is Outcome.COMPLETE and origin.status >= 500
            )
            if failed and self._stale_ok(entry, request):
                fill.use_stale = True
                return None
            if outcome is not Outcome.COMPLETE:
                return None
            if origin.status == 304:
                fill.entry = merge_304(
                    entry,
                    origin.headers,
                    request=request,
                    request_time=origin.request_time,
                    response_time=origin.response_time,
                    policy=loads.policy,
                )
                fill.entry.tags = loads.tags_of(origin)
            else:
                fill.entry = loads.entry(request, origin)
            stored = fill.entry.stored
            if stored is None:
                return None
            if not set(fill.entry.tags) <= known:
                await loads.learn(url, index, fill.entry.tags)
                return stored
            fill.storage_ttl = fill.entry.storage_ttl
            return stored

        try:
            value = await loads.cache.refresh(
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
            await loads.serve(entry, request, send)
            return None
        if shared is not None and origin.status == 304:
            await loads.serve(shared, request, send)  # freshened from the store
            return shared
        await loads.answer_own(origin, fill.entry, request, send)
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
        loads = self.loads
        deadline = time.monotonic() + loads.cache.options.lease_wait_seconds
        attempt = 0
        while time.monotonic() < deadline:
            await asyncio.sleep(lease_backoff(attempt, rng.random()))
            attempt += 1
            found = await loads.store.entry(key)
            if found is not None and found.response_time != entry.response_time:
                if usable(found, request) and judge(found, request, time.time()) in (
                    Verdict.FRESH,
                    Verdict.STALE,
                ):
                    await loads.serve(found, request, send)
                    return found
                break
        await loads.pass_through(scope, receive, send)
        return None
