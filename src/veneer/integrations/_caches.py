"""One sync :class:`~veneer.Cache` per namespace, for workers that serve many (relay, listener)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeAlias

from .._errors import VeneerError
from .._sync._cache import Cache

__all__ = ["CacheSource", "CachesByNamespace", "apply_op"]

log = logging.getLogger("veneer")

CacheSource: TypeAlias = "str | Cache | Callable[[str], Cache]"
"""A Redis URL (a cache is built per namespace), one cache (its namespace only), or a
factory ``namespace -> Cache``."""


class CachesByNamespace:
    """Resolves a namespace to the cache that invalidates it.

    Caches built here from a URL are closed by :meth:`close`; caches the caller
    passed in or a factory returned belong to the caller.
    """

    def __init__(self, source: CacheSource, /, **cache_options: Any) -> None:
        self._lock = threading.Lock()
        self._caches: dict[str, Cache | None] = {}
        self._owned: list[Cache] = []
        self._factory: Callable[[str], Cache] | None = None
        self._url: str | None = None
        self._options = {"l1_size": 0, **cache_options}
        if isinstance(source, str):
            self._url = source
        elif isinstance(source, Cache):
            self._caches[source.options.namespace] = source
        elif callable(source):
            self._factory = source
        else:
            raise TypeError(f"expected a Redis URL, a Cache or a factory, got {source!r}")

    def get(self, namespace: str) -> Cache | None:
        """The cache for ``namespace``, or None when this source does not serve it."""
        with self._lock:
            if namespace in self._caches:
                return self._caches[namespace]
            cache: Cache | None = None
            try:
                if self._url is not None:
                    cache = Cache.from_url(self._url, namespace=namespace, **self._options)
                    self._owned.append(cache)
                elif self._factory is not None:
                    cache = self._factory(namespace)
            except VeneerError as exc:
                log.warning("veneer: no cache for namespace %r: %s", namespace, exc)
            self._caches[namespace] = cache
            return cache

    def close(self) -> None:
        with self._lock:
            owned, self._owned = self._owned, []
            self._caches.clear()
        for cache in owned:
            cache.close()


def apply_op(cache: Cache, kind: str, name: str) -> bool:
    """Apply one invalidation; True when Redis applied it now (False: the cache queued it)."""
    if kind == "k":
        return cache.invalidate(name)
    if kind == "t":
        return cache.invalidate_tag(name)
    if kind == "e":
        return cache.invalidate_all()
    raise ValueError(f"unknown invalidation kind {kind!r}")
