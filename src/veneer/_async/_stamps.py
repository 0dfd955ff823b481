"""Version stamps of tags and of the namespace, with a short-lived copy in process.

Every entry carries the versions its tags and its namespace had before it was
loaded; a read compares them with the current ones (see ``_policy.judge``). A
process keeps the current versions for ``stamp_ttl`` and updates them from the
broadcast channel, so most reads compare against memory, not Redis.

When the copy runs out, every task (or thread) reading at that moment needs the
same stamps: the first one fetches them, the others wait for its reply
(single-flight per stamp), so a burst of readers costs one round trip, not one
each.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from .._keys import KeyLayout
from .._random import rng
from ._concurrency import Flight, LeaderGone
from ._redis_io import AsyncL2

__all__ = ["AsyncStampBook", "new_version"]

_MAX_STAMPS: Final = 10_000
_monotonic = time.monotonic


def new_version() -> int:
    return rng.getrandbits(63) | 1


class AsyncStampBook:
    def __init__(
        self,
        l2: AsyncL2,
        layout: KeyLayout,
        *,
        trust_seconds: float,
        redis_expiry: int,
        errors: tuple[type[BaseException], ...],
        on_error: Callable[[BaseException], object],
    ) -> None:
        self._l2 = l2
        self._layout = layout
        self._trust = trust_seconds
        self.redis_expiry = redis_expiry
        self._errors = errors
        self._on_error = on_error
        self._known: dict[str, tuple[int, float]] = {}
        # Stamps being fetched now, and the fetch that will bring them.
        self._fetching: dict[str, Flight] = {}
        # Bumped whenever a newer version is learnt: a fetch that started earlier
        # must not overwrite it with what it read.
        self._seq = 0

    async def versions(self, tags: tuple[str, ...]) -> tuple[int, dict[str, int]] | None:
        """The namespace epoch and the versions of ``tags``, or None if Redis failed."""
        now = _monotonic()
        known = self._known
        layout = self._layout
        wanted = [layout.epoch_key, *[layout.tag(tag) for tag in tags]]
        found: dict[str, int] = {}
        missing: list[str] = []
        for stamp in wanted:
            hit = known.get(stamp)
            if hit is not None and hit[1] > now:
                found[stamp] = hit[0]
            else:
                missing.append(stamp)
        while missing:
            fetched = await self._fetch(missing)
            if fetched is None:
                return None
            found.update(fetched)
            missing = [stamp for stamp in missing if stamp not in found]
        return found[wanted[0]], {tag: found[layout.tag(tag)] for tag in tags}

    async def _fetch(self, stamps: list[str]) -> dict[str, int] | None:
        """The versions of ``stamps``: those another caller is fetching come from its reply,
        the rest from one round trip of this caller's. None if Redis failed; a partial
        result if a fetch this caller joined was abandoned (its leader was cancelled)."""
        fetching = self._fetching
        flight = Flight()
        joined: dict[int, Flight] = {}
        mine: list[str] = []
        for stamp in stamps:
            leader = fetching.setdefault(stamp, flight)
            if leader is flight:
                mine.append(stamp)
            else:
                joined[id(leader)] = leader
        found: dict[str, int] = {}
        if mine:
            seq = self._seq
            try:
                fetched = await self._l2.read_stamps(
                    [m.encode() for m in mine],
                    [new_version() for _ in mine],
                    self.redis_expiry,
                )
                versions = await self._repair(mine, fetched)
            except self._errors as exc:
                flight.resolve(None)
                self._on_error(exc)
                return None
            except BaseException:
                flight.fail(LeaderGone())
                raise
            finally:
                for stamp in mine:
                    if fetching.get(stamp) is flight:
                        del fetching[stamp]
            if versions is None:
                flight.resolve(None)
                return None
            known = self._known
            valid_until = _monotonic() + self._trust
            if len(known) > _MAX_STAMPS:
                known.clear()
            for stamp, version in zip(mine, versions, strict=True):
                found[stamp] = version
                if seq == self._seq:
                    known[stamp] = (version, valid_until)
            flight.resolve(found)
        for leader in joined.values():
            try:
                theirs = await leader.wait()
            except LeaderGone:
                continue  # the caller fetches what is still missing itself
            if theirs is None:
                return None  # that fetch failed (and was counted): Redis is failing now
            found.update((stamp, theirs[stamp]) for stamp in stamps if stamp in theirs)
        return found

    async def _repair(self, stamps: list[str], fetched: list[int]) -> list[int] | None:
        """Replace the stamps that held garbage (0) with new versions: entries written
        under them become misses, as after an invalidation, and readers never fail."""
        if all(fetched):
            return fetched
        repaired = [version or new_version() for version in fetched]
        broken = [
            (stamp.encode(), version)
            for stamp, old, version in zip(stamps, fetched, repaired, strict=True)
            if not old
        ]
        try:
            await self._l2.overwrite_stamps(broken, self.redis_expiry)
        except self._errors as exc:
            self._on_error(exc)
            return None
        return repaired

    async def bump(self, stamp: str) -> tuple[int, bool]:
        """Write a new version: (version, replicated). Raises on Redis errors (the caller
        queues the invalidation); not replicated yet means: keep it queued too."""
        version = new_version()
        durable = await self._l2.write_stamp_durably(stamp.encode(), version, self.redis_expiry)
        self.learn(stamp, version)
        return version, durable

    def learn(self, stamp: str, version: int) -> None:
        self._seq += 1
        self._known[stamp] = (version, _monotonic() + self._trust)

    def forget(self) -> None:
        self._seq += 1
        self._known.clear()

    def after_fork(self) -> None:
        """In a forked child: fetches in flight belong to the parent's threads, which do
        not exist here (joining one would wait forever)."""
        self._fetching = {}
