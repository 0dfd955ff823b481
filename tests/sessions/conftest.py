"""Fixtures for the session tests: tables of their own on PostgreSQL, stores on private Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from integrations.conftest import unique_name
from servers import POSTGRES_URL
from veneer import Cache
from veneer.sessions import SessionStore, SessionTables, create_tables, session_tables


class StatementCounter:
    """Counts the statements an engine sends, by kind (a SQLAlchemy event, no mock)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.statements: list[str] = []
        sa.event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(statement.lstrip().split(None, 1)[0].upper())

    @property
    def writes(self) -> int:
        return sum(1 for s in self.statements if s in ("INSERT", "UPDATE", "DELETE"))

    @property
    def reads(self) -> int:
        return sum(1 for s in self.statements if s == "SELECT")


@pytest.fixture
def engine() -> Iterator[sa.Engine]:
    """An engine of this test's own, so that counting its statements counts only this test."""
    eng = sa.create_engine(POSTGRES_URL, pool_size=10, max_overflow=10)
    yield eng
    eng.dispose()


@pytest.fixture
def tables(engine: sa.Engine) -> Iterator[SessionTables]:
    made = create_tables(engine, session_tables(name=unique_name("vsess")))
    yield made
    made.metadata.drop_all(engine)


@pytest.fixture
def make_store(
    redis_url: str, namespace: str, engine: sa.Engine, tables: SessionTables
) -> Iterator[Callable[..., SessionStore]]:
    """Builds stores (each with a cache of its own: a 'process') on this test's tables."""
    caches: list[Cache] = []

    def make(url: str | None = None, cache_options: dict[str, Any] | None = None, **options: Any):
        cache = Cache.from_url(url or redis_url, namespace=namespace, **(cache_options or {}))
        caches.append(cache)
        assert cache.ready(5.0)
        own_tables = options.pop("tables", tables)
        return SessionStore(options.pop("engine", engine), cache, tables=own_tables, **options)

    yield make
    for cache in caches:
        cache.close()
