"""The Redis side of buffered counters, through the cache's door (``redis_access``).

Every call either returns what Redis answered or raises ``RedisDown``.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from typing import Any

from ..._async._access import AsyncRedisAccess
from .._scripts import CLAIM, FENCE, FINISH, INCR, READ

__all__ = ["AsyncBuffer", "Claim", "ShardCall", "Writer"]

_HSCAN_COUNT = 1000


class Writer:
    """One writer identity: used by one call at a time, so its sequence numbers reach
    Redis in order and ``marks`` can tell a late duplicate or a fenced writer."""

    __slots__ = ("id", "seq")

    def __init__(self) -> None:
        self.id = secrets.token_hex(8)
        self.seq = 0


@dataclass(slots=True)
class ShardCall:
    """Increments of one counter shard, sent as one script call under one writer: one
    group per caller (each all or nothing), ``owners`` telling whose."""

    name: str
    shard: int
    writer: Writer
    groups: list[list[tuple[str, int]]] = field(default_factory=list)
    owners: list[int] = field(default_factory=list)
    seq: int = 0
    epoch: bytes | None = None

    @property
    def items(self) -> list[tuple[str, int]]:
        return [item for group in self.groups for item in group]


@dataclass(slots=True)
class Claim:
    name: str
    shard: int
    flush_id: str
    replay: bool
    guarded: bool
    deltas: dict[str, int] = field(default_factory=dict)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class AsyncBuffer:
    """Scripts and keys of buffered counters for one cache namespace."""

    def __init__(self, door: AsyncRedisAccess, *, ttl: float, marks_limit: int = 4096) -> None:
        self.door = door
        self.ttl_ms = max(1000, int(ttl * 1000))
        self.marks_limit = marks_limit
        self._incr = door.script(INCR)
        self._read = door.script(READ)
        self._claim = door.script(CLAIM)
        self._finish = door.script(FINISH)
        self._fence = door.script(FENCE)
        self._keys: dict[tuple[str, int], dict[str, bytes]] = {}
        self.after_fork()

    def after_fork(self) -> None:
        self._token = secrets.token_hex(8)
        self._proposals = itertools.count()

    def keys(self, name: str, shard: int) -> dict[str, bytes]:
        found = self._keys.get((name, shard))
        if found is None:
            subject = f"{name}:{shard}"
            found = {part: self.door.key(subject, part) for part in (
                "buf", "claimed", "flush", "lease", "marks", "guards", "scratch")}  # fmt: skip
            self._keys[(name, shard)] = found
        return found

    # ------------------------------------------------------------- increments

    def _incr_call(self, call: ShardCall, proposed: str) -> tuple[list[bytes], list[Any]]:
        k = self.keys(call.name, call.shard)
        args: list[Any] = [call.writer.id, call.seq, self.ttl_ms, proposed]
        for group in call.groups:
            args.append(len(group))
            for key, n in group:
                args += [key, n, -n]
        return [k["buf"], k["marks"], k["guards"], k["claimed"], k["scratch"]], args

    async def incr(self, calls: list[ShardCall]) -> list[Any]:
        """One script call per shard call: one round trip (one per node on a cluster)."""
        # A fresh proposal for the epoch each call: a restarted Redis must never get the
        # epoch it had before (a process counter, unique with this process's token).
        proposed = f"{self._token}.{next(self._proposals)}"
        if len(calls) == 1:
            keys, args = self._incr_call(calls[0], proposed)
            return [await self.door.eval(self._incr, keys, args)]
        return await self.door.eval_many(
            self._incr, [self._incr_call(call, proposed) for call in calls]
        )

    async def fence(self, name: str, shard: int, writer: str) -> tuple[int | None, bytes | None]:
        """Refuse ``writer`` from now on; returns (its last applied sequence, the epoch)."""
        k = self.keys(name, shard)
        mark, epoch = await self.door.eval(self._fence, [k["marks"]], [writer, self.ttl_ms])
        return (int(mark) if mark else None), (epoch or None)

    # ------------------------------------------------------------------ reads

    async def read(
        self, groups: list[tuple[str, int, list[str]]]
    ) -> list[tuple[str | None, list[int], list[int]]]:
        """For each (name, shard, keys): the claimed flush id, then each key's buffered and
        claimed delta. One round trip (one per node on a cluster)."""
        calls = []
        for name, shard, keys in groups:
            k = self.keys(name, shard)
            calls.append(([k["buf"], k["claimed"], k["flush"]], keys))
        if len(calls) == 1:
            replies = [await self.door.eval(self._read, *calls[0])]
        else:
            replies = await self.door.eval_many(self._read, calls)
        out = []
        for (_, _, keys), reply in zip(groups, replies, strict=True):
            n = len(keys)
            fid = _text(reply[0]) if reply[0] else None
            buffered = [int(v) if v else 0 for v in reply[1 : 1 + n]]
            claimed = [int(v) if v else 0 for v in reply[1 + n : 1 + 2 * n]]
            out.append((fid, buffered, claimed))
        return out

    # ---------------------------------------------------------------- flushes

    async def claim(self, shards: list[tuple[str, int]], token: str, lease: float) -> list[Claim]:
        """Claim every shard that has a buffer and no other flusher (one round trip per
        node); an unfinished claim comes back under its old flush id (a replay)."""
        if not shards:
            return []
        lease_ms = max(100, int(lease * 1000))
        calls = []
        for name, shard in shards:
            k = self.keys(name, shard)
            keys = [k["lease"], k["buf"], k["claimed"], k["flush"], k["marks"], k["guards"]]
            args = [token, lease_ms, secrets.token_hex(16), self.ttl_ms, self.marks_limit]
            calls.append((keys, args))
        replies = await self.door.eval_many(self._claim, calls)
        claims = []
        for (name, shard), reply in zip(shards, replies, strict=True):
            if _text(reply[0]) == "claimed":
                claims.append(
                    Claim(name, shard, _text(reply[1]), bool(int(reply[2])), bool(int(reply[3])))
                )
        return claims

    async def claimed_deltas(self, claim: Claim) -> dict[str, int]:
        """The claimed buffer of ``claim``."""
        return await self.scan(claim.name, claim.shard, "claimed")

    async def scan(self, name: str, shard: int, part: str) -> dict[str, int]:
        """A buffer's deltas (``part`` "buf" or "claimed"), read with HSCAN: bounded work per
        call, and a field seen twice has the same value (a claimed buffer never changes)."""
        key = self.keys(name, shard)[part]
        deltas: dict[str, int] = {}
        cursor: Any = 0
        while True:
            cursor, chunk = await self.door.command(
                key, "HSCAN", key, cursor, "COUNT", _HSCAN_COUNT
            )
            items = (
                chunk.items()
                if isinstance(chunk, dict)
                else zip(chunk[::2], chunk[1::2], strict=True)
            )
            for field_, value in items:
                deltas[_text(field_)] = int(value)
            if int(cursor) == 0:
                return deltas

    async def finish(self, claims: list[tuple[Claim, list[tuple[str, str]]]], token: str) -> None:
        """Delete each claimed buffer (if it is still that flush's) and release the lease;
        ``guards`` pairs (key, total or '') update the overflow guards."""
        if not claims:
            return
        calls = []
        for claim, guards in claims:
            k = self.keys(claim.name, claim.shard)
            args: list[Any] = [claim.flush_id, token, self.ttl_ms]
            for key, total in guards:
                args += [key, total]
            calls.append(([k["lease"], k["claimed"], k["flush"], k["guards"]], args))
        await self.door.eval_many(self._finish, calls)

    async def flush_id(self, name: str, shard: int) -> str | None:
        key = self.keys(name, shard)["flush"]
        value = await self.door.command(key, "GET", key)
        return _text(value) if value else None
