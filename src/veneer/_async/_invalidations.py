"""Sending invalidations: to Redis, to every process's L1, and to a retry queue when
Redis cannot take them. An invalidation is never dropped silently."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from redis.exceptions import OutOfMemoryError, ResponseError

from .._keys import KeyLayout
from .._random import rng
from .._refusals import PUBLISH
from .._stats import Counters
from ._concurrency import call_later
from ._redis_io import AsyncL2
from ._stamps import AsyncStampBook

__all__ = ["AsyncInvalidations", "Op", "decode_message"]

# ("k", key) one key, ("t", tag) a tag, ("e", "") the whole namespace.
Op = tuple[str, str]

# What one attempt to send an invalidation came to.
_APPLIED = "applied"
_REFUSED = "refused"  # Redis answered with an error, or no replica has it yet: retry it
_UNREACHABLE = "unreachable"  # no answer: the ops after it would fail the same way
_UNHEARD = "unheard"  # applied in Redis, but the broadcast was refused: not retried

_message_encoder = msgspec.msgpack.Encoder()
_message_decoder = msgspec.msgpack.Decoder(tuple[str, str, str, int])


def decode_message(data: bytes) -> tuple[str, str, str, int] | None:
    """``(sender, kind, name, version)`` of a broadcast, or None if it is not one of ours."""
    try:
        return _message_decoder.decode(data)
    except msgspec.DecodeError:
        return None


class AsyncInvalidations:
    def __init__(
        self,
        l2: AsyncL2,
        layout: KeyLayout,
        stamps: AsyncStampBook,
        counters: Counters,
        *,
        sender: str,
        broadcast: bool,
        errors: tuple[type[BaseException], ...],
        on_error: Callable[[BaseException], object],
        warn: Callable[[str], None],
        monitor_every: int,
        monitor_delay: float,
        still_in_l1: Callable[[str, Any], bool],
        on_broadcast_back: Callable[[], None] = lambda: None,
    ) -> None:
        self._l2 = l2
        self._layout = layout
        self._stamps = stamps
        self._counters = counters
        self._sender = sender
        self._broadcast = broadcast
        self._errors = errors
        self._on_error = on_error
        self._warn = warn
        self._monitor_every = monitor_every
        self._monitor_delay = monitor_delay
        self._still_in_l1 = still_in_l1
        self._on_broadcast_back = on_broadcast_back
        self.pending: dict[Op, None] = {}

    async def apply(self, op: Op, *, l1_value: Any = None) -> bool:
        """Send ``op`` now (True), or queue it for retry (False). Queued ops are retried
        first; one that Redis refuses (out of memory, say) stays queued without holding
        back the others, which it does not order: each op names its own key or tag.
        False, not queued, when Redis applied it but refused its broadcast (an ACL
        without PUBLISH): sending it again would be refused the same way."""
        if self.pending and not await self.drain():
            self.queue(op)  # Redis still unreachable: one timeout per call is enough
            return False
        outcome = await self._send(op, l1_value)
        if outcome is _APPLIED:
            return True
        if outcome is not _UNHEARD:
            self.queue(op)
        return False

    def queue(self, op: Op) -> None:
        if op not in self.pending:
            self.pending[op] = None
            self._counters.invalidations_queued += 1
            self._warn(
                f"Redis unreachable: invalidation {op[0]}:{op[1]!r} queued and retried "
                f"until applied ({len(self.pending)} pending)"
            )

    async def drain(self) -> bool:
        """Retry every queued invalidation; False when Redis is unreachable (the rest wait
        for the next try). A refused one stays queued and the next is tried."""
        for op in list(self.pending):
            outcome = await self._send(op, None)
            if outcome is _UNREACHABLE:
                return False
            if outcome is _APPLIED or outcome is _UNHEARD:
                self.pending.pop(op, None)
        return True

    async def _send(self, op: Op, l1_value: Any) -> str:
        kind, name = op
        version = 0
        watch = kind == "k" and self._monitor_every and rng.randrange(self._monitor_every) == 0
        try:
            if kind == "k":
                value_key = self._layout.value(name).encode()
                lease_key = self._layout.lease(name).encode()
                before = await self._l2.get(value_key) if watch else None
                # Deleting the lease revokes every fill in flight (the stale-set race),
                # also when the value itself is absent.
                durable = await self._l2.delete_durably(value_key, lease_key)
            else:
                stamp = self._layout.epoch_key if kind == "e" else self._layout.tag(name)
                version, durable = await self._stamps.bump(stamp)
        except self._errors as exc:
            self._on_error(exc)
            # An answer (OOM, a script or ACL error) is not an outage: Redis may well
            # take the next invalidation.
            return _REFUSED if isinstance(exc, ResponseError) else _UNREACHABLE
        heard = await self.publish(kind, name, version)
        if watch:
            self._watch(name, before, l1_value)
        # Applied on the primary but on no replica yet: keep it queued so it is sent
        # again (to the promoted replica, if the primary dies before replicating).
        if not durable:
            return _REFUSED
        return _APPLIED if heard else _UNHEARD

    async def publish(self, kind: str, name: str, version: int) -> bool:
        """Tell the other processes; False when Redis refused the message itself (no
        permission): they keep their L1 copies up to ``l1_ttl``. A Redis that does not
        answer is not reported here: the subscribers notice that on their own."""
        self._counters.invalidations_sent += 1
        if not self._broadcast:
            return True
        message = _message_encoder.encode((self._sender, kind, name, version))
        try:
            await self._l2.publish(
                self._layout.channel,
                message,
                self._layout.published_key.encode(),
                self._stamps.redis_expiry,
            )
        except OutOfMemoryError:
            # Only the count was refused; the message went out (not a transaction).
            # Subscribers will see a gap on their next reconnect and drop L1: safe.
            pass
        except ResponseError as exc:
            # Refused (an ACL without PUBLISH, or on the channel): nobody heard it.
            self._on_error(exc)
            return False
        except self._errors as exc:
            # Redis has the invalidation; other L1s fall back to l1_ttl for this one.
            self._on_error(exc)
            return True
        if self._l2.refusals.refusing(PUBLISH):
            self._l2.refusals.accepted(PUBLISH)
            self._on_broadcast_back()
        return True

    def _watch(self, key: str, before: bytes | None, l1_value: Any) -> None:
        """Check ``monitor_delay`` later that the invalidated value did not come back."""
        value_key = self._layout.value(key).encode()

        async def check() -> None:
            try:
                after = await self._l2.get(value_key)
            except self._errors:
                return  # no verdict without Redis
            stale = (before is not None and after == before) or (
                l1_value is not None and self._still_in_l1(key, l1_value)
            )
            if stale:
                self._counters.monitor_stale += 1
                self._warn(f"invalidated key {key!r} still served its old value")
            else:
                self._counters.monitor_ok += 1

        call_later(self._monitor_delay, check)
