"""Metrics and tracing are chosen when a cache is built: off, the cache runs its plain code."""

from __future__ import annotations

import subprocess
import sys

import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from servers import RedisServer
from veneer import Cache, ConfigurationError
from veneer._observe import ObservedSample
from veneer._stats import LatencySample
from veneer.metrics import OtelTracing, PrometheusMetrics

_TRACED = ("_load", "_fill", "_acquire_lease")


def test_without_an_observer_nothing_is_replaced(redis_server: RedisServer, namespace: str) -> None:
    """No observer: the latency samples are the plain ring and no method is replaced on
    the instance (no per-call check exists to skip). Prometheus alone: only the samples
    change; spans are not installed."""
    with Cache.from_url(redis_server.url, namespace=namespace, ttl=60) as plain:
        assert type(plain._l2_latency) is LatencySample
        assert type(plain._load_latency) is LatencySample
        assert not set(_TRACED) & set(vars(plain))
        assert "apply" not in vars(plain._invalidations)
    metrics = PrometheusMetrics(CollectorRegistry())
    with Cache.from_url(redis_server.url, namespace=namespace, ttl=60, observer=metrics) as seen:
        assert type(seen._l2_latency) is ObservedSample
        assert type(seen._load_latency) is ObservedSample
        assert not set(_TRACED) & set(vars(seen))
    # Tracing replaces the miss-path methods of that instance only; its class is untouched.
    with Cache.from_url(
        redis_server.url, namespace=namespace, ttl=60, observer=OtelTracing(TracerProvider())
    ) as traced:
        assert set(_TRACED) <= set(vars(traced))
        assert "apply" in vars(traced._invalidations)
        assert type(traced._l2_latency) is LatencySample  # spans only: nothing timed
        assert Cache._load is not traced._load


def test_a_bad_observer_is_refused_at_construction(redis_server: RedisServer) -> None:
    """observer= takes veneer.metrics backends; anything else fails when the cache is built."""
    with pytest.raises(ConfigurationError, match=r"observer=.*is not an observer"):
        Cache.from_url(redis_server.url, namespace="x", ttl=60, observer="prometheus")


def test_the_core_never_imports_a_metrics_backend() -> None:
    """The cache and ``import veneer.metrics`` load no backend: not prometheus_client, and
    not veneer's OpenTelemetry module (redis-py 8 imports opentelemetry itself when it is
    installed, for its own opt-in command metrics)."""
    probe = (
        "import sys\n"
        "from veneer import Cache\n"
        "import veneer.metrics\n"
        "bad = [m for m in sys.modules if m.startswith(('prometheus_client', 'veneer.metrics.'))]\n"
        "print(bad)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_metrics_public_api() -> None:
    """The public names of veneer.metrics are pinned."""
    import veneer.metrics

    assert sorted(veneer.metrics.__all__) == [
        "OtelMetrics",
        "OtelTracing",
        "PrometheusMetrics",
        "prometheus_metrics",
        "register",
        "unregister",
    ]
    for name in veneer.metrics.__all__:
        assert getattr(veneer.metrics, name).__module__.startswith("veneer.metrics.")
