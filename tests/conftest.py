"""Shared fixtures: real redis-server processes (session-scoped where a server can be shared)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import redis

from servers import RedisServer
from topologies import LocalCluster

_names = itertools.count()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private server shared by tests that do not hurt it (each uses its own namespace)."""
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """3 primaries with a replica each, shared by the tests that do not hurt it."""
    cluster = LocalCluster(primaries=3, replicas=1)
    yield cluster
    cluster.stop()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A private server for one test, which may kill, pause or restart it."""
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    yield client
    client.close()


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    """A namespace no other test uses, so tests share a server without sharing keys."""
    return f"t{next(_names)}"
