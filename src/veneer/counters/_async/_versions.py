"""Read versions of exact counters, through the cache's door (``redis_access``).

The cache holds an exact key's durable total under the key's current read version
(``veneer.counters:<name>:<key>@<version>``). A read asks Redis for the version first
(creating one if there is none), then reads the cache under it; a commit to the key
sets a new version. So a commit costs one round trip and no broadcast: the totals
cached under older versions (in Redis and in every process's L1) are simply never
read again, and expire. Every call returns what Redis answered or raises
``RedisDown``.

Why it is safe: a version is set after the commit it follows, and a reader reads the
version before it reads the database. A reader that sees the new version therefore
loads a snapshot that has the commit; one that saw an older version overlapped the
increment (which had not returned yet). A cached total is always a database snapshot,
never a sum kept in Redis, so nothing can be counted twice. Versions are unique
(a random process token and a sequence), so a version lost with Redis's data, evicted
or expired can never come back and revive an old total.
"""

from __future__ import annotations

import itertools
import secrets
from collections import defaultdict
from collections.abc import Callable, Sequence

from ..._async._access import AsyncRedisAccess
from .._scripts import BUMP, VERSIONS
from .._spec import shard_of
from .._sql import Pair

__all__ = ["AsyncReadVersions"]


class AsyncReadVersions:
    def __init__(self, door: AsyncRedisAccess, *, ttl: float) -> None:
        self.door = door
        # A version outlives the totals cached under it (read_ttl): losing it early only
        # costs a reload.
        self.ttl_ms = max(1000, int(2 * ttl * 1000))
        self._versions = door.script(VERSIONS)
        self._bump = door.script(BUMP)
        self._keys: dict[Pair, bytes] = {}
        self.after_fork()

    def after_fork(self) -> None:
        self._token = secrets.token_hex(8)
        self._sequence = itertools.count()

    def _new(self) -> str:
        return f"{self._token}.{next(self._sequence)}"

    def key(self, name: str, key: str, shard: int) -> bytes:
        found = self._keys.get((name, key))
        if found is None:
            if len(self._keys) > 100_000:
                self._keys.clear()
            found = self._keys[(name, key)] = self.door.key(f"{name}:{shard}", "ver", key)
        return found

    async def read(
        self, name: str, keys: Sequence[str], shards: int, *, create: bool = True
    ) -> dict[str, str]:
        """Each key's read version: one round trip (one per node on a cluster). With
        ``create=False`` keys without one are left out (and nothing is written)."""
        groups: dict[int, list[str]] = defaultdict(list)
        for key in keys:
            groups[shard_of(key, shards)].append(key)
        proposed = self._new() if create else ""
        calls = [
            ([self.key(name, key, shard) for key in group], [proposed, self.ttl_ms])
            for shard, group in groups.items()
        ]
        if len(calls) == 1:
            replies = [await self.door.eval(self._versions, *calls[0])]
        else:
            replies = await self.door.eval_many(self._versions, calls)
        out: dict[str, str] = {}
        for group, reply in zip(groups.values(), replies, strict=True):
            for key, version in zip(group, reply, strict=True):
                if version:
                    out[key] = version.decode() if isinstance(version, bytes) else str(version)
        return out

    async def bump(self, pairs: Sequence[Pair], shards: Callable[[str], int]) -> None:
        """A new read version for each pair, after its commit: one round trip per node."""
        groups: dict[tuple[str, int], list[bytes]] = defaultdict(list)
        for name, key in pairs:
            shard = shard_of(key, shards(name))
            groups[(name, shard)].append(self.key(name, key, shard))
        new = self._new()
        calls = [(keys, [new, self.ttl_ms]) for keys in groups.values()]
        if len(calls) == 1:
            await self.door.eval(self._bump, *calls[0])
        else:
            await self.door.eval_many(self._bump, calls)
