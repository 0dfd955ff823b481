"""The cache's one hook for metrics and tracing backends (``veneer.metrics``).

A cache built with ``observer=`` asks each observer once, at construction, what it
wants to see (:class:`CacheHooks`). Nothing here is consulted per call: a cache
without an observer runs exactly the code it ran before this module existed, and
one with an observer has its latency samples and its miss-path methods replaced
once (``_async/_observed.py``). L1 hits are never timed nor traced.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ._errors import ConfigurationError
from ._stats import LatencySample

__all__ = ["CacheHooks", "ObservedSample", "Observer", "SpanFactory", "merge_hooks"]

# ``span(name, attributes)``: a context manager around one operation; an exception
# leaving it is the operation's failure.
SpanFactory = Callable[[str, dict[str, Any]], AbstractContextManager[Any]]


@dataclass(frozen=True, slots=True)
class CacheHooks:
    """What an observer wants from one cache; ``None`` leaves that path untouched."""

    l2_read: Callable[[float], None] | None = None
    """Seconds of each Redis read (GET, lease-get, MGET) that got an answer."""
    load: Callable[[float], None] | None = None
    """Seconds of each source load that returned."""
    span: SpanFactory | None = None
    """Spans around source loads, fills, lease waits and invalidations."""


@runtime_checkable
class Observer(Protocol):
    """A metrics or tracing backend (``veneer.metrics``): told about each cache built
    with ``observer=`` once, when the cache is built."""

    def attach(self, cache: Any, /) -> CacheHooks: ...


def check_observer(value: object) -> tuple[Observer, ...]:
    """``observer=``: one observer or a sequence of them; a clear error otherwise."""
    items: Sequence[object] = value if isinstance(value, list | tuple) else (value,)
    for item in items:
        if not isinstance(item, Observer):
            raise ConfigurationError(
                f"observer={item!r} is not an observer: pass veneer.metrics.PrometheusMetrics(), "
                "OtelMetrics() or OtelTracing() (or a list of them)"
            )
    return tuple(items)  # type: ignore[arg-type]


def merge_hooks(hooks: Sequence[CacheHooks]) -> CacheHooks:
    """One set of hooks from several observers (Prometheus metrics and OTel spans, say)."""
    if len(hooks) == 1:
        return hooks[0]

    def fan_out(name: str) -> Callable[[float], None] | None:
        found = [f for f in (getattr(h, name) for h in hooks) if f is not None]
        if len(found) <= 1:
            return found[0] if found else None

        def every(seconds: float) -> None:
            for f in found:
                f(seconds)

        return every

    spans = [h.span for h in hooks if h.span is not None]
    if len(spans) > 1:
        raise ConfigurationError("observer=: more than one observer traces spans; keep one")
    return CacheHooks(
        l2_read=fan_out("l2_read"), load=fan_out("load"), span=spans[0] if spans else None
    )


class ObservedSample(LatencySample):
    """A latency ring that also hands each duration to an observer (a histogram)."""

    __slots__ = ("_observe",)

    def __init__(self, observe: Callable[[float], None], size: int = 2048) -> None:
        super().__init__(size)
        self._observe = observe

    def record(self, seconds: float) -> None:
        LatencySample.record(self, seconds)
        self._observe(seconds)
