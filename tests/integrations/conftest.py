"""Fixtures for the integration tests: PostgreSQL tables of their own, caches on private Redis."""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from servers import POSTGRES_URL
from veneer import Cache

_tables = itertools.count()


def unique_name(prefix: str) -> str:
    """A table or channel name no other test (or concurrent run) uses."""
    return f"{prefix}_{os.getpid()}_{next(_tables)}_{uuid.uuid4().hex[:6]}"


def eventually(condition: Callable[[], Any], timeout: float = 10.0, every: float = 0.01) -> float:
    """Wait until ``condition()`` is truthy; return how long it took. Fails after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(every)
    return time.monotonic() - started


@pytest.fixture(scope="session")
def pg_engine() -> Iterator[sa.Engine]:
    engine = sa.create_engine(POSTGRES_URL, pool_size=5, max_overflow=5)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:  # pragma: no cover - environment problem
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc}")
    yield engine
    engine.dispose()


@pytest.fixture
def users(pg_engine: sa.Engine) -> Iterator[sa.Table]:
    """A fresh ``users`` table of this test, holding user 1 named 'old'."""
    table = sa.Table(
        unique_name("vusers"),
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
    )
    with pg_engine.begin() as conn:
        table.create(conn)
        conn.execute(sa.insert(table), [{"id": 1, "name": "old"}, {"id": 2, "name": "two"}])
    yield table
    with pg_engine.begin() as conn:
        table.drop(conn, checkfirst=True)


@pytest.fixture
def make_cache(redis_url: str, namespace: str) -> Iterator[Callable[..., Cache]]:
    """Builds sync caches on the shared private Redis (in this test's namespace by default)."""
    made: list[Cache] = []

    def make(**options: Any) -> Cache:
        options.setdefault("ttl", 60)
        url = options.pop("url", redis_url)
        cache = Cache.from_url(url, namespace=options.pop("namespace", namespace), **options)
        made.append(cache)
        if options.get("broadcast", True):
            assert cache.ready(5.0)
        return cache

    yield make
    for cache in made:
        cache.close()


def read_name(engine: sa.Engine, table: sa.Table, uid: int) -> str | None:
    """The committed name of user ``uid``, read on a connection of its own."""
    with engine.connect() as conn:
        return conn.execute(sa.select(table.c.name).where(table.c.id == uid)).scalar()
