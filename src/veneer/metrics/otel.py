"""veneer for OpenTelemetry (the ``otel`` extra): spans, and metrics as an alternative
to ``prometheus_client``.

- :class:`OtelTracing`: spans around source loads, fills, lease waits and
  invalidations (never L1 hits), with OpenTelemetry's database attributes for the
  Redis calls (``db.system``/``db.system.name`` ``redis``, ``server.address``,
  ``server.port``, ``db.namespace``, ``db.operation.name``). The source load is an
  internal span: the application's own database instrumentation (SQLAlchemy's,
  psycopg's) adds its spans, with ``db.system`` of the real database, under it.
- :class:`OtelMetrics`: the same readings as the Prometheus collector, as observable
  instruments, and the two latency histograms as OTel histograms.

Both go in a cache's ``observer=`` (a list for both). See docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any

try:
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace
    from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
    from opentelemetry.trace import SpanKind, TracerProvider
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "veneer.metrics.otel needs opentelemetry-api: pip install 'veneer[otel]'"
    ) from exc

from .._observe import CacheHooks
from ._readings import Family, reader_for
from ._registry import HISTOGRAMS, Components

__all__ = ["OtelMetrics", "OtelTracing", "otel_name"]

_SCOPE = "veneer"
_UNITS = {"_seconds": "s", "_bytes": "By"}


def otel_name(prometheus_name: str) -> tuple[str, str]:
    """``(instrument name, unit)`` for one of veneer's Prometheus names: dots between
    ``veneer``, the component and the rest; the unit split off (OpenTelemetry's
    Prometheus exporter turns them back into the same name)."""
    name, unit = prometheus_name, ""
    for suffix, code in _UNITS.items():
        if name.endswith(suffix):
            name, unit = name[: -len(suffix)], code
    _veneer, component, rest = name.split("_", 2)
    return f"veneer.{component}.{rest}", unit


class OtelTracing:
    """Spans for every cache built with ``observer=OtelTracing()`` (default: the global
    tracer provider)."""

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)

    def attach(self, cache: Any, /) -> CacheHooks:
        tracer = self._tracer

        def span(name: str, attributes: dict[str, Any]) -> AbstractContextManager[Any]:
            # The load runs the application's code; everything else is a Redis call.
            kind = SpanKind.INTERNAL if name == "veneer load" else SpanKind.CLIENT
            return tracer.start_as_current_span(name, kind=kind, attributes=attributes)

        return CacheHooks(span=span)


class OtelMetrics:
    """veneer's metrics as OpenTelemetry instruments (default: the global meter provider).

    A cache built with ``observer=OtelMetrics()`` is registered and its Redis reads and
    loads recorded into histograms; :meth:`register` adds any other component."""

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        self._meter: Meter = otel_metrics.get_meter(_SCOPE, meter_provider=meter_provider)
        self._components = Components()
        self._instruments: set[str] = set()

    def register(
        self,
        component: object,
        /,
        *,
        namespace: str | None = None,
        component_label: str | None = None,
    ) -> None:
        """Export ``component``; see :meth:`PrometheusMetrics.register`."""
        entry = self._components.add(
            component, namespace=namespace, component_label=component_label
        )
        target = entry.ref()
        if target is not None:
            self._instrument(reader_for(entry.kind)(target))

    def unregister(self, component: object, /) -> None:
        self._components.remove(component)

    def attach(self, cache: Any, /) -> CacheHooks:
        """Called by a cache built with ``observer=``: register it, and record its Redis
        reads and source loads into histograms."""
        entry = self._components.add(cache, namespace=None, component_label=None)
        self._instrument(reader_for(entry.kind)(cache))
        labels = dict(entry.labels)
        hooks: list[Callable[[float], None]] = []
        for name, (help_text, buckets) in HISTOGRAMS.items():
            instrument_name, unit = otel_name(name)
            histogram = self._meter.create_histogram(
                instrument_name,
                unit=unit,
                description=help_text,
                explicit_bucket_boundaries_advisory=buckets,
            )
            hooks.append(_recorder(histogram, labels))
        return CacheHooks(l2_read=hooks[0], load=hooks[1])

    def _instrument(self, families: Iterable[Family]) -> None:
        """One observable instrument per family name, made the first time it is seen."""
        for family in families:
            if family.name in self._instruments:
                continue
            self._instruments.add(family.name)
            name, unit = otel_name(family.name)
            callback = self._callback(family.name)
            if family.kind == "counter":
                self._meter.create_observable_counter(
                    name, [callback], unit=unit, description=family.help
                )
            else:
                self._meter.create_observable_gauge(
                    name, [callback], unit=unit, description=family.help
                )

    def _callback(self, family_name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_options: CallbackOptions) -> Iterator[Observation]:
            for entry, family in self._components.families():
                if family.name != family_name:
                    continue
                for extra, value in family.samples:
                    yield Observation(value, {**entry.labels, **extra})

        return observe


def _recorder(histogram: Any, labels: dict[str, str]) -> Callable[[float], None]:
    record = histogram.record

    def observe(seconds: float) -> None:
        record(seconds, labels)

    return observe
