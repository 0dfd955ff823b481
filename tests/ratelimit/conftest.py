"""Fixtures of the rate limit tests: one Redis or a 3-shard cluster, with command counts."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from servers import RedisServer


@dataclass
class Topology:
    url: str
    servers: list[RedisServer]

    def calls(self, *commands: str) -> int:
        """How many times the servers ran these commands (INFO commandstats), summed."""
        total = 0
        for server in self.servers:
            client = server.client(socket_timeout=5)
            try:
                stats = client.info("commandstats")
            finally:
                client.close()
            for command in commands:
                total += int(stats.get(f"cmdstat_{command.lower()}", {}).get("calls", 0))
        return total


@pytest.fixture(params=["single", "cluster"])
def topology(request: pytest.FixtureRequest) -> Topology:
    """Every behaviour test runs on one Redis and on a 3-shard Redis Cluster."""
    if request.param == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        return Topology(cluster.url, list(cluster.servers))
    server = request.getfixturevalue("redis_server")
    return Topology(server.url, [server])
