"""The naive stack: Redis holds everything, the way teams end up doing it.

Cache-aside on raw redis-py, sessions, view counters, the rate limit and the
feature flag only in Redis, and invalidation by ``KEYS`` pattern. Each method is
the code one finds in such an application, no worse.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import msgspec
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ._shop import ShopDB, quiet

__all__ = ["NAIVE_SOCKET_TIMEOUT", "NaiveStack"]

# redis-py 8's defaults are a 5 s socket timeout retried 10 times with backoff (a
# hung Redis holds a caller for about a minute); a team that has been paged once
# sets a 1 s timeout and retries once. That is the stack measured here.
NAIVE_SOCKET_TIMEOUT = 1.0
SESSION_TTL = 86_400
PAGE_TTL = 300
RATE = 50  # per user and second: generous, the shop never refuses a visitor


class NaiveStack:
    name = "naive"

    def __init__(self, redis_url: str, db: ShopDB) -> None:
        self.db = db
        self.r = redis.Redis.from_url(
            redis_url,
            socket_timeout=NAIVE_SOCKET_TIMEOUT,
            socket_connect_timeout=NAIVE_SOCKET_TIMEOUT,
            retry=Retry(NoBackoff(), 1),
            max_connections=64,
        )
        self._enc = msgspec.json.Encoder()
        self._dec = msgspec.json.Decoder()

    def setup(self, flag_on: bool) -> None:
        self.r.set("flag:new-checkout", b"1" if flag_on else b"0")  # the operator's switch

    def close(self) -> None:
        self.r.close()

    def login(self, uid: int) -> str:
        name = self.db.load_user(uid)
        token = secrets.token_urlsafe(16)
        self.r.set(
            f"session:{token}", self._enc.encode({"user": uid, "name": name}), ex=SESSION_TTL
        )
        return token

    def session(self, token: str) -> dict[str, Any] | None:
        raw = self.r.get(f"session:{token}")
        return None if raw is None else self._dec.decode(raw)

    def allow(self, uid: int) -> bool:
        key = f"ratelimit:{uid}:{int(time.time())}"
        pipe = self.r.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, 2)
        count, _ = pipe.execute()
        return int(count) <= RATE

    def flag(self, uid: int) -> bool:
        return self.r.get("flag:new-checkout") == b"1"  # a missing flag reads as off

    def product(self, pid: int) -> dict[str, Any]:
        key = f"product:{pid}:page"
        raw = self.r.get(key)
        if raw is not None:
            page: dict[str, Any] = self._dec.decode(raw)
            return page
        value = self.db.load_product(pid)
        self.r.set(key, self._enc.encode(value), ex=PAGE_TTL)
        return value

    def count_view(self, pid: int) -> None:
        self.r.incr(f"views:{pid}")

    def catalog(self, limit: int) -> dict[str, Any]:
        raw = self.r.get("catalog:page")
        if raw is not None:
            catalog: dict[str, Any] = self._dec.decode(raw)
            return catalog
        value = self.db.load_catalog(limit)
        self.r.set("catalog:page", self._enc.encode(value), ex=PAGE_TTL)
        return value

    def update_product(self, pid: int) -> int:
        version = self.db.update_product(pid)
        # Every cached view of the product, by pattern: O(keyspace) on Redis's one thread.
        keys = self.r.keys(f"product:{pid}:*")
        if keys:
            self.r.delete(*keys)
        return version

    # ---------------------------------------------------------------- the demo's probes

    def held_views(self, pids: list[int]) -> dict[int, int]:
        """What Redis holds of each view counter (Redis is this stack's only copy)."""
        held: dict[int, int] = {}
        for start in range(0, len(pids), 1000):
            chunk = pids[start : start + 1000]
            for pid, raw in zip(chunk, self.r.mget([f"views:{p}" for p in chunk]), strict=True):
                held[pid] = int(raw) if raw is not None else 0
        return held

    def alive(self, tokens: list[str]) -> set[str]:
        """The tokens whose session still loads."""
        found: set[str] = set()
        with quiet():
            for start in range(0, len(tokens), 1000):
                chunk = tokens[start : start + 1000]
                pipe = self.r.pipeline(transaction=False)
                for t in chunk:
                    pipe.exists(f"session:{t}")
                found.update(t for t, n in zip(chunk, pipe.execute(), strict=True) if n)
        return found
