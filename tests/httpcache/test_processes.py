"""Database-driven invalidation across processes: a commit's tag purges every process's copy."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from integrations.conftest import unique_name
from servers import POSTGRES_URL, RedisServer, free_port
from veneer import Cache
from veneer.integrations.sqlalchemy import CacheInvalidator

TESTS = Path(__file__).resolve().parent.parent


@pytest.fixture
def products() -> Iterator[tuple[sa.Engine, sa.Table]]:
    engine = sa.create_engine(POSTGRES_URL)
    table = sa.Table(
        unique_name("vproducts"),
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
    )
    with engine.begin() as conn:
        table.create(conn)
        conn.execute(sa.insert(table), [{"id": 1, "name": "old"}])
    yield engine, table
    with engine.begin() as conn:
        table.drop(conn, checkfirst=True)
    engine.dispose()


def start_server(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "httpcache.apps:product_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=TESTS,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "server exited")
        try:
            httpx.get(base + "/calls", timeout=0.5)
            return proc, base
        except httpx.HTTPError:
            time.sleep(0.05)
    stop(proc)
    raise RuntimeError("server did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop one server by its PID, and close its pipe."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    if proc.stderr is not None:
        proc.stderr.close()


def test_a_tag_invalidated_after_commit_is_purged_in_every_process(
    redis_server: RedisServer, namespace: str, products: tuple[sa.Engine, sa.Table]
) -> None:
    """Two server processes hold a product page in their own L1 and in Redis; a committed
    change with ``invalidate_tag`` makes the next request in each process return the new
    row: the page is fetched from the app once and no process serves its old copy."""
    engine, table = products
    env = dict(
        os.environ,
        VENEER_TEST_REDIS=redis_server.url,
        VENEER_TEST_NAMESPACE=namespace,
        VENEER_TEST_TABLE=table.name,
        PYTHONPATH=str(TESTS),
    )
    servers = [start_server(env) for _ in range(2)]
    try:
        (_, a), (_, b) = servers

        def name_at(base: str) -> str:
            # One public host name, as behind a load balancer.
            page = httpx.get(base + "/product/1", headers={"host": "shop.test"}, timeout=10)
            return str(page.json()["name"])

        def calls(base: str) -> int:
            return int(httpx.get(base + "/calls", timeout=10).json()["n"])

        # First response: tags learned; second: stored; then hits everywhere (L1 in each).
        assert [name_at(a) for _ in range(4)] == ["old"] * 4
        assert [name_at(b) for _ in range(3)] == ["old"] * 3
        assert (calls(a), calls(b)) == (2, 0)

        cache = Cache.from_url(redis_server.url, namespace=namespace)
        maker = sessionmaker(engine)
        invalidator = CacheInvalidator(cache).install(maker)
        with maker() as session:
            session.execute(sa.update(table).where(table.c.id == 1).values(name="new"))
            invalidator.invalidate_tag(session, "product:1")
            session.commit()
        cache.close()

        assert name_at(b) == "new"
        assert name_at(a) == "new"
        assert calls(a) + calls(b) == 3  # one refill for both processes
        assert (name_at(a), name_at(b)) == ("new", "new")
        assert calls(a) + calls(b) == 3
    finally:
        for proc, _ in servers:
            stop(proc)


def test_without_the_invalidation_the_old_page_stays(
    redis_server: RedisServer, namespace: str, products: tuple[sa.Engine, sa.Table]
) -> None:
    """Control: the same commit without ``invalidate_tag`` leaves every process serving the
    old page, so the test above can fail."""
    engine, table = products
    env = dict(
        os.environ,
        VENEER_TEST_REDIS=redis_server.url,
        VENEER_TEST_NAMESPACE=namespace,
        VENEER_TEST_TABLE=table.name,
        PYTHONPATH=str(TESTS),
    )
    proc, base = start_server(env)
    try:
        for _ in range(3):
            httpx.get(base + "/product/1", timeout=10)
        with Session(engine) as session:
            session.execute(sa.update(table).where(table.c.id == 1).values(name="new"))
            session.commit()
        assert httpx.get(base + "/product/1", timeout=10).json()["name"] == "old"
    finally:
        stop(proc)
