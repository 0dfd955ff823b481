"""The audit's second round: job queues and session stores as second-database risks,
persistence and eviction read from INFO when CONFIG is refused, managed services named."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from audit_helpers import FAST
from job_layouts import EXPECTED, seed_all, seed_celery, seed_sessions

from servers import RedisServer
from veneer import Cache
from veneer.audit import AuditReport, Severity, run_audit
from veneer.audit._facts import managed_service, persistence
from veneer.audit._keyspaces import is_veneer_pattern
from veneer.audit._snapshot import NodeSnapshot

KINDS = ("job-queue", "session-store")


def _seed_veneer(url: str, folder: Path) -> None:
    """veneer's own components in the same db, under namespaces named like the tools."""
    from veneer.counters import Counters, create_counter_tables
    from veneer.flags import Flags
    from veneer.flags import create_tables as create_flag_tables
    from veneer.ratelimit import RateLimiter
    from veneer.sessions import SessionStore, create_tables

    engine = sa.create_engine(f"sqlite:///{folder / 'veneer.db'}")
    try:
        with Cache.from_url(url, namespace="sess", ttl=60) as cache:
            for i in range(20):
                cache.get_or_load(f"user:{i}", lambda i=i: {"id": i})
            cache.invalidate_tag("user")
        with Cache.from_url(url, namespace="session", ttl=60) as cache:
            create_tables(engine)
            store = SessionStore(engine, cache)
            for i in range(5):
                token, _ = store.create(i, {"theme": "dark"})
                assert store.load(token) is not None
        with Cache.from_url(url, namespace="rq", ttl=60) as cache:
            create_counter_tables(engine)
            counters = Counters(cache, engine, {"views": "buffered", "credits": "exact"})
            counters.incr("views", "a", 2)
            counters.incr("credits", "a", 1)
        with Cache.from_url(url, namespace="celery", ttl=60) as cache:
            create_flag_tables(engine)
            flags = Flags(engine, cache, defaults={"beta": False})
            flags.start()
            try:
                flags.enabled("beta", subject="u1")
            finally:
                flags.close()
        with Cache.from_url(url, namespace="bull", ttl=60) as cache:
            RateLimiter(cache, "10/second").hit("u1")
    finally:
        engine.dispose()


def _found(report: AuditReport) -> set[tuple[str, str]]:
    return {(f.id, f.where) for f in report.findings if f.id in KINDS}


def test_tools_are_recognised_and_veneer_keys_never(tmp_path: Path) -> None:
    """Celery, RQ, BullMQ, Sidekiq, Dramatiq and arq queues and four session stores, seeded
    as their documentation lays them out beside veneer's cache, sessions, counters, flags
    and rate limits (namespaced like the tools), are each reported with a "move it to the
    database" recommendation; no finding points at a veneer key."""
    server = RedisServer()
    try:
        c = server.client()
        try:
            seed_all(c)
        finally:
            c.close()
        _seed_veneer(server.url, tmp_path)
        report = run_audit(server.url, FAST)
    finally:
        server.stop()
    assert report.sampling.complete
    assert _found(report) == EXPECTED
    by_where = {f.where: f for f in report.findings if f.id in KINDS}
    tools = {f.evidence["tool"] for f in by_where.values()}
    assert tools == {
        "Celery (kombu Redis broker)", "RQ", "BullMQ", "Sidekiq", "Dramatiq (Redis broker)",
        "arq", "Django sessions (cache engine)", "Flask-Session",
        "express-session (connect-redis)", "Rails sessions",
    }  # fmt: skip
    assert by_where["rq:queue:default"].evidence["tool"] == "RQ"
    assert by_where["queue:default"].evidence["tool"] == "Sidekiq"
    assert by_where["bull:emails:wait"].evidence["role"] == "queue"
    assert "bull:emails:meta" in by_where["bull:emails:wait"].evidence["related_prefixes"]
    for f in by_where.values():
        assert f.advice.startswith("Move it to the database: ")
        # No persistence on the suite's servers: a restart loses every one of them.
        assert f.severity is Severity.HIGH, f.where
        assert "no persistence" in f.summary
    assert "PostgreSQL-backed queue" in by_where["celery"].advice
    assert (
        "veneer.integrations.django.sessions" in by_where["*django.contrib.sessions.cache*"].advice
    )
    assert "veneer.sessions" in by_where["session:*"].advice
    assert "veneer.counters" in by_where["stat:processed"].advice
    # Reported once: a recognised prefix is not also a source-of-truth-risk or no-ttl.
    claimed = {w for _, w in EXPECTED}
    assert not [f for f in report.findings if f.id in {"source-of-truth-risk", "no-ttl"}
                and f.where in claimed]  # fmt: skip
    # veneer's own keys: none reported by any check, whatever the namespace is called.
    veneer = [p.pattern for p in report.prefixes if is_veneer_pattern(p.pattern)]
    assert len(veneer) >= 8  # the cache, sessions, counters, flags and rate limits wrote
    assert not [f for f in report.findings if f.prefix is not None and is_veneer_pattern(f.prefix)]


