"""veneer's metrics for ``prometheus_client`` (the ``prometheus`` extra).

One collector per registry reads every registered component's ``stats()`` at scrape
time; caches built with ``observer=PrometheusMetrics(...)`` also feed two latency
histograms. See docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

try:
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "veneer.metrics.prometheus needs prometheus-client: pip install 'veneer[prometheus]'"
    ) from exc

from .._observe import CacheHooks
from ._readings import Family
from ._registry import HISTOGRAMS, Components

__all__ = ["PrometheusMetrics", "register", "unregister"]

_LABELS = ("namespace", "component")
_by_registry: dict[int, PrometheusMetrics] = {}


class PrometheusMetrics:
    """veneer's collector in one ``prometheus_client`` registry (default: the global one).

    ``Cache.from_url(url, namespace=..., observer=metrics)`` registers the cache when it
    is built and adds its latency histograms; :meth:`register` adds any other
    component (or a cache built without it: counters and gauges, no histograms).
    One per registry: a second one for the same registry raises ValueError.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = REGISTRY if registry is None else registry
        if id(self.registry) in _by_registry:
            raise ValueError(
                "this registry already has veneer's collector: use "
                "veneer.metrics.prometheus_metrics(registry) to get it"
            )
        self._components = Components()
        self.registry.register(self)
        _by_registry[id(self.registry)] = self

    # ------------------------------------------------------------ registration

    def register(
        self,
        component: object,
        /,
        *,
        namespace: str | None = None,
        component_label: str | None = None,
    ) -> None:
        """Export ``component`` (a cache, a session store, a rate limiter, counters, flags
        or an HTTP cache) with labels ``namespace`` (default: its cache's) and ``component``
        (default: its kind). Held weakly: a component that is garbage collected goes."""
        self._components.add(component, namespace=namespace, component_label=component_label)

    def unregister(self, component: object, /) -> None:
        self._components.remove(component)

    def attach(self, cache: Any, /) -> CacheHooks:
        """Called by a cache built with ``observer=``: register it, and time its Redis reads
        and source loads into histograms."""
        entry = self._components.add(cache, namespace=None, component_label=None)
        l2_read, load = self._components.with_histograms(entry)
        return CacheHooks(l2_read=l2_read.observe, load=load.observe)

    # -------------------------------------------------------------- collection

    def describe(self) -> list[Metric]:
        return []  # the names depend on what is registered: do not collect at register time

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Any] = {}
        for entry, family in self._components.families():
            metric = merged.get(family.name)
            if metric is None:
                metric = merged[family.name] = _metric(family)
            for extra, value in family.samples:
                metric.add_metric([*entry.labels.values(), *extra.values()], value)
        yield from merged.values()
        for name, (help_text, _buckets) in HISTOGRAMS.items():
            histogram = HistogramMetricFamily(name, help_text, labels=_LABELS, unit="seconds")
            found = False
            for entry in self._components.entries():
                observed = entry.histograms.get(name)
                if observed is None or entry.ref() is None:
                    continue
                buckets, _count, total = observed.cumulative()
                histogram.add_metric(
                    list(entry.labels.values()),
                    [(_le(bound), float(n)) for bound, n in buckets],
                    total,
                )
                found = True
            if found:
                yield histogram


def _metric(family: Family) -> Any:
    extra = list(family.samples[0][0]) if family.samples else []
    labels = [*_LABELS, *extra]
    if family.kind == "counter":
        return CounterMetricFamily(family.name, family.help, labels=labels, unit=family.unit)
    return GaugeMetricFamily(family.name, family.help, labels=labels, unit=family.unit)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def prometheus_metrics(registry: CollectorRegistry | None = None) -> PrometheusMetrics:
    """veneer's collector in ``registry`` (default: the global one), made on first use."""
    found = _by_registry.get(id(REGISTRY if registry is None else registry))
    return found if found is not None else PrometheusMetrics(registry)


def register(
    component: object,
    /,
    *,
    registry: CollectorRegistry | None = None,
    namespace: str | None = None,
    component_label: str | None = None,
) -> PrometheusMetrics:
    """Export ``component`` through veneer's collector in ``registry``; see
    :meth:`PrometheusMetrics.register`."""
    metrics = prometheus_metrics(registry)
    metrics.register(component, namespace=namespace, component_label=component_label)
    return metrics


def unregister(component: object, /, *, registry: CollectorRegistry | None = None) -> None:
    found = _by_registry.get(id(REGISTRY if registry is None else registry))
    if found is not None:
        found.unregister(component)
