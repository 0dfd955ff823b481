"""Where responses live in the veneer cache: an index per URL, one entry per variant.

Key layout (in the cache's namespace)::

    http:<url digest>                          UrlIndex: epoch, learned tags
    http:<url digest>:<epoch>:-                the URL's first variant (it also tells Vary)
    http:<url digest>:<epoch>:<vary digest>    other variants

Invalidating a URL (after an unsafe method) writes a new index with a new random
epoch: every variant under the old one becomes unreachable at once, whatever
their number, and a late write can only ever create a *new* epoch, never bring an
old one back. Entries carry the URL's tags, so ``invalidate_tag`` purges them
through the cache's version stamps (O(1)).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import msgspec

from .._async._cache import AsyncCache
from ._answers import new_epoch
from ._policy import Request, StoredResponse, normalize_field

__all__ = ["ResponseStore", "UrlIndex"]


class UrlIndex(msgspec.Struct, array_like=True):
    epoch: str
    tags: list[str]
    passthrough: bool = False
    """The URL's last response could not be stored (no-store, private, too large...):
    until this index expires, requests go straight to the app, without a shared load."""


class ResponseStore:
    """The HTTP cache's view of an :class:`~veneer.AsyncCache` (public methods only)."""

    def __init__(self, cache: AsyncCache, *, index_ttl: float, pass_ttl: float) -> None:
        self.cache = cache
        self.index_ttl = index_ttl
        self.pass_ttl = pass_ttl

    @staticmethod
    def digest(url: str) -> str:
        return hashlib.blake2b(url.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()

    def index_key(self, url: str) -> str:
        return "http:" + self.digest(url)

    def entry_key(self, url: str, index: UrlIndex, slot: str) -> str:
        return f"http:{self.digest(url)}:{index.epoch}:{slot}"

    @staticmethod
    def slot(vary: Sequence[tuple[str, str | None]], request: Request) -> str:
        """The variant slot of ``request`` for the Vary fields of the URL's first variant."""
        if not vary:
            return "-"
        parts = []
        for name, _ in vary:
            value = normalize_field(name, request.fields.get(name))
            parts.append(name + ("\x00" if value is None else "=" + value))
        raw = "\x01".join(parts).encode("utf-8", "surrogatepass")
        return hashlib.blake2b(raw, digest_size=8).hexdigest()

    async def index(self, url: str) -> UrlIndex | None:
        value = await self.cache.get(self.index_key(url), type=UrlIndex)
        return value if isinstance(value, UrlIndex) else None

    async def create_index(self, url: str) -> UrlIndex:
        """The URL's index, created if absent: concurrent creators (in every process)
        agree on one epoch, through the cache's single-flight and leases."""
        value = await self.cache.get_or_load(
            self.index_key(url), lambda: UrlIndex(new_epoch(), []), ttl=self.index_ttl,
            type=UrlIndex,
        )  # fmt: skip
        if not isinstance(value, UrlIndex):  # pragma: no cover - a foreign value under our key
            value = UrlIndex(new_epoch(), [])
            await self._write(url, value, self.index_ttl)
        return value

    async def learn(self, url: str, tags: Sequence[str]) -> None:
        """Remember tags the URL's responses declare, under a new epoch (so no response
        stored without them can be served again)."""
        await self._write(url, UrlIndex(new_epoch(), sorted(set(tags))), self.index_ttl)

    async def mark_pass(self, url: str, index: UrlIndex) -> None:
        """Remember for ``pass_ttl`` that the URL's responses are not stored (hit-for-pass)."""
        if self.pass_ttl > 0:
            await self._write(url, UrlIndex(new_epoch(), index.tags, True), self.pass_ttl)

    async def invalidate_url(self, url: str) -> None:
        """Make every stored variant of ``url`` unreachable (its learned tags are kept)."""
        current = await self.index(url)
        if current is None:
            # Nothing known here, or Redis is unreachable: a delete is queued and retried.
            await self.cache.invalidate(self.index_key(url))
            return
        await self._write(url, UrlIndex(new_epoch(), current.tags), self.index_ttl)

    async def _write(self, url: str, index: UrlIndex, ttl: float) -> None:
        # As the plain list that ``type=UrlIndex`` reads back (array_like), so that the
        # cache's type-drift check has nothing to warn about.
        plain = [index.epoch, list(index.tags), index.passthrough]
        await self.cache.set(self.index_key(url), plain, ttl=ttl)

    async def entry(self, key: str) -> StoredResponse | None:
        value = await self.cache.get(key, type=StoredResponse)
        return value if isinstance(value, StoredResponse) else None
