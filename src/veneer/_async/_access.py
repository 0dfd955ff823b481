"""The narrow door to Redis for veneer's own components (rate limits, counters, flags).

A component needs a few things the cache already has, and must not rebuild them:
the client with veneer's deadlines and no retries, the circuit breaker of the node
a key lives on, the pub/sub plumbing that reconnects by itself, and the run id
that tells a restart. It gets them here, through :meth:`AsyncCache.redis_access`,
and nothing else of the cache: it never touches the cache's private state, and
the cache knows nothing about it.

Every call either returns Redis's reply or raises :class:`RedisDown` (unreachable,
timed out, breaker open, refused by the server). A component catches ``RedisDown``
and applies its own outage policy; no redis-py error leaves this module.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .._errors import RedisDown
from .._keys import KeyLayout
from ._broadcast import AsyncBroadcastSubscriber
from ._cluster_io import TopologyChanged
from ._redis_io import REDIS_ERRORS, AsyncL2, CircuitOpen, LeanScript

__all__ = ["AsyncRedisAccess", "AsyncScript", "RedisDown"]


class AsyncScript:
    """A Lua script registered once; run it with :meth:`AsyncRedisAccess.eval`.

    It runs on the cache's lean path (pre-packed EVALSHA on veneer's own bounded
    connections, as the cache's lease scripts do), not through redis-py's general
    command path: a rate-limit check or a buffered increment is one script, and that
    path's per-call overhead was most of what separated them from a raw command."""

    __slots__ = ("_lean", "source")

    def __init__(self, source: str) -> None:
        self._lean = LeanScript(source)
        self.source = source


