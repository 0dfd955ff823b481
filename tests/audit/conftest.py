"""Fixtures for the audit tests: a private server, a seeded one, a cluster, a sentinel."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from audit_helpers import seed_antipatterns

from servers import RedisServer
from topologies import LocalCluster, LocalSentinel


@pytest.fixture
def server() -> Iterator[RedisServer]:
    s = RedisServer()
    yield s
    s.stop()


@pytest.fixture
def seeded(server: RedisServer) -> RedisServer:
    seed_antipatterns(server)
    return server


@pytest.fixture
def client(server: RedisServer) -> Iterator[redis.Redis]:
    c = server.client()
    yield c
    c.close()


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    c = LocalCluster(primaries=3, replicas=1)
    yield c
    c.stop()


@pytest.fixture
def sentinel() -> Iterator[LocalSentinel]:
    s = LocalSentinel()
    yield s
    s.stop()
