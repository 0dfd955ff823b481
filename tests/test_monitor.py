"""veneer never sends a blocking, O(N) or expiry-less write command (recorded with MONITOR)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from servers import RedisServer
from veneer import AsyncCache, Cache

FORBIDDEN = {"KEYS", "SCAN", "FLUSHALL", "FLUSHDB", "SMEMBERS", "HGETALL", "LRANGE", "DEBUG"}
ALLOWED = {
    "GET", "MGET", "SET", "DEL", "UNLINK", "PUBLISH", "SUBSCRIBE", "UNSUBSCRIBE", "PING",
    "CLIENT", "HELLO", "SELECT", "AUTH", "EVALSHA", "EVAL", "ECHO", "SCRIPT",
    "ZADD", "ZREMRANGEBYRANK", "EXPIRE", "ZREVRANGE", "INFO", "WAIT", "INCRBY",
}  # fmt: skip
EXPIRY_FLAGS = {"PX", "EX", "PXAT", "EXAT", "KEEPTTL"}
STOP = "veneer-monitor-stop"


class Recorder:
    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.commands: list[list[str]] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(5)

    def _run(self) -> None:
        client = self.server.client()
        with client.monitor() as monitor:
            self._ready.set()
            for event in monitor.listen():
                # Values are binary; the name and the flags are plain words.
                words = event["command"].split()
                if words[:2] == ["ECHO", STOP]:
                    break
                self.commands.append(words)
        client.close()

    def stop(self) -> list[list[str]]:
        stopper = self.server.client()
        stopper.echo(STOP)
        stopper.close()
        self._thread.join(10)
        return self.commands


@pytest.fixture
def recorder(redis_server: RedisServer) -> Iterator[Recorder]:
    yield Recorder(redis_server)


def sync_workload(url: str) -> None:
    with Cache.from_url(url, namespace="mon-s", ttl=30, registry_every=1) as cache:
        cache.ready()
        for i in range(20):
            cache.get_or_load(f"k{i % 7}", lambda: {"i": 1}, tags=["t"])
        cache.get_or_load("none", lambda: None)
        cache.get_many(["k1", "k2", "zz"])
        cache.get_or_load_many(["a", "b", "k1"], lambda ks: dict.fromkeys(ks, 1))
        cache.set("s", [1, 2])
        cache.invalidate("k1")
        cache.invalidate_tag("t")
        cache.invalidate_all()

        @cache.cached(ttl=10)
        def f(x: int) -> int:
            return x

        f(1), f(1), f.invalidate(1)


async def async_workload(url: str) -> None:
    async with AsyncCache.from_url(url, namespace="mon-a", ttl=30) as cache:
        await cache.ready()
        for i in range(20):
            await cache.get_or_load(f"k{i % 7}", lambda: {"i": 1}, tags=["t"])
        await cache.get_many(["k1", "zz"])
        await cache.get_or_load_many(["a", "k1"], lambda ks: dict.fromkeys(ks, 1))
        await cache.set("s", [1, 2])
        await cache.invalidate("k1")
        await cache.invalidate_tag("t")
        await cache.invalidate_all()


def test_no_forbidden_command_and_no_write_without_expiry(
    recorder: Recorder, redis_server: RedisServer
) -> None:
    """Every command of a full workload is allowed, and every SET carries an expiry."""
    sync_workload(redis_server.url)
    asyncio.run(async_workload(redis_server.url))
    commands = recorder.stop()
    names = [c[0].upper() for c in commands]
    assert {"GET", "MGET", "SET", "DEL", "PUBLISH"} <= set(names)  # the workload did run
    assert not FORBIDDEN & set(names)
    assert set(names) <= ALLOWED, set(names) - ALLOWED
    expired = {c[1] for c in commands if c[0].upper() == "EXPIRE"}
    for command in commands:
        name = command[0].upper()
        if name == "SET":
            assert EXPIRY_FLAGS & {w.upper() for w in command[3:]}, command
        elif name in ("ZADD", "INCRBY"):  # registry, broadcast count: expired in the pipeline
            assert command[1] in expired, command
        elif name == "INFO":  # run id (a restarted Redis), replicas (durable invalidations)
            assert command[1].strip('"') in {"server", "replication"}, command
        elif name == "SCRIPT":
            assert command[1].upper() in {"LOAD", "EXISTS"}, command
