"""OpenTelemetry: spans captured by the SDK's in-memory exporter, metrics by its in-memory
reader."""

from __future__ import annotations

import threading
import time
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from servers import RedisServer
from veneer import AsyncCache, Cache
from veneer.metrics.otel import OtelMetrics, OtelTracing

SECRET = "user:secret-9191"


def tracing() -> tuple[OtelTracing, InMemorySpanExporter, TracerProvider]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return OtelTracing(provider), exporter, provider


def names(exporter: InMemorySpanExporter) -> list[str]:
    return [span.name for span in exporter.get_finished_spans()]


def no_key_anywhere(exporter: InMemorySpanExporter, *secrets: str) -> None:
    for span in exporter.get_finished_spans():
        for value in (span.name, *map(str, dict(span.attributes or {}).values())):
            for secret in secrets:
                assert secret not in value, (span.name, value)


def test_one_span_per_source_load_and_none_per_l1_hit(
    redis_server: RedisServer, namespace: str
) -> None:
    """A miss makes one load span and one fill span; a hundred L1 hits make none; an
    invalidation makes one, with Redis's semantic-convention attributes and no key."""
    tracer, exporter, _provider = tracing()
    with Cache.from_url(
        redis_server.url, namespace=namespace, ttl=60, broadcast=False, observer=tracer
    ) as cache:
        assert cache.get_or_load(SECRET, lambda: {"v": 1}) == {"v": 1}
        assert names(exporter) == ["veneer load", "veneer fill"]
        for _ in range(100):
            assert cache.get_or_load(SECRET, lambda: {"v": 2}) == {"v": 1}
        assert cache.stats().l1_hits == 100
        assert names(exporter) == ["veneer load", "veneer fill"]
        assert cache.invalidate(SECRET)
        assert names(exporter) == ["veneer load", "veneer fill", "veneer invalidate"]
    load, fill, invalidate = exporter.get_finished_spans()
    assert load.attributes is not None and fill.attributes is not None
    assert load.attributes["veneer.namespace"] == namespace
    assert "db.system" not in load.attributes  # the source is the application's database
    for span in (fill, invalidate):
        attributes = dict(span.attributes or {})
        assert attributes["db.system"] == "redis" and attributes["db.system.name"] == "redis"
        assert attributes["server.address"] == "127.0.0.1"
        assert attributes["server.port"] == redis_server.port
    assert fill.attributes["veneer.fill.stored"] is True
    assert dict(invalidate.attributes or {})["veneer.invalidation.kind"] == "key"
    no_key_anywhere(exporter, SECRET, "secret-9191")


def test_a_failed_load_is_an_error_span(redis_server: RedisServer, namespace: str) -> None:
    """A loader that raises leaves one load span with the error status and the exception."""
    tracer, exporter, _provider = tracing()

    def broken() -> Any:
        raise LookupError("row gone")

    with Cache.from_url(redis_server.url, namespace=namespace, ttl=60, observer=tracer) as cache:
        try:
            cache.get_or_load("k", broken)
        except LookupError:
            pass
        else:
            raise AssertionError("the loader's error was not raised")
    (load,) = [s for s in exporter.get_finished_spans() if s.name == "veneer load"]
    assert not load.status.is_ok
    assert [e.name for e in load.events] == ["exception"]


def test_a_lease_wait_is_one_span_and_no_load(redis_server: RedisServer, namespace: str) -> None:
    """A miss that finds another process's lease waits for its fill: one lease-wait span
    (outcome: the value arrived), and no load span in the waiting process."""
    holder_tracer, _holder_spans, _p1 = tracing()
    waiter_tracer, exporter, _p2 = tracing()
    loading, release = threading.Event(), threading.Event()

    def slow() -> int:
        loading.set()
        assert release.wait(10)
        return 7

    with (
        Cache.from_url(redis_server.url, namespace=namespace, ttl=60, observer=holder_tracer) as a,
        Cache.from_url(redis_server.url, namespace=namespace, ttl=60, observer=waiter_tracer) as b,
    ):
        holder = threading.Thread(target=lambda: a.get_or_load("hot", slow))
        holder.start()
        assert loading.wait(10)
        got: list[int] = []
        waiter = threading.Thread(target=lambda: got.append(b.get_or_load("hot", lambda: 8)))
        waiter.start()
        deadline = time.monotonic() + 10
        while b.stats().lease_waits == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        release.set()
        holder.join(10)
        waiter.join(10)
    assert got == [7]
    assert names(exporter) == ["veneer lease wait"]
    (wait,) = exporter.get_finished_spans()
    assert dict(wait.attributes or {})["veneer.lease.outcome"] == "value"


