"""Faults (issue 12): the database stopped, Redis and the database both down at start-up,
forked workers. Evaluation never raises, and says where its snapshot came from."""

from __future__ import annotations

import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from proxy import SlowProxy
from servers import POSTGRES_URL, RedisServer, free_port
from veneer import Cache
from veneer.flags import Flag, Flags, FlagTables, Rule

CHILD_SECONDS = 20.0


def eventually(condition: Callable[[], object], timeout: float = 10.0) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.005)
    return time.monotonic() - started


@pytest.fixture
def pg_proxy() -> Iterator[SlowProxy]:
    """A TCP proxy to PostgreSQL: block() cuts its connections and refuses new ones, as a
    stopped database does for the processes behind it."""
    proxy = SlowProxy(5432)
    yield proxy
    proxy.close()


def proxied_engine(proxy: SlowProxy) -> sa.Engine:
    url = sa.make_url(POSTGRES_URL).set(host="127.0.0.1", port=proxy.port)
    return sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 2})


def test_the_database_stopped_evaluation_goes_on_with_zero_exceptions(
    pg: sa.Engine,
    pg_tables: FlagTables,
    pg_proxy: SlowProxy,
    redis_server: RedisServer,
    namespace: str,
) -> None:
    """With its database cut off, a process keeps evaluating its snapshot (20,000
    evaluations from two threads, no exception, unchanged answers) while its checks fail;
    a change still reaches it through Redis once another process filled the snapshot
    there; once the database is back it follows the database again."""
    writer_cache = Cache.from_url(redis_server.url, namespace=namespace, ttl=60)
    writer = Flags(pg, writer_cache, tables=pg_tables)
    writer.set_flag(Flag("checkout", enabled=True, rules=[Rule(percentage=50)]))
    engine = proxied_engine(pg_proxy)
    cache = Cache.from_url(redis_server.url, namespace=namespace, ttl=60)
    cut_off = Flags(engine, cache, tables=pg_tables, poll_interval=0.05, check_interval=0.05)
    helper_cache = Cache.from_url(redis_server.url, namespace=namespace, ttl=60)
    helper = Flags(pg, helper_cache, tables=pg_tables)  # a process whose database answers
    try:
        assert cut_off.start() and helper.start()
        expected = [cut_off.enabled("checkout", subject=f"u{i}") for i in range(100)]
        assert set(expected) == {True, False}
        failures_before = cut_off.status().load_failures
        pg_proxy.block()
        errors: list[BaseException] = []
        answers: list[bool] = []

        def evaluate() -> None:
            try:
                for i in range(10_000):
                    answers.append(
                        cut_off.enabled("checkout", subject=f"u{i % 100}") == expected[i % 100]
                    )
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=evaluate) for _ in range(2)]
        for t in threads:
            t.start()
        eventually(lambda: cut_off.status().load_failures > failures_before + 2)
        for t in threads:
            t.join(30)
        assert errors == [] and len(answers) == 20_000 and all(answers)
        status = cut_off.status()
        assert status.source in ("cache", "database") and status.last_error is not None
        # A change while this process cannot read the database: the helper loads it once
        # into Redis, and the cut-off process gets it from there.
        change = writer.set_flag("checkout", enabled=False)
        eventually(lambda: helper.snapshot().version == change.version)
        eventually(lambda: cut_off.snapshot().version == change.version)
        assert cut_off.status().source == "cache"
        assert not cut_off.enabled("checkout", subject="u1")
        # Back: its own checks succeed again and follow a change made meanwhile directly.
        pg_proxy.unblock()
        cut_off_failures = cut_off.status().load_failures
        again = writer.set_flag("checkout", enabled=True)
        eventually(lambda: cut_off.snapshot().version == again.version)
        eventually(lambda: (cut_off.status().confirmed_age or 1) < 0.5)
        assert cut_off.status().load_failures >= cut_off_failures
    finally:
        for flags in (cut_off, helper, writer):
            flags.close()
        for c in (cache, helper_cache, writer_cache):
            c.close()
        engine.dispose()


