"""Walk a keyspace safely: SCAN with a bounded COUNT, then two pipelines per batch of keys.

Per key the audit sends TYPE, PTTL, ``MEMORY USAGE key SAMPLES 5`` (never
SAMPLES 0, which walks every element), OBJECT FREQ under an LFU policy, and one
O(1) length command chosen by type. Values are never read. Every command goes
through the throttle, and a PING between batches lets it back off when the
server slows down.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.client import Pipeline

from ._estimate import KeySample
from ._target import Node
from ._throttle import Throttle
from ._wire import queue

__all__ = ["LENGTH_COMMANDS", "MEMORY_SAMPLES", "SCAN_COUNT", "Sampler"]

# COUNT bounds the work of one SCAN call (about this many hash buckets).
SCAN_COUNT = 100
# Keys remembered to drop SCAN's duplicates (about 100 MB of client memory at most).
MAX_DEDUPE = 1_000_000
# Elements MEMORY USAGE looks at in an aggregate; 5 is Redis's own default.
MEMORY_SAMPLES = 5
# O(1) on every type.
LENGTH_COMMANDS: dict[str, str] = {
    "string": "STRLEN",
    "hash": "HLEN",
    "list": "LLEN",
    "set": "SCARD",
    "zset": "ZCARD",
    "stream": "XLEN",
}


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _int_or_none(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, bytes | str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


@dataclass(slots=True)
class Sampler:
    """Reads key metadata under the throttle; one instance serves every stratum of an audit."""

    throttle: Throttle
    lfu: bool = False
    batch: int = 50
    progress: Callable[[int], None] | None = None
    memory: bool = True
    sampled: int = 0
    errors: int = 0
    blind_spots: list[str] = field(default_factory=list)

    def sample(
        self,
        node: Node,
        db: int,
        limit: int | None,
        sink: Callable[[KeySample], None],
    ) -> int:
        """Feed up to ``limit`` keys of ``db`` on ``node`` to ``sink``; returns how many."""
        client = node.client(db)
        # SCAN may return a key twice while the table rehashes. Remembering every key
        # of a full scan of a huge keyspace would cost the audit gigabytes, so
        # duplicates are only filtered for the first MAX_DEDUPE keys (rare anyway).
        seen: set[bytes] = set()
        taken = 0
        cursor = 0
        while True:
            self._maybe_ping(client)
            self.throttle.acquire(1)
            cursor, keys = client.scan(cursor=cursor, count=SCAN_COUNT)
            # Clients are built without decode_responses, so key names are bytes.
            fresh = [k for k in keys if isinstance(k, bytes) and k not in seen]
            if len(seen) < MAX_DEDUPE:
                seen.update(fresh)
            if limit is not None:
                fresh = fresh[: max(0, limit - taken)]
            for start in range(0, len(fresh), self.batch):
                for s in self._inspect(client, node.address, db, fresh[start : start + self.batch]):
                    sink(s)
                    taken += 1
                if self.progress is not None:
                    self.progress(self.sampled + taken)
            if cursor == 0 or (limit is not None and taken >= limit):
                break
        self.sampled += taken
        return taken

    def _maybe_ping(self, client: redis.Redis) -> None:
        if not self.throttle.ping_due():
            return
        self.throttle.acquire(1)
        started = time.perf_counter()
        client.ping()
        self.throttle.observe_ping(time.perf_counter() - started)

    def _execute(self, pipe: Pipeline, commands: int) -> list[Any]:
        """Send a pipeline under the budget; its round trip also tells how busy Redis is."""
        self.throttle.acquire(commands)
        started = time.perf_counter()
        replies: list[Any] = pipe.execute(raise_on_error=False)
        self.throttle.observe(time.perf_counter() - started, commands)
        return replies

    def _inspect(
        self, client: redis.Redis, node: str, db: int, keys: Sequence[bytes]
    ) -> list[KeySample]:
        if not keys:
            return []
        pipe = client.pipeline(transaction=False)
        memory, lfu = self.memory, self.lfu  # fixed for this batch: they set the reply layout
        per_key = 2 + int(memory) + int(lfu)
        for k in keys:
            queue(pipe, "TYPE", k)
            queue(pipe, "PTTL", k)
            if memory:
                queue(pipe, "MEMORY", "USAGE", k, "SAMPLES", MEMORY_SAMPLES)
            if lfu:
                queue(pipe, "OBJECT", "FREQ", k)
        first = self._execute(pipe, len(keys) * per_key)

        alive: list[tuple[bytes, str, int, int | None, int | None]] = []
        for i, k in enumerate(keys):
            row = first[i * per_key : (i + 1) * per_key]
            if isinstance(row[0], Exception) or not isinstance(row[1], int):
                # Moved by a resharding, or refused: counted, not fatal.
                self.errors += 1
                continue
            type_, ttl = _text(row[0]), row[1]
            if type_ == "none" or ttl == -2:
                continue  # expired or deleted between SCAN and TYPE
            mem = row[2] if memory else None
            if isinstance(mem, redis.ResponseError):
                if self.memory:
                    self._memory_refused(mem)
                mem = None
            freq = row[-1] if lfu else None
            alive.append((k, type_, ttl, _int_or_none(mem), _int_or_none(freq)))

        pipe = client.pipeline(transaction=False)
        lengths: list[int | None] = []
        queued = 0
        for k, type_, *_ in alive:
            cmd = LENGTH_COMMANDS.get(type_)
            if cmd is not None:
                queue(pipe, cmd, k)
                queued += 1
        if queued:
            replies = iter(self._execute(pipe, queued))
            lengths = [
                _int_or_none(next(replies)) if type_ in LENGTH_COMMANDS else None
                for _, type_, *_ in alive
            ]
        else:
            lengths = [None] * len(alive)
        return [
            KeySample(
                node=node,
                db=db,
                key=k,
                type=type_,
                ttl_ms=ttl,
                bytes=mem,
                length=length,
                freq=freq,
            )
            for (k, type_, ttl, mem, freq), length in zip(alive, lengths, strict=True)
        ]

    def _memory_refused(self, exc: redis.ResponseError) -> None:
        # Some managed services block MEMORY: fall back to counting keys only.
        self.memory = False
        self.blind_spots.append(
            f"MEMORY USAGE refused ({str(exc)[:120]}): per-prefix memory not measured"
        )
