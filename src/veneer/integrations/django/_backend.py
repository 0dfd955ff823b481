"""``VeneerCache``: Django's cache API on veneer's :class:`~veneer.Cache`.

So a Django project gets the in-process tier, the deadlines and circuit breaker,
the source bulkhead (``get_or_set``), leases and safe codecs. What each Django
semantic becomes is in ``docs/django.md``; in short:

- ``timeout=None`` (forever) is ``max_ttl``: veneer writes nothing without a TTL;
- ``clear()`` is a new namespace epoch (one command), never FLUSHDB;
- ``add``, ``incr`` and ``touch`` are compare-and-set writes on the key's slot,
  atomic on one Redis and on a cluster;
- while Redis is unreachable, reads are misses, writes are skipped (and the key
  invalidated when Redis is back), ``add`` is False and ``incr`` a ValueError:
  never a Redis exception.

The async methods answer from this process's L1 on the event loop and run
everything else on a worker thread, so sync and async code of one process share
one L1 and read their own writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from asgiref.sync import sync_to_async
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django.core.exceptions import ImproperlyConfigured

from ..._errors import ConfigurationError, RedisUnavailable, ValueTooLarge
from ..._sync._cache import Cache
from ._codecs import DjangoCodec, Stored
from ._config import BackendSettings, backend_settings, shared_cache

__all__ = ["VeneerCache"]

log = logging.getLogger("veneer.django")

_MISSING: Any = object()
_KEY_LIMIT = 250
_WARN_EVERY = 10.0


def _loaded(value: Any) -> Any:
    """A fresh copy of a container (every read decodes its own), a scalar as is;
    ``_MISSING`` for bytes that do not decode (a pickle of a class that moved, bytes
    written by something else): a miss, never an exception in the app."""
    if type(value) is not Stored:
        return value
    try:
        return value.load()
    except Exception as exc:
        log.debug("veneer: unreadable cache entry treated as a miss: %r", exc)
        return _MISSING


def _loaded_many(made: dict[str, Any], found: dict[str, Any]) -> dict[Any, Any]:
    out = {}
    for key, stored in found.items():
        value = _loaded(stored)
        if value is not _MISSING:
            out[made[key]] = value
    return out


class VeneerCache(BaseCache):  # type: ignore[misc]  # Django is untyped
    """The ``CACHES`` backend ``"veneer.integrations.django.VeneerCache"``.

    ``LOCATION``: a veneer Redis URL (``redis://``, ``rediss://``, ``unix://``,
    ``redis+cluster://``, ``redis+sentinel://``). ``OPTIONS`` (any case):
    ``namespace`` (``"django"``), ``codec`` (``"msgpack"``, or ``"pickle"`` as an
    explicit opt-in), ``max_ttl`` (86400 s: the ceiling, and what ``timeout=None``
    means), and any option of :class:`veneer.Cache` (``l1_size``,
    ``redis_timeout``, ``max_stale``, ...).
    """

    def __init__(self, server: Any, params: dict[str, Any]) -> None:
        super().__init__(params)
        try:
            self._settings: BackendSettings = backend_settings(server, params.get("OPTIONS", {}))
            self._cache: Cache = shared_cache(self._settings)
        except ConfigurationError as exc:
            raise ImproperlyConfigured(f"veneer cache backend: {exc}") from None
        self._store = DjangoCodec(
            self._settings.codec, copy_on_read=self._settings.copy_on_read
        ).store
        self._max_ttl = self._settings.max_ttl
        self._last_warning = 0.0

    @property
    def veneer(self) -> Cache:
        """The :class:`veneer.Cache` behind this backend (shared by every alias and thread
        of this process with the same LOCATION and OPTIONS): tags, ``stats()``, ``check()``."""
        return self._cache

    # ------------------------------------------------------------------ keys

    def validate_key(self, key: str) -> None:
        # Django's check walks the key in Python on every call; the common key needs
        # no warning, and that is decided in C.
        if len(key) <= _KEY_LIMIT and key.isprintable() and " " not in key:
            return
        super().validate_key(key)

    def get_backend_timeout(self, timeout: Any = DEFAULT_TIMEOUT) -> float | None:
        """Seconds to keep a value: ``max_ttl`` for ``None``, 0 for "do not keep"."""
        ttl = self._ttl(timeout)
        return 0 if ttl is None else ttl

    def _ttl(self, timeout: Any) -> float | None:
        """The TTL of a write, or None when the value must not be kept (timeout <= 0)."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return self._max_ttl
        if timeout <= 0:
            return None
        return min(float(timeout), self._max_ttl)

    # ----------------------------------------------------------------- reads

    def get(self, key: Any, default: Any = None, version: Any = None) -> Any:
        value = self._cache.get(self.make_and_validate_key(key, version=version), default=_MISSING)
        if value is _MISSING:
            return default
        value = _loaded(value)
        return default if value is _MISSING else value

    def get_many(self, keys: Iterable[Any], version: Any = None) -> dict[Any, Any]:
        made = {self.make_and_validate_key(key, version=version): key for key in keys}
        if not made:
            return {}
        return _loaded_many(made, self._cache.get_many(made))

    def has_key(self, key: Any, version: Any = None) -> bool:
        made = self.make_and_validate_key(key, version=version)
        return _loaded(self._cache.get(made, default=_MISSING)) is not _MISSING

    def get_or_set(
        self, key: Any, default: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> Any:
        made = self.make_and_validate_key(key, version=version)
        ttl = self._ttl(timeout)
        if ttl is None:  # nothing may be kept: the cached value, else the default
            found = _loaded(self._cache.get(made, default=_MISSING))
            if found is not _MISSING:
                return found
            return default() if callable(default) else default
        if callable(default):
            stored = self._cache.get_or_load(made, lambda: self._store(default()), ttl=ttl)
        else:
            value = self._store(default)
            stored = self._cache.get_or_load(made, lambda: value, ttl=ttl)
        found = _loaded(stored)
        if found is _MISSING:  # an unreadable entry: drop it, the next call fills it again
            self._cache.invalidate(made)
            return default() if callable(default) else default
        return found

    # ---------------------------------------------------------------- writes

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> None:
        made = self.make_and_validate_key(key, version=version)
        self._set(made, self._store(value), self._ttl(timeout))

    def _set(self, made: str, stored: Any, ttl: float | None) -> bool:
        if ttl is None:
            self._cache.invalidate(made)
            return True
        try:
            self._cache.set(made, stored, ttl=ttl)
        except ValueTooLarge as exc:
            # As Django's memcached backend does: not stored, and the old value dropped.
            self._cache.invalidate(made)
            self._warn(f"{exc} (not cached)")
            return False
        return True

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> bool:
        made = self.make_and_validate_key(key, version=version)
        return self._add(made, self._store(value), self._ttl(timeout))

    def _add(self, made: str, stored: Any, ttl: float | None) -> bool:
        if ttl is None:
            return self._cache.get(made, default=_MISSING) is _MISSING
        try:
            return self._cache.add(made, stored, ttl=ttl)
        except ValueTooLarge as exc:
            self._warn(f"{exc} (not added)")
            return False

    def set_many(
        self, data: dict[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> list[Any]:
        return self._set_many(self._prepared(data, version), self._ttl(timeout))

    def _prepared(self, data: dict[Any, Any], version: Any) -> list[tuple[Any, str, Any]]:
        return [
            (key, self.make_and_validate_key(key, version=version), self._store(value))
            for key, value in data.items()
        ]

    def _set_many(self, prepared: list[tuple[Any, str, Any]], ttl: float | None) -> list[Any]:
        return [key for key, made, stored in prepared if not self._set(made, stored, ttl)]

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> bool:
        return self._touch(self.make_and_validate_key(key, version=version), self._ttl(timeout))

    def _touch(self, made: str, ttl: float | None) -> bool:
        if ttl is None:
            return self._delete(made)
        return self._cache.touch(made, ttl=ttl)

    def incr(self, key: Any, delta: int = 1, version: Any = None) -> int:
        return self._incr(key, self.make_and_validate_key(key, version=version), delta)

    def _incr(self, key: Any, made: str, delta: int) -> int:
        try:
            return self._cache.incr(made, delta)
        except KeyError:
            raise ValueError(f"Key '{key}' not found") from None
        except RedisUnavailable:
            # As for a read: while Redis is unreachable the cache holds nothing.
            raise ValueError(f"Key '{key}' not found (Redis is unreachable)") from None

    def delete(self, key: Any, version: Any = None) -> bool:
        return self._delete(self.make_and_validate_key(key, version=version))

    def _delete(self, made: str) -> bool:
        existed = _loaded(self._cache.get(made, default=_MISSING)) is not _MISSING
        self._cache.invalidate(made)
        return existed

    def delete_many(self, keys: Iterable[Any], version: Any = None) -> None:
        self._delete_many([self.make_and_validate_key(key, version=version) for key in keys])

    def _delete_many(self, made: list[str]) -> None:
        for key in made:
            self._cache.invalidate(key)

    def clear(self) -> None:
        """Empty the namespace: a new epoch, one command. Never FLUSHDB: other data in
        the same Redis database (other namespaces, other apps) stays."""
        self._cache.invalidate_all()

    def close(self, **kwargs: Any) -> None:
        """Nothing to do: the connections are pooled per process, across requests."""

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_warning >= _WARN_EVERY:
            self._last_warning = now
            log.warning("veneer[%s]: %s", self._settings.namespace, message)

    # ----------------------------------------------------------------- async
    # L1 answers on the loop; anything that may wait on Redis runs on a worker thread.

    async def aget(self, key: Any, default: Any = None, version: Any = None) -> Any:
        made = self.make_and_validate_key(key, version=version)
        value = self._cache.get_local(made, _MISSING)
        if value is _MISSING:
            value = await _off_loop(self._cache.get, made, default=_MISSING)
        value = _loaded(value)
        return default if value is _MISSING else value

    async def ahas_key(self, key: Any, version: Any = None) -> bool:
        made = self.make_and_validate_key(key, version=version)
        value = self._cache.get_local(made, _MISSING)
        if value is _MISSING:
            value = await _off_loop(self._cache.get, made, default=_MISSING)
        return _loaded(value) is not _MISSING

    async def aget_many(self, keys: Iterable[Any], version: Any = None) -> dict[Any, Any]:
        made = {self.make_and_validate_key(key, version=version): key for key in keys}
        local = {k: self._cache.get_local(k, _MISSING) for k in made}
        if _MISSING in local.values():
            local = await _off_loop(self._cache.get_many, list(made))
        return _loaded_many(made, local)

    async def aget_or_set(
        self, key: Any, default: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> Any:
        made = self.make_and_validate_key(key, version=version)
        value = _loaded(self._cache.get_local(made, _MISSING))
        if value is not _MISSING:
            return value
        # A callable default may use the ORM: run it where Django runs sync code.
        return await sync_to_async(self.get_or_set, thread_sensitive=callable(default))(
            key, default, timeout, version
        )

    async def aset(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> None:
        made = self.make_and_validate_key(key, version=version)
        stored = self._store(value)
        await _off_loop(self._set, made, stored, self._ttl(timeout))

    async def aadd(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> bool:
        made = self.make_and_validate_key(key, version=version)
        stored = self._store(value)
        result: bool = await _off_loop(self._add, made, stored, self._ttl(timeout))
        return result

    async def aset_many(
        self, data: dict[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> list[Any]:
        prepared = self._prepared(data, version)
        result: list[Any] = await _off_loop(self._set_many, prepared, self._ttl(timeout))
        return result

    async def atouch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> bool:
        made = self.make_and_validate_key(key, version=version)
        result: bool = await _off_loop(self._touch, made, self._ttl(timeout))
        return result

    async def aincr(self, key: Any, delta: int = 1, version: Any = None) -> int:
        made = self.make_and_validate_key(key, version=version)
        result: int = await _off_loop(self._incr, key, made, delta)
        return result

    async def adelete(self, key: Any, version: Any = None) -> bool:
        made = self.make_and_validate_key(key, version=version)
        result: bool = await _off_loop(self._delete, made)
        return result

    async def adelete_many(self, keys: Iterable[Any], version: Any = None) -> None:
        made = [self.make_and_validate_key(key, version=version) for key in keys]
        await _off_loop(self._delete_many, made)

    async def aclear(self) -> None:
        await _off_loop(self.clear)

    async def aclose(self, **kwargs: Any) -> None:
        """Nothing to do (see :meth:`close`)."""


async def _off_loop(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """``fn`` on a worker thread: a Redis round trip (or a timeout) never blocks the loop."""
    return await sync_to_async(fn, thread_sensitive=False)(*args, **kwargs)
