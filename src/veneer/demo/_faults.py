"""The incidents, injected into both stacks' Redis at once, and the byte meter of each Redis."""

from __future__ import annotations

import threading
import time
from typing import Any

import redis

from ._embedded import EmbeddedRedis

__all__ = ["FAULTS", "Fault", "Target", "fill_keyspace"]


class Target:
    """One stack's Redis, as the coordinator sees it: a server it started, or a URL."""

    def __init__(self, url: str, server: EmbeddedRedis | None) -> None:
        self.url = url
        self.server = server
        self.client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self._start = 0
        self._carried = 0
        self.subtract = 0  # bytes of the demo's own fault clients in this phase

    @property
    def ours(self) -> bool:
        return self.server is not None

    def close(self) -> None:
        self.client.close()

    def _net(self) -> int:
        stats: dict[str, Any] = self.client.info("stats")
        return int(stats["total_net_input_bytes"]) + int(stats["total_net_output_bytes"])

    def meter_start(self) -> None:
        self._start, self._carried, self.subtract = self._net(), 0, 0

    def meter_carry(self) -> None:
        """Before the server dies: what it has counted so far is not lost with it."""
        self._carried += self._net() - self._start
        self._start = 0

    def meter_end(self) -> int:
        return max(0, self._carried + self._net() - self._start - self.subtract)

    def redis_version(self) -> str:
        return str(self.client.info("server").get("redis_version", "?"))


def _resp_size(items: list[Any]) -> int:
    """Bytes of a RESP array reply of bulk strings."""
    size = len(f"*{len(items)}\r\n")
    for item in items:
        size += len(f"${len(item)}\r\n") + len(item) + 2
    return size


_FILL = """
for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do
  redis.call('SET', 'jobs:state:' .. i, 'queued')
end
local chunk = {}
for i = 1, 1000 do chunk[i] = 'event-' .. i end
for i = 1, tonumber(ARGV[3]) do redis.call('RPUSH', 'jobs:events', unpack(chunk)) end
return 1
"""


def fill_keyspace(target: Target, keys: int, items: int) -> None:
    """A large keyspace and a long list: the other service's data the blocking phase scans.

    Written by a server-side script in slices (a round trip per 50,000 keys), so a
    million keys take a second or two, not a minute of pipelining.
    """
    step = 50_000
    for start in range(0, keys, step):
        lists = items // 1000 if start == 0 else 0
        target.client.eval(_FILL, 0, start, min(keys, start + step) - 1, lists)


class Fault:
    """Nothing happens to Redis (the steady phase, and the phases the stacks drive)."""

    needs_servers = False
    skip_reason = ""

    def begin(self, targets: list[Target]) -> None:
        pass

    def end(self, targets: list[Target]) -> None:
        pass


class Blocking(Fault):
    """Another client runs ``KEYS *`` and ``LRANGE 0 -1`` back to back on each Redis."""

    needs_servers = True
    skip_reason = "the demo runs KEYS * and a full LRANGE only on a Redis it started"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def begin(self, targets: list[Target]) -> None:
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._block, args=(t,), daemon=True) for t in targets
        ]
        for thread in self._threads:
            thread.start()

    def _block(self, target: Target) -> None:
        client = redis.Redis.from_url(target.url, socket_timeout=30)
        sent = 0
        try:
            while not self._stop.is_set():
                keys = client.keys("*")
                sent += len("*2\r\n$4\r\nKEYS\r\n$1\r\n*\r\n") + _resp_size(keys)
                items = client.lrange("jobs:events", 0, -1)
                sent += len("*4\r\n$6\r\nLRANGE\r\n$11\r\njobs:events\r\n$1\r\n0\r\n$2\r\n-1\r\n")
                sent += _resp_size(items)
                self._stop.wait(0.05)
        except redis.RedisError:
            pass
        finally:
            client.close()
            target.subtract += sent  # the blocker's own traffic is not the stack's

    def end(self, targets: list[Target]) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


class Hang(Fault):
    """SIGSTOP for the whole phase: connections stay open, nothing answers."""

    needs_servers = True
    skip_reason = "the demo pauses (SIGSTOP) only a redis-server it started"

    def begin(self, targets: list[Target]) -> None:
        for t in targets:
            assert t.server is not None
            t.server.pause()

    def end(self, targets: list[Target]) -> None:
        for t in targets:
            assert t.server is not None
            t.server.resume()


class Restart(Fault):
    """SIGKILL, half a second down, then a fresh empty server on the same port."""

    needs_servers = True
    skip_reason = "the demo kills and restarts only a redis-server it started"
    down_s = 0.5

    def begin(self, targets: list[Target]) -> None:
        for t in targets:
            t.meter_carry()
        for t in targets:
            assert t.server is not None
            t.server.kill()
        time.sleep(self.down_s)
        for t in targets:
            assert t.server is not None
            t.server.start()


class Eviction(Fault):
    """``maxmemory`` set below what the data needs, ``allkeys-lru``: Redis evicts to fit."""

    needs_servers = True
    skip_reason = "the demo changes maxmemory only on a redis-server it started"

    def begin(self, targets: list[Target]) -> None:
        for t in targets:
            memory: dict[str, Any] = t.client.info("memory")
            used = int(memory["used_memory"])
            dataset = int(memory.get("used_memory_dataset", used // 2))
            # Room for 40% of the data: the rest is evicted now, and more with every write.
            limit = max(used - int(dataset * 0.6), 1_000_000)
            t.client.config_set("maxmemory-policy", "allkeys-lru")
            t.client.config_set("maxmemory", str(limit))

    def end(self, targets: list[Target]) -> None:
        for t in targets:
            t.client.config_set("maxmemory", "0")
            t.client.config_set("maxmemory-policy", "noeviction")


FAULTS: dict[str, type[Fault]] = {
    "steady": Fault,
    "blocking": Blocking,
    "hang": Hang,
    "restart": Restart,
    "eviction": Eviction,
    "write_race": Fault,
    "large_payload": Fault,
}
