"""Metrics and tracing for veneer: Prometheus (the ``prometheus`` extra) and OpenTelemetry
(the ``otel`` extra), chosen when a cache is built and free when off.

::

    from veneer import Cache
    from veneer.metrics import PrometheusMetrics

    metrics = PrometheusMetrics()                     # prometheus_client's global registry
    cache = Cache.from_url(url, namespace="shop", observer=metrics)  # registered, timed
    metrics.register(session_store)                   # any other component

The backends import their libraries on first use: ``import veneer.metrics`` alone
needs neither. See docs/metrics.md for every exported name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .prometheus import PrometheusMetrics, prometheus_metrics, register, unregister

__all__ = ["PrometheusMetrics", "prometheus_metrics", "register", "unregister"]

_LAZY = dict.fromkeys(__all__, ".prometheus")

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
