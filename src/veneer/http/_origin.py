"""One call of the wrapped ASGI app whose response the cache may keep.

The app runs in a task of its own so that the cache learns what it is dealing
with as soon as the app says it (at ``http.response.start``, or when the body
outgrows the cap), not when a long or endless stream ends: requests waiting
for this response are released at once, and a response that is not stored is
streamed to its client as it is produced.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import Callable
from contextvars import ContextVar

from ._asgi import ASGIApp, Headers, Message, Receive, Scope, Send

__all__ = ["Origin", "Outcome", "tag"]

_tags: ContextVar[list[str] | None] = ContextVar("veneer_http_tags", default=None)


def tag(*names: str) -> None:
    """Tag the response being produced (call it from a route): ``invalidate_tag(name)``
    then purges it, whichever URL it was stored under. Outside a request cached by
    :class:`~veneer.http.HttpCache` it does nothing."""
    collected = _tags.get()
    if collected is not None:
        collected.extend(names)


class Outcome(enum.Enum):
    COMPLETE = "complete"  # the whole response is buffered
    STREAMING = "streaming"  # the response goes (went) to the client as produced
    TOO_LARGE = "too large"  # over the cap, with no client to stream to: dropped
    FAILED = "failed"  # the app raised (or ended) before a complete response


class Origin:
    """Runs ``app`` for ``scope``; :meth:`start` returns as soon as the outcome is known.

    ``client`` is the send channel of the request that caused this call, or ``None``
    for a background revalidation. ``keepable(status, headers)`` says at
    ``http.response.start`` whether buffering is worth it; ``strip`` names response
    fields never sent on (the tag header).
    """

    def __init__(
        self,
        app: ASGIApp,
        scope: Scope,
        receive: Receive | None,
        client: Send | None,
        *,
        cap: int,
        keepable: Callable[[int, Headers], bool],
        strip: bytes,
    ) -> None:
        self._app = app
        self._scope = scope
        self._receive = receive or _no_body()
        self._client = client
        self._cap = cap
        self._keepable = keepable
        self._strip = strip
        self._decided: asyncio.Future[Outcome] | None = None
        self._mode = "buffer"
        self._chunks: list[bytes] = []
        self._size = 0
        self._started = False
        self.task: asyncio.Task[None] | None = None
        self.status = 0
        self.headers: Headers = []
        self.tags: list[str] = []
        self.error: BaseException | None = None
        self.request_time = 0.0
        self.response_time = 0.0
        self.outcome: Outcome | None = None

    @property
    def body(self) -> bytes:
        return b"".join(self._chunks)

    def client_headers(self) -> Headers:
        """The response's fields as the client gets them (the tag header removed)."""
        return [(n, v) for n, v in self.headers if n != self._strip]

    async def start(self) -> Outcome:
        loop = asyncio.get_running_loop()
        self._decided = loop.create_future()
        self.request_time = time.time()
        self.task = loop.create_task(self._run())
        try:
            return await asyncio.shield(self._decided)
        except asyncio.CancelledError:
            self.task.cancel()
            raise

    async def finish(self) -> None:
        """Wait for a streaming response to be fully sent; re-raises the app's late error."""
        if self.task is not None:
            await self.task

    def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def _decide(self, outcome: Outcome) -> None:
        if self._decided is not None and not self._decided.done():
            self.outcome = outcome
            self._decided.set_result(outcome)

    async def _run(self) -> None:
        collected: list[str] = []
        _tags.set(collected)
        self.tags = collected
        try:
            await self._app(self._scope, self._receive, self._send)
        except BaseException as exc:
            if self._decided is not None and not self._decided.done():
                self.error = exc
                self._decide(Outcome.FAILED)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return  # handed over to whoever waits for the outcome
            raise  # the response was already on its way: the server reports it
        if self._decided is not None and not self._decided.done():
            self.error = RuntimeError("the ASGI app returned without a complete response")
            self._decide(Outcome.FAILED)

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = int(message["status"])
            self.headers = [(bytes(n).lower(), bytes(v)) for n, v in message.get("headers", [])]
            self._start_message = message
            if not self._keepable(self.status, self.headers):
                await self._stream_or_drop()
            return
        if kind == "http.response.body":
            body = bytes(message.get("body", b""))
            more = bool(message.get("more_body", False))
            if self._mode == "stream":
                assert self._client is not None
                await self._client(message)
            elif self._mode == "buffer":
                self._chunks.append(body)
                self._size += len(body)
                if self._size > self._cap:
                    await self._stream_or_drop(more=more)
                    return
                if not more:
                    self.response_time = time.time()
                    self._decide(Outcome.COMPLETE)
            return
        # Anything else (trailers, extensions): only a stream can carry it on.
        if self._mode == "buffer":
            await self._stream_or_drop()
        if self._mode == "stream":
            assert self._client is not None
            await self._client(message)

    async def _stream_or_drop(self, *, more: bool = True) -> None:
        """Stop buffering: send what there is to the client and stream the rest, or
        (no client) drop it."""
        if self._client is None:
            self._mode = "drop"
            self._chunks = []
            self._decide(Outcome.TOO_LARGE)
            return
        self._mode = "stream"
        self._decide(Outcome.STREAMING)
        await self._client(
            {"type": "http.response.start", "status": self.status, "headers": self.client_headers()}
        )
        pending, self._chunks = self._chunks, []
        if pending or not more:
            await self._client({"type": "http.response.body", "body": b"".join(pending),
                                "more_body": more})  # fmt: skip


def _no_body() -> Receive:
    """``receive`` for a request the cache makes itself: an empty body, then a disconnect
    once the app has answered (so an app listening for one stops)."""
    sent = False
    done = asyncio.Event()

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(done.wait(), 60)
        return {"type": "http.disconnect"}

    return receive
