"""Shared helpers for the audit tests: seeding known anti-patterns and reading findings."""

from __future__ import annotations

from servers import RedisServer
from veneer.audit import AuditOptions, AuditReport, Severity

# Fast settings for tests: a short CPU window and a budget that does not slow them down.
FAST = AuditOptions(cpu_window=0.1, budget=50_000)

SLOW_LUA = "local i = 0 while i < 5000000 do i = i + 1 end return i"


def significant(report: AuditReport) -> set[tuple[str, str]]:
    """(check id, where) of every finding at low severity or above."""
    return {(f.id, f.where) for f in report.findings if f.severity.rank >= Severity.LOW.rank}


def seed_antipatterns(server: RedisServer) -> None:
    """Known anti-patterns: no-TTL prefix, big hash and string, KEYS and slow Lua, two dbs."""
    c = server.client()
    try:
        pipe = c.pipeline(transaction=False)
        for i in range(500):
            pipe.set(f"nottl:{i}", "x" * 50)
            pipe.set(f"sess:{i}", "y" * 50, ex=3600)
        pipe.execute()
        c.hset("bighash:1", mapping={f"f{i}": i for i in range(6000)})
        c.expire("bighash:1", 3600)
        c.set("blob:1", "z" * 2_000_000, ex=3600)
        c.config_set("maxmemory-policy", "noeviction")
        # Threshold 0 logs KEYS whatever its speed; the CONFIG SET that restores the
        # default is not logged because the new threshold applies to it.
        c.config_set("slowlog-log-slower-than", 0)
        c.keys("*")
        c.config_set("slowlog-log-slower-than", 10_000)
        c.eval(SLOW_LUA, 0)
    finally:
        c.close()
    other = server.client(db=1)
    try:
        other.set("other:1", "v", ex=3600)
    finally:
        other.close()


def seed_clean(server: RedisServer, password: str) -> None:
    """A well-behaved cache: every key expires, LRU under a memory limit, a password."""
    c = server.client()
    try:
        pipe = c.pipeline(transaction=False)
        for i in range(300):
            pipe.set(f"product:{i}", "p" * 100, ex=600)
            pipe.hset(f"user:{i}:profile", mapping={"name": "n", "age": i})
            pipe.expire(f"user:{i}:profile", 600)
        pipe.execute()
        c.config_set("maxmemory", 64 * 1024 * 1024)
        c.config_set("maxmemory-policy", "allkeys-lru")
        c.config_set("requirepass", password)
    finally:
        c.close()
