"""From a ``CACHES`` entry to a veneer :class:`~veneer.Cache`, one per process and setting.

Django builds a backend object per alias and per thread (and again after every
``override_settings``). The veneer cache behind them must be one per process:
one L1 (so a value written by one thread is read fresh by the next), one
connection pool, one invalidation subscriber. Aliases with the same location and
options share it, as Django's aliases on one Redis database share its keys.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Final

from ..._errors import ConfigurationError
from ..._sync._cache import Cache
from ._codecs import DjangoCodec

__all__ = ["BackendSettings", "backend_settings", "shared_cache"]

DEFAULT_NAMESPACE: Final = "django"
DEFAULT_MAX_TTL: Final = 86_400.0
# Django's own options of every backend; culling has no meaning on Redis.
_DJANGO_OPTIONS: Final = frozenset({"max_entries", "cull_frequency"})
# Options whose default differs from the core's, and why (docs/django.md):
_DEFAULTS: Final[dict[str, Any]] = {
    # Django timeouts are exact (locks, rate windows): no spread unless asked for.
    "jitter": 0.0,
}


@dataclass(frozen=True, slots=True)
class BackendSettings:
    location: str
    namespace: str
    codec: str
    copy_on_read: bool
    max_ttl: float
    core: tuple[tuple[str, Any], ...]

    def build(self) -> Cache:
        options = dict(self.core)
        return Cache.from_url(
            self.location,
            namespace=self.namespace,
            codec=DjangoCodec(self.codec, copy_on_read=self.copy_on_read),
            max_ttl=self.max_ttl,
            # A cached None lives as long as any value (Django's contract), not 30 s.
            negative_ttl=self.max_ttl,
            **options,
        )


def backend_settings(location: Any, options: dict[str, Any]) -> BackendSettings:
    """The validated settings of one ``CACHES`` entry; raises ConfigurationError."""
    if isinstance(location, list | tuple):
        if len(location) != 1:
            raise ConfigurationError(
                "LOCATION must be one URL: redis+cluster://host:port,host:port for a cluster, "
                "redis+sentinel://host:port/service for Sentinel (veneer does not shard itself)"
            )
        location = location[0]
    if not isinstance(location, str) or not location:
        raise ConfigurationError(
            "LOCATION must be a Redis URL such as redis://127.0.0.1:6379/0 "
            "(rediss://, unix://, redis+cluster:// and redis+sentinel:// work too)"
        )
    lowered = {str(name).lower(): value for name, value in options.items()}
    namespace = lowered.pop("namespace", DEFAULT_NAMESPACE)
    codec = lowered.pop("codec", "msgpack")
    if codec not in ("msgpack", "pickle"):
        raise ConfigurationError(
            f"OPTIONS codec={codec!r}: use 'msgpack' (the default, safe) or 'pickle' (an "
            "opt-in for trusted Redis only: whoever can write to it can run code here)"
        )
    copy_on_read = lowered.pop("copy_on_read", True)
    if not isinstance(copy_on_read, bool):
        raise ConfigurationError(f"OPTIONS copy_on_read={copy_on_read!r} must be True or False")
    max_ttl = lowered.pop("max_ttl", DEFAULT_MAX_TTL)
    for name in ("ttl", "negative_ttl"):
        if name in lowered:
            raise ConfigurationError(
                f"OPTIONS {name!r} is set by the backend: use TIMEOUT for the default "
                "timeout and max_ttl for the ceiling (and for timeout=None)"
            )
    for name in _DJANGO_OPTIONS:
        lowered.pop(name, None)
    core = {**_DEFAULTS, **lowered}
    try:
        max_ttl = float(max_ttl)
    except (TypeError, ValueError):
        raise ConfigurationError(f"OPTIONS max_ttl={max_ttl!r} must be seconds") from None
    return BackendSettings(
        location, namespace, codec, copy_on_read, max_ttl, tuple(sorted(core.items()))
    )


_lock = threading.Lock()
_caches: dict[BackendSettings, Cache] = {}


def shared_cache(settings: BackendSettings) -> Cache:
    """This process's cache for ``settings`` (built on first use, kept until exit)."""
    cache = _caches.get(settings)
    if cache is None:
        with _lock:
            cache = _caches.get(settings)
            if cache is None:
                cache = _caches[settings] = settings.build()
    return cache


def close_all() -> None:
    """Close every shared cache (tests and benchmarks; a process simply exits)."""
    with _lock:
        caches = list(_caches.values())
        _caches.clear()
    for cache in caches:
        cache.close()
