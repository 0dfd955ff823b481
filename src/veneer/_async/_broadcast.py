"""The invalidation channel: carries every invalidation to every process's L1.

One subscriber per cache keeps a pub/sub connection open. While it is not
subscribed the cache cannot learn of other processes' invalidations, so it
tells the cache (``on_lost``) and the cache stops trusting its L1 as fresh;
on every (re)subscription (``on_live``) the cache may trust newly filled
entries again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .._fork import park
from .._random import rng
from ._concurrency import Background, sleep, spawn

__all__ = ["AsyncBroadcastSubscriber"]

log = logging.getLogger("veneer")

# The subscriber also retries queued invalidations, so it wakes this often.
_POLL_SECONDS = 0.25
# Reconnect backoff: doubling from the first to the last, jittered 0.5x-1.5x, back to
# the first once subscribed again (an old outage must not slow the next reconnect).
_FIRST_BACKOFF = 0.05
_LAST_BACKOFF = 0.5


class AsyncBroadcastSubscriber:
    def __init__(
        self,
        connect: Callable[..., Awaitable[Any]],
        release: Callable[[Any], Awaitable[None]],
        channel: str,
        *,
        on_message: Callable[[bytes], None],
        on_live: Callable[[], Awaitable[None]],
        on_lost: Callable[[], None],
        on_tick: Callable[[], Awaitable[None]],
        on_heard: Callable[[], None] = lambda: None,
        on_current: Callable[[float], None] = lambda sent: None,
        health_timeout: float = 1.0,
        sharded: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self._connect = connect
        self._sharded = sharded
        self._release = release
        self._channel = channel
        self._on_message = on_message
        self._on_live = on_live
        self._on_lost = on_lost
        self._on_tick = on_tick
        self._on_heard = on_heard
        self._on_current = on_current
        self._health_timeout = health_timeout
        self._pubsub: Any = None
        self._worker: Background | None = None
        self.live = False
        # When the channel last answered (monotonic): every invalidation Redis published
        # before that reply has been handed to on_message.
        self.heard = time.monotonic()

    def start(self) -> None:
        if self._worker is None:
            self._worker = spawn(self._run, f"veneer-broadcast-{self._channel}")

    async def _run(self) -> None:
        backoff = _FIRST_BACKOFF
        worker = self._worker
        while worker is None or not worker.stopping:
            try:
                await self._listen()
            except Exception as exc:
                if worker is not None and worker.stopping:
                    return
                log.debug("veneer: invalidation channel lost: %s", exc)
            if self.live:
                backoff = _FIRST_BACKOFF
            self._mark_lost()
            await sleep(backoff * (0.5 + rng.random()))
            backoff = min(backoff * 2, _LAST_BACKOFF)
            worker = self._worker

    async def _listen(self) -> None:
        # Sharded pub/sub: subscribed on the node that owns the channel's slot.
        sharded = self._sharded is not None and await self._sharded()
        client = await (self._connect(self._channel) if sharded else self._connect())
        pubsub = self._pubsub = client.pubsub()
        try:
            if sharded:
                await pubsub.ssubscribe(self._channel)
            else:
                await pubsub.subscribe(self._channel)
            heard = pinged = self.heard = time.monotonic()
            while self._worker is None or not self._worker.stopping:
                message = await pubsub.get_message(timeout=_POLL_SECONDS)
                now = time.monotonic()
                if message is not None:
                    heard = self.heard = now
                    self._on_heard()  # a reply (a pong too): Redis answers
                elif now - heard > self._health_timeout:
                    # A hung Redis (SIGSTOP, a dead peer behind a live TCP socket) sends
                    # nothing: without this the cache would trust L1 it cannot invalidate.
                    raise ConnectionError(f"no reply on {self._channel} in {now - heard:.1f}s")
                if now - pinged >= _POLL_SECONDS and self.live:
                    pinged = now
                    # The pong carries the moment it was sent: every invalidation Redis
                    # published before this PING comes ahead of the pong (on_current).
                    await pubsub.ping(message=repr(now))
                await self._on_tick()
                if message is None:
                    continue
                kind = message.get("type")
                if isinstance(kind, bytes):
                    kind = kind.decode()
                if kind in ("subscribe", "ssubscribe"):
                    # Live only once the cache has caught up (it may drop copies that
                    # missed invalidations while away): ready() waits for that.
                    await self._on_live()
                    self.live = True
                elif kind in ("message", "smessage"):
                    self._on_message(message["data"])
                elif kind == "pong":
                    self._pong(message.get("data"))
                elif kind == "sunsubscribe":
                    # The channel's slot moved to another shard: follow it.
                    raise ConnectionError(f"{self._channel} moved to another shard")
        finally:
            self._pubsub = None
            await pubsub.aclose()
            await self._release(client)

    def after_fork(self) -> None:
        """In a forked child: the parent's subscriber task or thread is not here; its
        connection is the parent's (parked, not closed). ``start()`` makes a new one."""
        park((self._worker, self._pubsub))
        self._worker = None
        self._pubsub = None
        self.live = False

    def _pong(self, data: Any) -> None:
        try:
            sent = float(data.decode() if isinstance(data, bytes) else data)
        except (TypeError, ValueError, UnicodeDecodeError):
            return  # not one of our pings
        self._on_current(sent)

    def _mark_lost(self) -> None:
        if self.live:
            self.live = False
            self._on_lost()

    async def _interrupt(self) -> None:
        pubsub = self._pubsub
        if pubsub is not None:
            try:
                await pubsub.aclose()
            except Exception:
                pass

    async def close(self) -> None:
        if self._worker is not None:
            await self._worker.stop(self._interrupt)
            self._worker = None
        self.live = False
