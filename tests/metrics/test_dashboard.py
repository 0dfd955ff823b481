"""docs/grafana-dashboard.json loads as a Grafana dashboard and asks only for what veneer
exports: every metric name, label and selector in it is checked against a real scrape."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from servers import RedisServer
from veneer import AsyncCache, Cache
from veneer.http import HttpCache
from veneer.metrics import PrometheusMetrics

from .scrape import Samples, serving

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
METRICS_DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"

_METRIC = re.compile(r"\bveneer_[a-z0-9_]+")
_SELECTOR = re.compile(r"(veneer_[a-z0-9_]+)\{([^}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_BY = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_VARIABLE = re.compile(r"\$\{?(\w+)")
# Grafana's own variables, always defined.
_BUILTIN = {"__rate_interval", "__interval", "__range"}


async def _exported(redis_url: str, namespace: str, tmp_path: Path) -> Samples:
    """One scrape with every kind of component registered and some traffic on each."""
    from veneer.counters import Counters, create_counter_tables
    from veneer.flags import Flags, flag_tables
    from veneer.flags import create_tables as create_flag_tables
    from veneer.ratelimit import RateLimiter
    from veneer.sessions import SessionStore, create_tables, session_tables

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    create_counter_tables(engine)
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)

    async def endpoint(request: Request) -> Response:
        return JSONResponse({}, headers={"cache-control": "max-age=60"})

    app = Starlette(routes=[Route("/{path:path}", endpoint)])
    acache = AsyncCache.from_url(redis_url, namespace=f"{namespace}h", ttl=60, broadcast=False)
    http_cache = HttpCache(app, acache)
    metrics.register(http_cache)
    cache = Cache.from_url(redis_url, namespace=namespace, ttl=60, observer=metrics)
    store = SessionStore(engine, cache, tables=create_tables(engine, session_tables()))
    limiter = RateLimiter(cache, "5/minute")
    counters = Counters(cache, engine, {"views": "buffered"})
    flags = Flags(engine, cache, tables=create_flag_tables(engine, flag_tables()))
    try:
        for component in (store, limiter, counters, flags):
            metrics.register(component)
        assert flags.start(10.0)
        deadline = time.monotonic() + 10  # confirmed once subscribed (push) or checked
        while flags.status().confirmed_age is None and time.monotonic() < deadline:
            time.sleep(0.01)
        cache.get_or_load("k", lambda: 1)
        limiter.hit("s")
        counters.incr("views", "x", 1)
        transport = httpx.ASGITransport(app=http_cache)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await client.get("/a")
        with serving(registry) as server:
            return server.scrape()
    finally:
        counters.close()
        flags.close()
        limiter.close()
        cache.close()
        await acache.close()


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for panel in panels:
        found.append(panel)
        found.extend(_panels(panel.get("panels", [])))
    return found


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in _panels(dashboard["panels"]) for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            exprs.append(query["query"])
    return exprs


def test_the_dashboard_is_a_loadable_grafana_model() -> None:
    """Valid JSON with what Grafana needs to import it: a schema version, unique panel ids,
    non-overlapping grid positions, a Prometheus data source variable on every query."""
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 36 and dashboard["uid"] and dashboard["title"]
    panels = _panels(dashboard["panels"])
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace"} <= variables
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"panel {panel['title']!r} overlaps another"
                cells.add((x, y))
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
            for name in _VARIABLE.findall(target["expr"] + target.get("legendFormat", "")):
                assert name in variables | _BUILTIN, (panel["title"], name)


async def test_every_metric_in_the_dashboard_and_the_docs_is_exported(
    redis_server: RedisServer, namespace: str, tmp_path: Path
) -> None:
    """Each veneer_* name in a dashboard query is a series the collector really exports,
    each label a selector or a `by` names is one of that series' labels, and each fixed
    label value it matches occurs in the scrape; docs/metrics.md lists exactly the
    exported families."""
    samples = await _exported(redis_server.url, namespace, tmp_path)
    labels_of: dict[str, set[str]] = {}
    values_of: dict[tuple[str, str], set[str]] = {}
    for name, labels in samples:
        labels_of.setdefault(name, set()).update(k for k, _ in labels)
        for key, val in labels:
            values_of.setdefault((name, key), set()).add(val)
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = _exprs(dashboard)
    used = {name for expr in exprs for name in _METRIC.findall(expr)}
    assert used, "no veneer metric in the dashboard"
    missing = sorted(used - set(labels_of))
    assert not missing, f"the dashboard asks for series veneer does not export: {missing}"
    for expr in exprs:
        for name, body in _SELECTOR.findall(expr):
            for label, op, val in _MATCHER.findall(body):
                assert label in labels_of[name], (name, label)
                if op == "=" and "$" not in val:
                    assert val in values_of[(name, label)], (name, label, val)
                if op == "=~" and "$" not in val:
                    assert any(re.fullmatch(val, v) for v in values_of[(name, label)])
        names = set(_METRIC.findall(expr))
        for group in _BY.findall(expr):
            for label in filter(None, (g.strip() for g in group.split(","))):
                assert any(label in labels_of[n] for n in names), (expr, label)
    families = {
        re.sub(r"_(bucket|sum|count)$", "", n) if "_seconds_" in n else n for n in labels_of
    }
    documented = set(re.findall(r"^\| `(veneer_[a-z0-9_]+)`", METRICS_DOC.read_text(), re.M))
    assert families == documented, sorted(families ^ documented)