@pytest.mark.parametrize("refusal", ["rename-command", "acl"])
def test_config_refused_reads_eviction_and_persistence_from_info(refusal: str) -> None:
    """With CONFIG renamed away (ElastiCache) or refused by ACL (a user without @admin), the
    eviction policy comes from INFO memory and the RDB snapshots from INFO persistence, and
    the queue and session findings are judged on them."""
    args = ["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"]
    if refusal == "rename-command":
        args += ["--rename-command", "CONFIG", ""]
    else:
        args += ["--user", "app", "on", ">app-Pa55", "~*", "&*", "+@all", "-@admin"]
    server = RedisServer(*args)
    try:
        c = server.client()
        try:
            seed_celery(c)
            seed_sessions(c)
            c.bgsave()  # a snapshot INFO persistence can see (rdb_saves, last bgsave)
            deadline = time.monotonic() + 10
            while c.info("persistence")["rdb_bgsave_in_progress"]:
                assert time.monotonic() < deadline, "BGSAVE did not finish"
                time.sleep(0.02)
        finally:
            c.close()
        url = server.url
        if refusal == "acl":
            url = f"redis://app:app-Pa55@127.0.0.1:{server.port}/0"
        report = run_audit(url, FAST)
    finally:
        server.stop()
    assert any("CONFIG GET refused" in b for b in report.blind_spots)
    node = report.server.nodes[0]
    assert node.maxmemory_policy == "allkeys-lru"
    assert node.persistence["mode"] == "RDB (from INFO)" and node.persistence["source"] == "info"
    queue = next(f for f in report.findings if f.where == "celery")
    assert queue.severity is Severity.HIGH
    facts = next(iter(queue.evidence["nodes"].values()))
    assert facts["persistence"] == "RDB (from INFO)" and facts["maxmemory_policy"] == "allkeys-lru"
    assert any("allkeys-lru: eviction may delete it" in r for r in queue.evidence["risks"])
    session = next(f for f in report.findings if f.where == "sess:*")
    assert session.severity is Severity.HIGH


def _snap(address: str = "10.0.0.1:6379", **info: object) -> NodeSnapshot:
    return NodeSnapshot(address=address, info=dict(info))


def test_managed_services_are_named() -> None:
    """INFO server's os field names ElastiCache and MemoryDB; host names name the others."""
    assert managed_service(_snap(os="Amazon ElastiCache")) == "Amazon ElastiCache"
    assert managed_service(_snap(os="Amazon MemoryDB")) == "Amazon MemoryDB"
    hosts = {
        "master.app.abc123.use1.cache.amazonaws.com:6379": "Amazon ElastiCache",
        "clustercfg.app.abc123.memorydb.us-east-1.amazonaws.com:6379": "Amazon MemoryDB",
        "app.redis.cache.windows.net:6380": "Azure Cache for Redis",
        "redis-12345.c1.us-east-1-2.ec2.redns.redis-cloud.com:12345": "Redis Cloud",
        "eu1-fine-cat-12345.upstash.io:6379": "Upstash",
        "10.0.0.1:6379": None,
        "/run/redis.sock": None,
    }
    for address, service in hosts.items():
        assert managed_service(_snap(address, os="Linux 6.1 x86_64")) == service, address


def test_persistence_from_info_when_config_is_hidden() -> None:
    """Without CONFIG: a snapshot seen means RDB; an hour of writes and none means off;
    otherwise unknown. MemoryDB is durable whatever the fields say."""
    assert persistence(_snap(rdb_saves=2)).describe() == "RDB (from INFO)"
    assert persistence(_snap(rdb_last_bgsave_time_sec=0)).rdb is True
    off = persistence(_snap(uptime_in_seconds=7200, rdb_changes_since_last_save=50, rdb_saves=0,
                            rdb_last_bgsave_time_sec=-1))  # fmt: skip
    assert off.enabled is False and off.describe() == "off (from INFO)"
    young = persistence(_snap(uptime_in_seconds=60, rdb_changes_since_last_save=50, rdb_saves=0))
    assert young.enabled is None and young.describe() == "unknown (CONFIG hidden)"
    durable = persistence(_snap(os="Amazon MemoryDB", rdb_saves=0, aof_enabled=0))
    assert durable.enabled is True and durable.describe().startswith("durable")
    configured = NodeSnapshot(address="h:1", info={"rdb_saves": 5}, config={"save": ""})
    assert persistence(configured).rdb is False  # CONFIG, when visible, wins


def test_a_plain_list_named_like_a_queue_is_not_a_queue() -> None:
    """Bare names (celery, queue:x, schedule) count only beside the tool's signature keys."""
    server = RedisServer()
    try:
        c = server.client()
        try:
            c.rpush("celery", "a")
            c.rpush("queue:default", "b")
            c.zadd("schedule", {"c": 1})
            c.set("session", "not a prefix", ex=60)
        finally:
            c.close()
        report = run_audit(server.url, FAST)
    finally:
        server.stop()
    assert _found(report) == set()