async def test_async_spans_nest_under_the_callers_span(
    redis_server: RedisServer, namespace: str
) -> None:
    """On asyncio the load span is a child of the caller's span (the context follows the
    task), and L1 hits add nothing."""
    tracer, exporter, provider = tracing()
    outer = provider.get_tracer("app")
    acache = AsyncCache.from_url(
        redis_server.url, namespace=namespace, ttl=60, broadcast=False, observer=tracer
    )
    try:

        async def load() -> int:
            return 1

        with outer.start_as_current_span("request"):
            assert await acache.get_or_load("k", load) == 1
            for _ in range(50):
                assert await acache.get_or_load("k", load) == 1
    finally:
        await acache.close()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert sorted(spans) == ["request", "veneer fill", "veneer load"]
    assert spans["veneer load"].parent is not None
    assert spans["veneer load"].parent.span_id == spans["request"].context.span_id


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def _value(points: dict[str, list[Any]], name: str, **attributes: str) -> float:
    matching = [p for p in points.get(name, []) if attributes.items() <= dict(p.attributes).items()]
    assert len(matching) <= 1, (name, attributes)
    if not matching:
        return 0
    point = matching[0]
    return point.count if hasattr(point, "bucket_counts") else point.value


def test_otel_metrics_count_the_events(redis_server: RedisServer, namespace: str) -> None:
    """OTel metrics, the alternative to prometheus_client: a miss and two L1 hits move the
    observable counters and the histograms by exactly those events."""
    reader = InMemoryMetricReader()
    metrics = OtelMetrics(MeterProvider(metric_readers=[reader]))
    with Cache.from_url(
        redis_server.url, namespace=namespace, ttl=60, broadcast=False, observer=metrics
    ) as cache:
        labels = {"namespace": namespace, "component": "cache"}
        cache.get_or_load(SECRET, lambda: 1)
        cache.get_or_load(SECRET, lambda: 1)
        cache.get_or_load(SECRET, lambda: 1)
        points = _points(reader)
    assert _value(points, "veneer.cache.hits", tier="l1", **labels) == 2
    assert _value(points, "veneer.cache.misses", tier="l2", **labels) == 1
    assert _value(points, "veneer.cache.source_loads", **labels) == 1
    assert _value(points, "veneer.cache.load", **labels) == 1  # histogram count
    assert _value(points, "veneer.cache.l2_read", **labels) == 1
    assert _value(points, "veneer.cache.breaker_state", state="closed", **labels) == 1
    for name, pts in points.items():
        for p in pts:
            assert SECRET not in str(dict(p.attributes)), name


def test_prometheus_and_otel_spans_together(redis_server: RedisServer, namespace: str) -> None:
    """observer= takes a list: Prometheus histograms and OTel spans both see the one miss;
    two span observers are refused when the cache is built."""
    import pytest
    from prometheus_client import CollectorRegistry

    from veneer import ConfigurationError
    from veneer.metrics import PrometheusMetrics

    from .scrape import serving, value

    registry = CollectorRegistry()
    tracer, exporter, _provider = tracing()
    observers = [PrometheusMetrics(registry), tracer]
    with (
        serving(registry) as server,
        Cache.from_url(redis_server.url, namespace=namespace, ttl=60, observer=observers) as c,
    ):
        c.get_or_load("k", lambda: 1)
        samples = server.scrape()
    assert value(samples, "veneer_cache_load_seconds_count", namespace=namespace) == 1
    assert names(exporter).count("veneer load") == 1
    with pytest.raises(ConfigurationError, match="more than one observer traces spans"):
        Cache.from_url(redis_server.url, namespace=namespace, ttl=60, observer=[tracer, tracer])
