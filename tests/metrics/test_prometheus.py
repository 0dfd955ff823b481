"""The Prometheus exposition, scraped over HTTP from a real prometheus_client server."""

from __future__ import annotations

import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from servers import RedisServer
from veneer import Cache
from veneer.metrics import PrometheusMetrics, register

from .scrape import delta, label_values, serving, value

SECRET = "user:secret-4242"


def test_cache_counters_move_by_exactly_the_events_caused(
    redis_server: RedisServer, namespace: str
) -> None:
    """One miss, three L1 hits, an invalidation and a second miss move the cache's counters
    and histograms by exactly those events, labelled by namespace and component only."""
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    # No broadcast: L1 copies are trusted for l1_ttl alone, so the hits are hits on any
    # machine load (with one, a late pong could turn one into a Redis read).
    with (
        serving(registry) as server,
        Cache.from_url(
            redis_server.url, namespace=namespace, ttl=60, broadcast=False, observer=metrics
        ) as cache,
    ):
        before = server.scrape()
        labels = {"namespace": namespace, "component": "cache"}
        assert value(before, "veneer_cache_hits_total", tier="l1", **labels) == 0
        loads = 0

        def load() -> dict[str, int]:
            nonlocal loads
            loads += 1
            return {"n": loads}

        assert cache.get_or_load(SECRET, load) == {"n": 1}
        for _ in range(3):
            assert cache.get_or_load(SECRET, load) == {"n": 1}
        assert cache.invalidate(SECRET)
        assert cache.get_or_load(SECRET, load) == {"n": 2}
        after = server.scrape()

    def moved(name: str, **extra: str) -> float:
        return delta(before, after, name, **labels, **extra)

    assert moved("veneer_cache_hits_total", tier="l1") == 3
    assert moved("veneer_cache_misses_total", tier="l1") == 2
    assert moved("veneer_cache_misses_total", tier="l2") == 2
    assert moved("veneer_cache_hits_total", tier="l2") == 0
    assert moved("veneer_cache_source_loads_total") == 2 == loads
    assert moved("veneer_cache_invalidations_sent_total") == 1
    assert moved("veneer_cache_lease_waits_total") == 0
    assert moved("veneer_cache_stale_served_total") == 0
    assert moved("veneer_cache_source_shed_total") == 0
    assert value(after, "veneer_cache_breaker_state", state="closed", **labels) == 1
    assert value(after, "veneer_cache_breaker_state", state="open", **labels) == 0
    assert value(after, "veneer_cache_invalidations_pending", **labels) == 0
    assert value(after, "veneer_cache_l1_entries", **labels) == 1
    # Histograms: each miss made one Redis read (the lease-get) and one load; hits none.
    assert moved("veneer_cache_load_seconds_count") == 2
    assert moved("veneer_cache_l2_read_seconds_count") == 2
    assert moved("veneer_cache_l2_read_seconds_bucket", le="+Inf") == 2
    assert value(after, "veneer_cache_load_seconds_sum", **labels) >= 0
    # Labels are namespaces, component kinds and fixed words; keys are nowhere.
    assert SECRET not in server.text and "secret-4242" not in server.text
    assert namespace in label_values(after)
    assert {k for (_n, ls) in after for k, _v in ls} <= {
        "namespace",
        "component",
        "tier",
        "state",
        "reason",
        "outcome",
        "le",
    }


def test_breaker_state_and_time_open_while_redis_is_down(
    own_redis: RedisServer, namespace: str
) -> None:
    """With Redis stopped, misses still load (counted), the breaker shows open and its
    time open grows; nothing in the exposition names a key."""
    registry = CollectorRegistry()
    with (
        serving(registry) as server,
        Cache.from_url(own_redis.url, namespace=namespace, ttl=60, broadcast=False) as cache,
    ):
        register(cache, registry=registry)
        assert cache.get_or_load("k:1", lambda: 1) == 1
        before = server.scrape()
        own_redis.stop()
        for i in range(40):
            assert cache.get_or_load(f"down:{i}", lambda: 2) == 2
        after = server.scrape()
        labels = {"namespace": namespace, "component": "cache"}
        assert delta(before, after, "veneer_cache_source_loads_total", **labels) == 40
        assert value(after, "veneer_cache_breaker_state", state="open", **labels) == 1
        assert value(after, "veneer_cache_breaker_opened_total", **labels) == 1
        assert value(after, "veneer_cache_breaker_open_seconds_total", **labels) > 0
        # Built without observer=: counters and gauges, no histograms.
        assert value(after, "veneer_cache_load_seconds_count", **labels) == 0
        assert "down:" not in server.text


