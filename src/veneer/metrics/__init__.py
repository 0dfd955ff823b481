"""Metrics and tracing for veneer: Prometheus (the ``prometheus`` extra) and OpenTelemetry
(the ``otel`` extra), chosen when a cache is built and free when off.

::

    from veneer import Cache
    from veneer.metrics import PrometheusMetrics

    metrics = PrometheusMetrics()                     # prometheus_client's global registry
    cache = Cache.from_url(url, namespace="shop", observer=metrics)  # registered, timed
    metrics.register(session_store)                   # any other component

    # OpenTelemetry instead (or beside): spans, and metrics through the OTel SDK.
    cache = Cache.from_url(url, namespace="shop", observer=[OtelTracing(), OtelMetrics()])

The backends import their libraries on first use: ``import veneer.metrics`` alone
needs neither. See docs/metrics.md for every exported name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .otel import OtelMetrics, OtelTracing
    from .prometheus import PrometheusMetrics, prometheus_metrics, register, unregister

__all__ = [
    "OtelMetrics",
    "OtelTracing",
    "PrometheusMetrics",
    "prometheus_metrics",
    "register",
    "unregister",
]

_LAZY = {
    "OtelMetrics": ".otel",
    "OtelTracing": ".otel",
    "PrometheusMetrics": ".prometheus",
    "prometheus_metrics": ".prometheus",
    "register": ".prometheus",
    "unregister": ".prometheus",
}

if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'veneer.metrics' has no attribute {name!r}")
        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
