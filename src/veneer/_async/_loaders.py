"""Loader wrappers of the asyncio front (``veneer/_sync/_loaders.py`` is generated from
this file): the ``type=`` conversion and the type-drift check run inside the load, so
every path that loads (a miss, a refresh, an outage) returns and caches the same."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._types import TypeDrift, conform
from ._concurrency import call_loader

__all__ = ["conformed", "watched"]


def conformed(loader: Callable[[], Any], type: Any, key: str) -> Callable[[], Any]:
    async def load() -> Any:
        return conform(await call_loader(loader), type, key)

    return load


def watched(
    loader: Callable[[], Any], drift: TypeDrift, site: Any, key: str, namespace: str
) -> Callable[[], Any]:
    async def load() -> Any:
        value = await call_loader(loader)
        drift.check(site, key, value, namespace)
        return value

    return load
