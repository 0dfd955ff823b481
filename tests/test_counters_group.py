"""Group commits: concurrent callers share one transaction (exact) or one script call
(buffered), and every caller's increment counts once."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from servers import POSTGRES_URL, RedisServer
from veneer import Cache
from veneer.counters import Counters, counter_tables, create_counter_tables

THREADS = 8
EACH = 40


@pytest.fixture
def engine_and_prefix() -> Iterator[tuple[sa.Engine, str]]:
    engine = sa.create_engine(POSTGRES_URL, pool_size=4, max_overflow=4)
    prefix = f"vcg_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    made = create_counter_tables(engine, counter_tables(prefix=prefix))
    yield engine, prefix
    with engine.begin() as conn:
        for table in made.all:
            table.drop(conn, checkfirst=True)
    engine.dispose()


def test_concurrent_callers_share_commits_and_each_counts_once(
    redis_server: RedisServer, namespace: str, engine_and_prefix: tuple[sa.Engine, str]
) -> None:
    """8 threads incrementing one hot key: fewer transactions than increments (group
    commit), fewer Redis calls than increments, and the totals equal what was added."""
    engine, prefix = engine_and_prefix
    with Cache.from_url(redis_server.url, namespace=namespace, ttl=60) as cache:
        counters = Counters(
            cache, engine, {"e": "exact", "b": "buffered"}, tables=counter_tables(prefix=prefix)
        )
        start = threading.Barrier(THREADS)

        def run() -> None:
            start.wait()
            for _ in range(EACH):
                counters.incr("e", "hot")
                counters.incr("b", "hot")

        threads = [threading.Thread(target=run) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stats = counters.stats()
        assert stats.exact_increments == stats.buffered_increments == THREADS * EACH
        assert stats.journal_batches < THREADS * EACH * 0.75
        assert counters._redis_group.batches < THREADS * EACH * 0.75
        counters.flush()
        assert counters.get_many("e", ["hot"]) == {"hot": THREADS * EACH}
        assert counters.get("b", "hot") == THREADS * EACH
        counters.close()