def test_redis_and_the_database_down_at_start_up_file_then_defaults(
    pg: sa.Engine, pg_tables: FlagTables, redis_server: RedisServer, namespace: str, tmp_path: Path
) -> None:
    """A process that reaches neither Redis nor its database at start-up serves the
    last-known-good file, or with no file the defaults declared in code; start() says it
    did not load, status() says from where it serves, and nothing raises."""
    snapshot_file = tmp_path / "flags.json"
    cache = Cache.from_url(redis_server.url, namespace=namespace, ttl=60)
    healthy = Flags(pg, cache, tables=pg_tables, snapshot_file=snapshot_file)
    change = healthy.set_flag(Flag("checkout", enabled=True, rules=[Rule(percentage=30)]))
    assert healthy.start()
    eventually(snapshot_file.exists)
    answers = [healthy.enabled("checkout", subject=f"u{i}") for i in range(200)]
    healthy.close()
    cache.close()

    dead_db = sa.create_engine(
        f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test",
        connect_args={"connect_timeout": 1},
    )
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    down_cache = Cache.from_url(dead_redis, namespace=namespace, ttl=60)
    defaults = {"checkout": False, "search": {"timeout_ms": 100}}
    from_file = Flags(
        dead_db, down_cache, tables=pg_tables, snapshot_file=snapshot_file, defaults=defaults
    )
    from_defaults = Flags(dead_db, down_cache, tables=pg_tables, defaults=defaults)
    try:
        started = time.monotonic()
        assert from_file.start(timeout=2) is False
        assert from_defaults.start(timeout=2) is False
        assert time.monotonic() - started < 4.5
        status = from_file.status()
        assert (status.source, status.version, status.token) == ("file", 1, change.token)
        assert [from_file.enabled("checkout", subject=f"u{i}") for i in range(200)] == answers
        assert from_file.value("search")["timeout_ms"] == 100  # not in the file: declared
        assert from_defaults.status().source == "defaults"
        assert from_defaults.enabled("checkout", subject="u1") is False
        assert from_defaults.status().unknown == {"checkout": 1}
        eventually(lambda: from_file.status().load_failures > 0)
        assert from_file.status().mode == "poll"
        # A corrupt file is ignored (logged), and the defaults answer.
        snapshot_file.write_text('{"format": 1, "flags": "nope"')
        corrupt = Flags(dead_db, tables=pg_tables, snapshot_file=snapshot_file, defaults=defaults)
        assert corrupt.start(timeout=0.5) is False
        assert corrupt.status().source == "defaults" and corrupt.enabled("checkout") is False
        corrupt.close()
    finally:
        from_file.close()
        from_defaults.close()
        down_cache.close()
        dead_db.dispose()


def fork_children(work: Callable[[], bool], n: int) -> tuple[list[int], list[int]]:
    """Fork ``n`` children running ``work`` (True: success); their pids, and a pipe per
    child's readiness byte (read end)."""
    pids, pipes = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for _ in range(n):
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: never return into pytest
                code = 3
                try:
                    os.close(read)
                    code = 0 if work_with_pipe(work, write) else 1
                except BaseException:
                    import traceback

                    traceback.print_exc()
                    code = 2
                finally:
                    os._exit(code)
            os.close(write)
            pids.append(pid)
            pipes.append(read)
    return pids, pipes


_ready_fd: list[int] = []


def work_with_pipe(work: Callable[[], bool], fd: int) -> bool:
    _ready_fd.append(fd)
    return work()


def signal_ready() -> None:
    os.write(_ready_fd[-1], b"r")
    os.close(_ready_fd[-1])


def wait_children(pids: list[int]) -> list[int]:
    codes: dict[int, int] = {}
    deadline = time.monotonic() + CHILD_SECONDS
    while len(codes) < len(pids) and time.monotonic() < deadline:
        for pid in pids:
            if pid not in codes:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    codes[pid] = os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    for pid in pids:
        if pid not in codes:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            codes[pid] = -9
    return [codes[pid] for pid in pids]


def test_two_workers_forked_after_the_client_started_both_see_a_flip(
    pg: sa.Engine, pg_tables: FlagTables, redis_server: RedisServer, namespace: str
) -> None:
    """A client created and started before fork() (gunicorn --preload) keeps updating in
    each of 2 forked workers: both see a flip committed after the fork, through Redis."""
    cache = Cache.from_url(redis_server.url, namespace=namespace, ttl=60)
    flags = Flags(pg, cache, tables=pg_tables, check_interval=30.0)
    flags.set_flag("forked", enabled=False)
    assert flags.start()
    eventually(lambda: flags.status().mode == "push")

    def child() -> bool:
        # The parent's snapshot answers at once; the child's own worker subscribes.
        if flags.enabled("forked"):
            return False
        deadline = time.monotonic() + 10
        while flags.status().mode != "push":
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        signal_ready()
        while not flags.enabled("forked"):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        # Pushed, not polled: check_interval is 30 s.
        return flags.status().mode == "push"

    pids, pipes = fork_children(child, 2)
    try:
        for fd in pipes:
            assert os.read(fd, 1) == b"r"
        writer = Flags(pg, cache, tables=pg_tables)
        writer.set_flag("forked", enabled=True)
        eventually(lambda: flags.enabled("forked"))
    finally:
        codes = wait_children(pids)
        for fd in pipes:
            os.close(fd)
        flags.close()
        cache.close()
    assert codes == [0, 0]
