"""The HTTP cache's options, checked once when the middleware is built."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .._async._cache import AsyncCache
from .._errors import ConfigurationError
from ._asgi import Scope
from ._policy import Policy

__all__ = ["HttpConfig"]


@dataclass(frozen=True, slots=True)
class HttpConfig:
    policy: Policy
    max_body_bytes: int
    request_directives: bool
    key: Callable[[Scope], str] | None
    tags: Callable[[Scope], Iterable[str]] | None
    max_tags: int
    pass_ttl: float

    @classmethod
    def build(
        cls,
        cache: Any,
        *,
        stale_if_error: float,
        keep_stale: float,
        heuristic_fraction: float,
        heuristic_max: float,
        max_body_bytes: int | None,
        share_set_cookie: bool,
        request_directives: bool,
        targeted_fields: Iterable[str],
        tag_header: str,
        key: Callable[[Scope], str] | None,
        tags: Callable[[Scope], Iterable[str]] | None,
        max_ttl: float | None,
        max_tags: int,
        pass_ttl: float,
    ) -> HttpConfig:
        if not isinstance(cache, AsyncCache):
            raise ConfigurationError(
                f"HttpCache needs a veneer AsyncCache (ASGI is asyncio), got {cache!r}"
            )
        for name, value in (
            ("stale_if_error", stale_if_error),
            ("keep_stale", keep_stale),
            ("heuristic_fraction", heuristic_fraction),
            ("heuristic_max", heuristic_max),
            ("pass_ttl", pass_ttl),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigurationError(f"{name}={value!r} must be a number >= 0 (0 turns it off)")
        if heuristic_fraction > 1:
            raise ConfigurationError(
                f"heuristic_fraction={heuristic_fraction!r} must be at most 1 (0.1 is usual)"
            )
        limit = cache.options.max_value_bytes if max_body_bytes is None else max_body_bytes
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigurationError(f"max_body_bytes={max_body_bytes!r} must be an integer >= 1")
        if isinstance(max_tags, bool) or not isinstance(max_tags, int) or max_tags < 1:
            raise ConfigurationError(f"max_tags={max_tags!r} must be an integer >= 1")
        for name, fn in (("key", key), ("tags", tags)):
            if fn is not None and not callable(fn):
                raise ConfigurationError(f"{name}= must be a function of the ASGI scope")
        ceiling = cache.options.max_ttl if max_ttl is None else cache.options.resolve_ttl(max_ttl)
        header = tag_header.strip().lower()
        if not header:
            raise ConfigurationError("tag_header must name a response header (surrogate-key)")
        policy = Policy(
            heuristic_fraction=float(heuristic_fraction),
            heuristic_max=float(heuristic_max),
            stale_if_error=float(stale_if_error),
            keep_stale=float(keep_stale),
            max_ttl=ceiling,
            share_set_cookie=bool(share_set_cookie),
            targeted_fields=tuple(f.strip().lower() for f in targeted_fields),
            tag_header=header.encode("latin-1"),
        )
        return cls(
            policy=policy,
            max_body_bytes=limit,
            request_directives=bool(request_directives),
            key=key,
            tags=tags,
            max_tags=max_tags,
            pass_ttl=min(float(pass_ttl), ceiling),
        )
