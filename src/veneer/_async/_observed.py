"""Observers installed on one cache, once, when it is built (see ``veneer._observe``).

Latency goes to the observers through the cache's existing samples (the reads and
loads it already times for ``stats()``). Spans replace four miss-path methods of
that one cache instance with traced ones: a cache without a span observer keeps its
class's methods, with no check per call. L1 hits go through none of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._observe import ObservedSample, Observer, SpanFactory, merge_hooks

__all__ = ["install"]

_KINDS = {"k": "key", "t": "tag", "e": "namespace"}


def install(cache: Any, observers: tuple[Observer, ...]) -> None:
    hooks = merge_hooks([observer.attach(cache) for observer in observers])
    if hooks.l2_read is not None:
        cache._l2_latency = ObservedSample(hooks.l2_read)
    if hooks.load is not None:
        cache._load_latency = ObservedSample(hooks.load)
    if hooks.span is not None:
        _trace(cache, hooks.span, redis_attributes(cache))


def redis_attributes(cache: Any) -> dict[str, Any]:
    """OpenTelemetry's database attributes for this cache's Redis (never a key)."""
    attributes: dict[str, Any] = {
        "db.system": "redis",
        "db.system.name": "redis",
        "veneer.namespace": cache.options.namespace,
    }
    client = cache._l2.client
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None) or {}
    if "host" in kwargs:
        attributes["server.address"] = str(kwargs["host"])
        attributes["server.port"] = int(kwargs.get("port", 6379))
    elif "path" in kwargs:
        attributes["server.address"] = str(kwargs["path"])
    if "db" in kwargs:
        attributes["db.namespace"] = str(kwargs["db"])
    return attributes


def _trace(cache: Any, span: SpanFactory, redis: dict[str, Any]) -> None:
    namespace = cache.options.namespace
    load = cache._load
    fill = cache._fill
    acquire_lease = cache._acquire_lease
    apply = cache._invalidations.apply

    # The source is the application's (its own instrumentation, SQLAlchemy's say, adds
    # the db.* attributes of the database under this span); the rest are Redis calls.
    async def traced_load(loader: Callable[[], Any]) -> Any:
        with span("veneer load", {"veneer.namespace": namespace}):
            return await load(loader)

    async def traced_fill(*args: Any, **kwargs: Any) -> Any:
        with span("veneer fill", {**redis, "db.operation.name": "veneer.fill"}) as current:
            filled = await fill(*args, **kwargs)
            _set(current, "veneer.fill.stored", filled)
            return filled

    async def traced_acquire_lease(*args: Any, **kwargs: Any) -> tuple[str, Any]:
        with span("veneer lease wait", {**redis, "db.operation.name": "veneer.lease"}) as current:
            outcome, found = await acquire_lease(*args, **kwargs)
            _set(current, "veneer.lease.outcome", outcome)
            return outcome, found

    async def traced_apply(op: tuple[str, str], **kwargs: Any) -> Any:
        attributes = {
            **redis,
            "db.operation.name": "veneer.invalidate",
            "veneer.invalidation.kind": _KINDS.get(op[0], op[0]),
        }
        with span("veneer invalidate", attributes) as current:
            applied = await apply(op, **kwargs)
            _set(current, "veneer.invalidation.applied", applied)
            return applied

    cache._load = traced_load
    cache._fill = traced_fill
    cache._acquire_lease = traced_acquire_lease
    cache._invalidations.apply = traced_apply


def _set(span: Any, name: str, value: Any) -> None:
    setter = getattr(span, "set_attribute", None)
    if setter is not None:
        setter(name, value)
