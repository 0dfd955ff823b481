"""Group commits: concurrent callers share one transaction (exact) or one script call
(buffered), and every caller's increment counts once."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from counter_tables import fresh_tables, prefix_of
from servers import POSTGRES_URL, RedisServer
from veneer import Cache
from veneer.counters import Counters, CounterStoreError, counter_tables

THREADS = 8
EACH = 40


@pytest.fixture
def engine_and_prefix() -> Iterator[tuple[sa.Engine, str]]:
    engine = sa.create_engine(POSTGRES_URL, pool_size=4, max_overflow=4)
    with fresh_tables(engine) as made:
        yield engine, prefix_of(made)
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


def test_a_forked_child_counts_with_its_own_writers_and_threads(
    redis_server: RedisServer, namespace: str, engine_and_prefix: tuple[sa.Engine, str]
) -> None:
    """After a fork the child drops the parent's writers, waiting callers and background
    threads, starts its own, and its increments count once."""
    _engine, prefix = engine_and_prefix
    with Cache.from_url(redis_server.url, namespace=namespace, ttl=60) as cache:
        counters = Counters(
            cache, POSTGRES_URL, {"e": "exact", "b": "buffered"},
            tables=counter_tables(prefix=prefix), flusher=True, flush_interval=0.05,
        )  # fmt: skip
        counters.incr("b", "k")
        counters.incr("e", "k")
        parent_writers = {w.id for w in counters._writers}
        pid = os.fork()
        if pid == 0:  # the child: report through the exit code only
            code = 1
            try:
                assert not counters._flusher_started
                assert not counters._writers
                counters.incr("b", "k", 10)
                counters.incr("e", "k", 10)
                assert counters._flusher_started
                assert not ({w.id for w in counters._writers} & parent_writers)
                code = 0
            finally:
                os._exit(code)
        deadline = time.monotonic() + 30
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
            assert time.monotonic() < deadline, "the forked child hung"
            time.sleep(0.02)
        assert os.waitstatus_to_exitcode(done[1]) == 0
        deadline = time.monotonic() + 10
        while counters.get("b", "k") != 11 or counters.get("e", "k") != 11:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        counters.flush()
        assert counters.get("b", "k") == 11
        counters.close()


def test_the_gathering_leader_stops_waiting_once_the_last_batch_is_back(
    redis_server: RedisServer, namespace: str, engine_and_prefix: tuple[sa.Engine, str]
) -> None:
    """A leader gathering followers waits only until as many callers are back as were in
    the last batch, not for the whole gather window: with a 2 s window, 8 threads x 40
    exact increments wait the window out only when a thread has finished (fewer come back)."""
    engine, prefix = engine_and_prefix
    with Cache.from_url(redis_server.url, namespace=namespace, ttl=60) as cache:
        counters = Counters(cache, engine, {"e": "exact"}, tables=counter_tables(prefix=prefix))
        group = counters._journal._group
        group._gather = 2.0
        start = threading.Barrier(THREADS)

        def run() -> None:
            start.wait()
            for _ in range(EACH):
                counters.incr("e", "hot")

        threads = [threading.Thread(target=run) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        batches = counters.stats().journal_batches
        # Every batch of more than one caller gathered; all but a few (a thread that is
        # done, a caller descheduled for 2 s on a loaded machine) ended early.
        assert group.gather_timeouts <= THREADS + 4 < batches
        assert counters.get("e", "hot") == THREADS * EACH
        counters.close()


def test_a_dropped_journal_connection_fails_one_call_and_the_next_counts(
    redis_server: RedisServer, namespace: str, engine_and_prefix: tuple[sa.Engine, str]
) -> None:
    """The exact writer keeps its autocommit connection between group commits; when the
    database drops it, the one call on it fails with CounterStoreError (nothing counted,
    nothing hangs), the next one gets a fresh connection, and the total is exact."""
    engine, prefix = engine_and_prefix
    with Cache.from_url(redis_server.url, namespace=namespace, ttl=60) as cache:
        counters = Counters(cache, engine, {"e": "exact"}, tables=counter_tables(prefix=prefix))
        counters.incr("e", "k")  # the first commit reads the total (headroom check)
        counters.incr("e", "k")  # this one is a lone INSERT on the kept connection
        ((held, _loop, _since),) = counters._store._held
        pid = held.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with engine.connect() as admin:
            assert admin.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
        acknowledged = 2
        try:
            counters.incr("e", "k")
            acknowledged += 1  # the driver noticed before sending: a new connection
        except CounterStoreError:
            pass
        for _ in range(3):
            counters.incr("e", "k")
            acknowledged += 1
        with engine.connect() as conn:
            journal = counter_tables(prefix=prefix).journal
            assert conn.execute(sa.select(sa.func.sum(journal.c.delta))).scalar() == acknowledged
        assert counters.get("e", "k") == acknowledged
        counters.close()
        assert not counters._store._held