class AsyncRedisAccess:
    """Redis for one component of one cache namespace.

    Keys: :meth:`key` builds ``{ns:component:subject}:part...``. Everything a
    component stores for one subject shares the subject's hash tag, so a script
    over those keys stays in one slot on Redis Cluster.
    """

    def __init__(
        self,
        l2: AsyncL2,
        layout: KeyLayout,
        component: str,
        *,
        redis_timeout: float,
        on_failure: Callable[[BaseException], object] | None = None,
    ) -> None:
        if not component or not component.replace("_", "").isalnum():
            raise ValueError(f"component={component!r}: use letters, digits and '_'")
        self._l2 = l2
        self._layout = layout
        self._on_failure = on_failure
        self.component = component
        self.namespace = layout.namespace
        self.redis_timeout = redis_timeout
        self._prefix = "{" + layout.namespace + ":" + component + ":"

    # ------------------------------------------------------------------ keys

    def key(self, subject: str, *parts: str) -> bytes:
        """``{ns:component:subject}`` followed by ``:part`` for each part, as bytes."""
        tail = "".join(":" + part for part in parts)
        return (self._prefix + subject + "}" + tail).encode("utf-8", "surrogatepass")

    def channel(self, name: str = "") -> str:
        """A pub/sub channel of this component (``veneer:component:{ns}[:name]``)."""
        suffix = ":" + name if name else ""
        return "veneer:" + self.component + ":{" + self.namespace + "}" + suffix

    # -------------------------------------------------------------- commands

    def script(self, source: str, /) -> AsyncScript:
        """Register a Lua script (EVALSHA, loaded on first use). Scripts must touch only
        keys of one hash tag, and must not call TIME (ElastiCache Serverless refuses
        it): pass the time in ARGV."""
        return AsyncScript(source)

    async def eval(self, script: AsyncScript, keys: Sequence[bytes], args: Sequence[Any]) -> Any:
        """Run ``script`` on the node of ``keys[0]``; raises :class:`RedisDown`."""
        try:
            return await self._l2._script(script._lean, list(keys), list(args))
        except REDIS_ERRORS as exc:
            raise self._down(exc) from None

    async def eval_many(
        self, script: AsyncScript, calls: Sequence[tuple[Sequence[bytes], Sequence[Any]]]
    ) -> list[Any]:
        """Run ``script`` once per ``(keys, args)`` call, in one round trip per node (each
        call on the node of its ``keys[0]``; calls may span slots). Replies come back in
        call order. Not atomic across calls: on :class:`RedisDown` some calls may have
        run (on a cluster, those of the nodes that answered).

        Each call is sent as ``EVAL`` with the script's source, so a server that lost its
        script cache (a restart) never answers NOSCRIPT halfway through a batch."""

        def op(keys: Sequence[bytes], args: Sequence[Any]) -> Any:
            async def add(pipe: Any) -> None:
                pipe.execute_command("EVAL", script.source, len(keys), *keys, *args)

            return (keys[0], add)

        try:
            replies: list[Any] = await self._l2._pipeline([op(k, a) for k, a in calls])
        except REDIS_ERRORS as exc:
            raise self._down(exc) from None
        return replies

    async def command(self, routing: bytes, /, *args: Any) -> Any:
        """One command for a key on ``routing``'s node (``"HINCRBY", key, field, 1``)."""
        return await self._run([routing], self._l2.client.execute_command, *args)

    async def pipeline(self, routing: bytes, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Several commands on the node of ``routing`` in one round trip (not a
        transaction); every command's keys must share ``routing``'s slot."""

        async def add(pipe: Any) -> None:
            for command in commands:
                pipe.execute_command(*command)

        try:
            replies: list[Any] = await self._l2._pipeline([(routing, add)])
        except REDIS_ERRORS as exc:
            raise self._down(exc) from None
        return replies

    async def _run(self, routing: list[bytes], fn: Callable[..., Awaitable[Any]], /, *args: Any,
                   **kwargs: Any) -> Any:  # fmt: skip
        try:
            return await self._l2._call_on(routing, fn, *args, **kwargs)
        except REDIS_ERRORS as exc:
            raise self._down(exc) from None

    def _down(self, exc: BaseException) -> RedisDown:
        if self._on_failure is not None:
            self._on_failure(exc)
        if isinstance(exc, CircuitOpen | TopologyChanged):
            # Refused before anything reached a server (a breaker, or no node for the slot).
            return RedisDown(str(exc), breaker_open=True)
        return RedisDown(f"Redis call failed: {exc.__class__.__name__}: {exc}")

    # ---------------------------------------------------------------- health

    def healthy(self, routing: bytes | None = None, /) -> bool:
        """Whether every breaker of this cache is closed (no call is refused now); with
        ``routing``, only the breaker of the node that key lives on. No I/O: a component
        that asks first can answer from its outage policy at once instead of becoming
        the probe of an open breaker (a node not discovered yet counts as healthy)."""
        if routing is None:
            return all(breaker.closed for breaker in self._l2.breakers())
        try:
            breakers = self._l2._breakers_for([routing])
        except REDIS_ERRORS:
            return True
        return all(breaker.closed for breaker in breakers)

    async def run_id(self) -> str:
        """The server's run id (every primary's, on a cluster): a change means a restart,
        so probably an empty Redis. Raises :class:`RedisDown`."""
        try:
            return await self._l2.run_id()
        except REDIS_ERRORS as exc:
            raise self._down(exc) from None

    # ------------------------------------------------------------- broadcast

    async def publish(self, channel: str, message: bytes) -> None:
        """Publish on one of this component's channels; raises :class:`RedisDown`."""
        await self._run([channel.encode()], self._l2.client.publish, channel, message)

    def subscriber(
        self,
        channel: str,
        *,
        on_message: Callable[[bytes], None],
        on_live: Callable[[], Awaitable[None]],
        on_lost: Callable[[], None],
        on_tick: Callable[[], Awaitable[None]] | None = None,
    ) -> AsyncBroadcastSubscriber:
        """A subscriber to ``channel`` that reconnects by itself (call ``start()`` and
        ``close()``). ``on_live`` runs on every (re)subscription: messages published
        while it was not subscribed are lost, so re-read the state there. A hung Redis
        is detected within about a second (``on_lost``)."""

        async def idle() -> None:
            return None

        return AsyncBroadcastSubscriber(
            self._l2.subscriber,
            self._l2.release_subscriber,
            channel,
            on_message=on_message,
            on_live=on_live,
            on_lost=on_lost,
            on_tick=on_tick or idle,
            health_timeout=max(1.0, 4 * self.redis_timeout),
        )