def test_every_component_is_exported_with_namespace_and_component_labels(
    redis_server: RedisServer, namespace: str, tmp_path
) -> None:
    """Sessions, rate limits, counters and flags registered beside the cache export their
    own families; each counter moves by the calls the test made."""
    from veneer.counters import Counters, create_counter_tables
    from veneer.flags import Flags, flag_tables
    from veneer.flags import create_tables as create_flag_tables
    from veneer.ratelimit import RateLimiter
    from veneer.sessions import SessionStore, create_tables, session_tables

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    create_counter_tables(engine)
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    with (
        serving(registry) as server,
        Cache.from_url(redis_server.url, namespace=namespace, ttl=60, observer=metrics) as cache,
    ):
        store = SessionStore(engine, cache, tables=create_tables(engine, session_tables()))
        limiter = RateLimiter(cache, "2/minute")
        counters = Counters(cache, engine, {"views": "buffered", "credits": "exact"})
        flags = Flags(engine, cache, tables=create_flag_tables(engine, flag_tables()))
        try:
            for component in (store, limiter, counters, flags):
                metrics.register(component)
            before = server.scrape()
            token, _session = store.create("alice", {"cart": 1})
            assert store.load(token) is not None
            decisions = [limiter.hit("client-9").allowed for _ in range(3)]
            assert decisions == [True, True, False]
            counters.incr("views", "page-7", 2)
            counters.incr("credits", "acct-5", 1)
            after = server.scrape()
        finally:
            counters.close()
            flags.close()
            limiter.close()

    def moved(name: str, component: str, **extra: str) -> float:
        return delta(before, after, name, namespace=namespace, component=component, **extra)

    assert moved("veneer_sessions_created_total", "sessions") == 1
    assert moved("veneer_sessions_loads_total", "sessions") == 1
    assert moved("veneer_ratelimit_decisions_total", "ratelimit", result="allowed") == 2
    assert moved("veneer_ratelimit_decisions_total", "ratelimit", result="refused") == 1
    assert moved("veneer_counters_increments_total", "counters", mode="buffered") == 1
    assert moved("veneer_counters_increments_total", "counters", mode="exact") == 1
    assert value(after, "veneer_counters_increments_at_risk", namespace=namespace) == 0
    age = value(after, "veneer_flags_snapshot_age_seconds", namespace=namespace, component="flags")
    assert (
        age >= 0
        and (
            "veneer_flags_snapshot_age_seconds",
            frozenset({("namespace", namespace), ("component", "flags")}),
        )
        in after
    )
    for secret in ("alice", "client-9", "page-7", "acct-5", "views", "credits", token):
        assert secret not in server.text


def test_registration_refuses_what_it_cannot_export(
    redis_server: RedisServer, namespace: str
) -> None:
    """An unknown object, or a second component with the same labels, is refused with a
    message that says what to do."""
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    with (
        Cache.from_url(redis_server.url, namespace=namespace, ttl=60) as a,
        Cache.from_url(redis_server.url, namespace=namespace, ttl=60) as b,
    ):
        metrics.register(a)
        metrics.register(a)  # the same object again: nothing changes
        try:
            metrics.register(b)
        except ValueError as exc:
            assert "component=" in str(exc)
        else:
            raise AssertionError("a second cache with the same labels was accepted")
        metrics.register(b, component_label="cache-b")
        try:
            metrics.register(object())
        except TypeError as exc:
            assert "register a Cache" in str(exc)
        else:
            raise AssertionError("an object with no stats was accepted")
    try:
        PrometheusMetrics(registry)
    except ValueError as exc:
        assert "prometheus_metrics(registry)" in str(exc)
    else:
        raise AssertionError("two collectors in one registry")
