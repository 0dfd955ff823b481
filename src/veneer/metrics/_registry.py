"""The components one metrics backend reports on (weakly held) and their histograms."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ._histogram import L2_READ_BUCKETS, LOAD_BUCKETS, Histogram
from ._readings import Family, kind_of, kinds, reader_for

__all__ = ["HISTOGRAMS", "Components", "Registered"]

log = logging.getLogger("veneer")

# name -> (help, buckets): the histograms of a cache built with observer=.
HISTOGRAMS = {
    "veneer_cache_l2_read_seconds": (
        "Redis reads that got an answer (GET, lease-get, MGET).",
        L2_READ_BUCKETS,
    ),
    "veneer_cache_load_seconds": ("Source loads that returned.", LOAD_BUCKETS),
}


@dataclass(slots=True)
class Registered:
    ref: weakref.ref[Any]
    kind: str
    labels: dict[str, str]
    histograms: dict[str, Histogram] = field(default_factory=dict)


class Components:
    def __init__(self) -> None:
        self._entries: dict[int, Registered] = {}

    def add(
        self, component: object, *, namespace: str | None, component_label: str | None
    ) -> Registered:
        kind = kind_of(component)
        if kind is None:
            raise TypeError(
                f"veneer.metrics cannot export {type(component).__name__!r} objects: register a "
                f"Cache/AsyncCache or a veneer component ({', '.join(kinds())})"
            )
        if namespace is None:
            namespace = _namespace_of(component)
        labels = {"namespace": namespace or "", "component": component_label or kind}
        self._sweep()
        existing = self._entries.get(id(component))
        if existing is not None and existing.ref() is component:
            return existing
        for entry in self._entries.values():
            if entry.kind == kind and entry.labels == labels:
                raise ValueError(
                    f"a {kind} with namespace={labels['namespace']!r} and component="
                    f"{labels['component']!r} is already registered: their series would be "
                    "the same; pass component='<a name of your own>' to tell them apart"
                )
        key = id(component)
        entry = Registered(
            weakref.ref(component, lambda _ref: self._entries.pop(key, None)), kind, labels
        )
        self._entries[key] = entry
        return entry

    def remove(self, component: object) -> None:
        entry = self._entries.get(id(component))
        if entry is not None and entry.ref() is component:
            del self._entries[id(component)]

    def with_histograms(self, entry: Registered) -> tuple[Histogram, Histogram]:
        for name, (_help, buckets) in HISTOGRAMS.items():
            entry.histograms.setdefault(name, Histogram(buckets))
        return (
            entry.histograms["veneer_cache_l2_read_seconds"],
            entry.histograms["veneer_cache_load_seconds"],
        )

    def entries(self) -> list[Registered]:
        return list(self._entries.values())

    def families(self) -> Iterator[tuple[Registered, Family]]:
        """Every live component's readings; one whose stats() fails is left out (logged)."""
        for entry in self.entries():
            component = entry.ref()
            if component is None:
                continue
            try:
                found = reader_for(entry.kind)(component)
            except Exception:
                log.warning(
                    "veneer.metrics: reading %s %s failed", entry.kind, entry.labels, exc_info=True
                )
                continue
            for family in found:
                yield entry, family

    def _sweep(self) -> None:
        for key, entry in list(self._entries.items()):
            if entry.ref() is None:
                self._entries.pop(key, None)


def _namespace_of(component: Any) -> str | None:
    options = getattr(component, "options", None)
    namespace = getattr(options, "namespace", None)
    if isinstance(namespace, str):
        return namespace  # a cache
    namespace = getattr(component, "namespace", None)
    if isinstance(namespace, str) or (namespace is None and hasattr(component, "namespace")):
        return namespace
    cache = getattr(component, "cache", None)  # counters, the HTTP cache
    return getattr(getattr(cache, "options", None), "namespace", None)
