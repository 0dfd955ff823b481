"""``@cache.cached(...)`` for the asyncio front (``veneer/_sync/_decorator.py`` is
generated from this file): the wrapper keeps the L1 hit inline, so a hit costs
one key build, one dict lookup and one comparison."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, cast

from .._errors import ConfigurationError
from .._keyfunc import KeyBuilder
from .._txn import open_marks as _open_marks
from ._concurrency import KIND_HINT, is_our_kind

if TYPE_CHECKING:
    from ._cache import AsyncCache

__all__ = ["AsyncCachedFunction", "cached_decorator"]

P = ParamSpec("P")
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
_monotonic = time.monotonic


class AsyncCachedFunction(Protocol[P, T_co]):
    """What ``@cache.cached(...)`` returns: the function, plus its cache handles."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[T_co]: ...

    def key_for(self, *args: P.args, **kwargs: P.kwargs) -> str: ...

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[bool]: ...


def cached_decorator(
    cache: AsyncCache,
    ttl: float | None,
    static_tags: tuple[str, ...],
    key: str | None,
    type: Any,
) -> Callable[[Callable[P, Awaitable[T]]], AsyncCachedFunction[P, T]]:
    def decorate(fn: Callable[P, Awaitable[T]]) -> AsyncCachedFunction[P, T]:
        if not is_our_kind(fn):
            raise ConfigurationError(KIND_HINT)
        builder = KeyBuilder(fn, key, static_tags)
        build = builder.compile()
        l1 = cache._l1_map
        counters = cache._counters

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            k = build(args, kwargs)
            entry = l1.get(k)
            if (
                entry is not None
                and entry.expires > _monotonic() < cache._l1_trust
                and not _open_marks.get()
            ):
                entry.visited = True
                counters.l1_hits += 1
                return cast(T, entry.value)
            return cast(
                T,
                await cache._miss(
                    k,
                    functools.partial(fn, *args, **kwargs),
                    ttl,
                    builder.tags(static_tags, args, kwargs),
                    type,
                ),
            )

        async def invalidate(*args: P.args, **kwargs: P.kwargs) -> bool:
            return await cache.invalidate(build(args, kwargs))

        def key_for(*args: P.args, **kwargs: P.kwargs) -> str:
            return build(args, kwargs)

        wrapper.invalidate = invalidate  # type: ignore[attr-defined]
        wrapper.key_for = key_for  # type: ignore[attr-defined]
        return cast(AsyncCachedFunction[P, T], wrapper)

    return decorate
