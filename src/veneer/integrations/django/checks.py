"""``manage.py check``: settings that make Redis a second database or hide its failures.

=========  ====================================================================
veneer.W001  pickle on a Redis cache: whoever can write to that Redis can run code
             in every process that reads it (Django's RedisCache and django-redis
             pickle by default; VeneerCache only with ``codec='pickle'``).
veneer.W002  no TTL ceiling: ``TIMEOUT: None`` on a Redis cache that stores such
             values forever (VeneerCache maps it to ``max_ttl``).
veneer.W003  ``IGNORE_EXCEPTIONS`` (django-redis) masks Redis errors: every call still
             waits out the socket timeout, and nothing says Redis is down.
veneer.W004  sessions only in Redis (the ``cache`` session engine on a Redis cache):
             a FLUSHALL, an eviction or a failover logs everybody out.
veneer.E001  a VeneerCache entry veneer cannot build (the message says what to change).
veneer.E002  ``VENEER_ORM`` or ``VENEER_SESSIONS`` name a cache alias that is not a
             VeneerCache.
=========  ====================================================================
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

__all__ = ["check_caches", "check_sessions"]

VENEER = "veneer.integrations.django.VeneerCache"
DJANGO_REDIS = "django.core.cache.backends.redis.RedisCache"
_PICKLING_REDIS = {DJANGO_REDIS, "django_redis.cache.RedisCache"}


def _options(entry: dict[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in (entry.get("OPTIONS") or {}).items()}


def _is_redis(entry: dict[str, Any]) -> bool:
    return entry.get("BACKEND") in _PICKLING_REDIS | {VENEER}


def check_caches(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    found: list[checks.CheckMessage] = []
    for alias, entry in getattr(settings, "CACHES", {}).items():
        backend = entry.get("BACKEND")
        options = _options(entry)
        where = f"CACHES[{alias!r}]"
        if backend == VENEER:
            found += _veneer_entry(where, entry)
        pickles = backend in _PICKLING_REDIS and not _safe_serializer(backend, options)
        if pickles or (backend == VENEER and options.get("codec") == "pickle"):
            found.append(
                checks.Warning(
                    f"{where} pickles values in Redis: whoever can write to that Redis can "
                    "run code in every process that reads it.",
                    hint=(
                        "Use veneer.integrations.django.VeneerCache (msgpack by default). "
                        "If the Redis is private to this app and every writer is trusted, "
                        "silence veneer.W001."
                    ),
                    id="veneer.W001",
                )
            )
        if backend in _PICKLING_REDIS and "TIMEOUT" in entry and entry["TIMEOUT"] is None:
            found.append(
                checks.Warning(
                    f"{where} has TIMEOUT None: values written without a timeout never "
                    "expire, so Redis becomes a second database that nothing rebuilds.",
                    hint="Set a TIMEOUT (seconds), or use VeneerCache (None means max_ttl).",
                    id="veneer.W002",
                )
            )
        if options.get("ignore_exceptions") or (
            backend == "django_redis.cache.RedisCache"
            and getattr(settings, "DJANGO_REDIS_IGNORE_EXCEPTIONS", False)
        ):
            found.append(
                checks.Warning(
                    f"{where} ignores Redis exceptions: every call still waits out the "
                    "socket timeout while Redis is down, and nothing reports the outage.",
                    hint="VeneerCache has deadlines and a circuit breaker instead.",
                    id="veneer.W003",
                )
            )
    return found


def _safe_serializer(backend: str, options: dict[str, Any]) -> bool:
    serializer = str(options.get("serializer", ""))
    return "json" in serializer.lower() or "msgpack" in serializer.lower()


def _veneer_entry(where: str, entry: dict[str, Any]) -> list[checks.CheckMessage]:
    from ..._errors import ConfigurationError
    from ._config import backend_settings

    try:
        backend_settings(entry.get("LOCATION"), entry.get("OPTIONS") or {})
    except ConfigurationError as exc:
        return [checks.Error(f"{where}: {exc}", id="veneer.E001")]
    return []


def check_sessions(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    found: list[checks.CheckMessage] = []
    engine = getattr(settings, "SESSION_ENGINE", "")
    caches = getattr(settings, "CACHES", {})
    if engine == "django.contrib.sessions.backends.cache":
        alias = getattr(settings, "SESSION_CACHE_ALIAS", "default")
        if _is_redis(caches.get(alias, {})):
            found.append(
                checks.Warning(
                    "Sessions are kept only in Redis (SESSION_ENGINE "
                    f"'{engine}' on CACHES[{alias!r}]): a FLUSHALL, an eviction or a "
                    "failover logs everybody out.",
                    hint="SESSION_ENGINE = 'veneer.integrations.django.sessions' keeps them "
                    "in the database and reads them through the cache.",
                    id="veneer.W004",
                )
            )
    for setting in ("VENEER_ORM", "VENEER_SESSIONS"):
        configured = getattr(settings, setting, None) or {}
        alias = configured.get("CACHE", "default")
        if setting == "VENEER_ORM":
            uses = configured.get("MODELS") != []
        else:
            uses = engine == "veneer.integrations.django.sessions"
        if uses and caches.get(alias, {}).get("BACKEND") != VENEER:
            found.append(
                checks.Error(
                    f"{setting} uses CACHES[{alias!r}], which is not a VeneerCache.",
                    hint=f"Point {setting}['CACHE'] at a cache whose BACKEND is '{VENEER}'.",
                    id="veneer.E002",
                )
            )
    return found
