"""Durable mode: the outbox is written in the application's transaction and drained by the relay."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from servers import POSTGRES_URL, RedisServer, free_port
from veneer import Cache
from veneer.integrations.cli import relay as relay_command
from veneer.integrations.outbox import (
    OutboxRelay,
    create_outbox,
    outbox_ddl,
    outbox_table,
    sqlalchemy_url,
)
from veneer.integrations.sqlalchemy import CacheInvalidator

from .conftest import eventually, read_name, unique_name

MakeCache = Callable[..., Cache]


def value_key(namespace: str, key: str) -> str:
    return "{" + namespace + ":" + key + "}"


@pytest.fixture
def outbox(pg_engine: sa.Engine) -> Iterator[sa.Table]:
    table = create_outbox(pg_engine, outbox_table(name=unique_name("voutbox")))
    yield table
    with pg_engine.begin() as conn:
        table.drop(conn, checkfirst=True)


@pytest.fixture
def maker(pg_engine: sa.Engine) -> sessionmaker[Session]:
    return sessionmaker(pg_engine)


@pytest.fixture
def dead_redis_url() -> str:
    """A URL where nothing listens: every invalidation is refused at once and queued."""
    return f"redis://127.0.0.1:{free_port()}/0"


def rows(engine: sa.Engine, outbox: sa.Table) -> list[tuple[str, str, str]]:
    c = outbox.c
    with engine.connect() as conn:
        return [
            (r.namespace, r.kind, r.name)
            for r in conn.execute(sa.select(c.namespace, c.kind, c.name).order_by(c.id))
        ]


def add_rows(engine: sa.Engine, outbox: sa.Table, marks: list[tuple[str, str, str]]) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.insert(outbox), [{"namespace": n, "kind": k, "name": m} for n, k, m in marks]
        )


def test_rows_are_written_in_the_same_transaction_and_a_rollback_leaves_none(
    pg_engine: sa.Engine,
    outbox: sa.Table,
    make_cache: MakeCache,
    maker: sessionmaker[Session],
    namespace: str,
) -> None:
    """Outbox rows exist only inside the writing transaction until it commits; a rollback
    takes them back."""
    invalidator = CacheInvalidator(make_cache(), outbox=outbox).install(maker)
    with maker() as session:
        with session.begin_nested():  # released into the outer transaction: rows written now
            invalidator.invalidate(session, "user:1")
        inside = session.execute(sa.select(sa.func.count()).select_from(outbox)).scalar()
        assert inside == 1
        assert rows(pg_engine, outbox) == []  # not visible outside before the commit
        session.rollback()
    with maker() as session:
        invalidator.invalidate(session, "user:2")
        session.rollback()
    assert rows(pg_engine, outbox) == []


def test_a_commit_applies_the_rows_and_deletes_them(
    pg_engine: sa.Engine,
    users: sa.Table,
    outbox: sa.Table,
    make_cache: MakeCache,
    maker: sessionmaker[Session],
    raw: redis.Redis,
    namespace: str,
) -> None:
    """With Redis up, commit() applies the invalidation and deletes its outbox row."""
    cache = make_cache()
    cache.get_or_load("user:1", lambda: read_name(pg_engine, users, 1))
    invalidator = CacheInvalidator(cache, outbox=outbox).install(maker)
    with maker() as session:
        session.execute(sa.update(users).where(users.c.id == 1).values(name="new"))
        invalidator.invalidate(session, "user:1")
        session.commit()
    assert not raw.exists(value_key(namespace, "user:1"))
    assert rows(pg_engine, outbox) == []


def test_durable_rows_follow_savepoints(
    pg_engine: sa.Engine,
    outbox: sa.Table,
    make_cache: MakeCache,
    dead_redis_url: str,
    maker: sessionmaker[Session],
    namespace: str,
) -> None:
    """Only marks that survive to the outermost commit are in the outbox (Redis down keeps
    them there to look at)."""
    cache = make_cache(url=dead_redis_url, broadcast=False)
    invalidator = CacheInvalidator(cache, outbox=outbox).install(maker)
    with maker() as session:
        invalidator.invalidate(session, "root")
        with session.begin_nested() as doomed:
            invalidator.invalidate(session, "rolled-back")
            doomed.rollback()
        with session.begin_nested() as outer:
            with session.begin_nested():
                invalidator.invalidate(session, "inner-released")
            invalidator.invalidate(session, "outer-rolled-back")
            outer.rollback()
        with session.begin_nested():
            invalidator.invalidate_tag(session, "released")
        session.commit()
    assert sorted(rows(pg_engine, outbox)) == [
        (namespace, "k", "root"),
        (namespace, "t", "released"),
    ]
    assert cache.stats().invalidations_pending == 2


def test_marks_made_while_committing_are_written_too(
    pg_engine: sa.Engine,
    outbox: sa.Table,
    make_cache: MakeCache,
    dead_redis_url: str,
    maker: sessionmaker[Session],
    namespace: str,
) -> None:
    """A mark from a later before_commit hook, or with a savepoint left open at commit(),
    still reaches the outbox."""
    cache = make_cache(url=dead_redis_url, broadcast=False)
    invalidator = CacheInvalidator(cache, outbox=outbox).install(maker)
    event.listen(maker, "before_commit", lambda s: invalidator.invalidate(s, "late"))
    with maker() as session:
        invalidator.invalidate(session, "early")
        session.begin_nested()
        invalidator.invalidate(session, "in-open-savepoint")
        session.commit()
    with maker.begin() as session:  # the root commits while the savepoint is still open
        invalidator.invalidate(session, "block")
        session.begin_nested()
        invalidator.invalidate(session, "block-savepoint")
    assert sorted(name for _, _, name in rows(pg_engine, outbox)) == [
        "block",
        "block-savepoint",
        "early",
        "in-open-savepoint",
        "late",
        "late",
    ]


def test_redis_down_at_commit_then_the_relay_applies_the_rows(
    pg_engine: sa.Engine,
    users: sa.Table,
    outbox: sa.Table,
    make_cache: MakeCache,
    maker: sessionmaker[Session],
    namespace: str,
) -> None:
    """Redis down at commit: the rows stay, and the relay cannot apply them while it is
    down; once Redis is back (with its persisted, now stale entry) the relay applies and
    deletes them, and the key is invalidated."""
    server = RedisServer("--appendonly", "yes", "--appendfsync", "always")
    try:
        # No broadcast: the app cache must not drain its own queue on reconnect, so
        # that what removes the stale entry below is the relay.
        cache = make_cache(url=server.url, broadcast=False)
        assert cache.get_or_load("user:1", lambda: read_name(pg_engine, users, 1)) == "old"
        invalidator = CacheInvalidator(cache, outbox=outbox).install(maker)
        server.kill()
        with maker() as session:
            session.execute(sa.update(users).where(users.c.id == 1).values(name="new"))
            invalidator.invalidate(session, "user:1")
            session.commit()
        assert read_name(pg_engine, users, 1) == "new"
        assert rows(pg_engine, outbox) == [(namespace, "k", "user:1")]
        with OutboxRelay(pg_engine, server.url, table=outbox) as relay:
            assert relay.run_once() == 0
            assert relay.backlog() == 1
        server.start()
        client = server.client()
        assert client.exists(value_key(namespace, "user:1"))  # back, with the stale "old"
        with OutboxRelay(pg_engine, server.url, table=outbox) as relay:
            assert relay.run_once() == 1
        assert rows(pg_engine, outbox) == []
        assert not client.exists(value_key(namespace, "user:1"))
        client.close()
        fresh = make_cache(url=server.url, l1_size=0)
        assert fresh.get_or_load("user:1", lambda: read_name(pg_engine, users, 1)) == "new"
    finally:
        server.stop()


def test_the_relay_drains_in_batches_and_deletes_duplicates(
    pg_engine: sa.Engine, outbox: sa.Table, make_cache: MakeCache, namespace: str
) -> None:
    """Every row is applied and deleted; rows repeating one invalidation cost one command."""
    cache = make_cache()
    marks = [(namespace, "k", f"k{i}") for i in range(1100)]
    marks += [(namespace, "t", "tag")] * 5 + [(namespace, "e", "")] * 5
    add_rows(pg_engine, outbox, marks)
    relay = OutboxRelay(pg_engine, lambda ns: cache, table=outbox, batch=400)
    assert relay.run_once() == 1110
    assert rows(pg_engine, outbox) == []
    # 1100 keys, plus the tag and the epoch once per batch they appear in.
    assert 1102 <= cache.stats().invalidations_sent <= 1106
    relay.close()
    assert cache.get("anything") is None  # the caller's cache is not closed by the relay


def test_relays_skip_rows_another_relay_holds(
    pg_engine: sa.Engine, outbox: sa.Table, make_cache: MakeCache, namespace: str
) -> None:
    """A row locked by another worker is skipped (SKIP LOCKED), not waited for."""
    cache = make_cache()
    add_rows(pg_engine, outbox, [(namespace, "k", f"k{i}") for i in range(3)])
    relay = OutboxRelay(pg_engine, lambda ns: cache, table=outbox)
    with pg_engine.connect() as holder:
        first = holder.execute(
            sa.select(outbox.c.id).order_by(outbox.c.id).limit(1).with_for_update()
        ).scalar_one()
        started = time.monotonic()
        assert relay.run_once() == 2
        assert time.monotonic() - started < 5.0
        holder.rollback()
    with pg_engine.connect() as conn:
        assert conn.execute(sa.select(outbox.c.id)).scalars().all() == [first]
    assert relay.run_once() == 1
    relay.close()


def test_the_relay_runs_in_process_in_a_thread(
    pg_engine: sa.Engine, outbox: sa.Table, make_cache: MakeCache, namespace: str
) -> None:
    """start() drains rows as they appear, stop() ends the thread."""
    cache = make_cache()
    relay = OutboxRelay(pg_engine, lambda ns: cache, table=outbox, interval=0.05).start()
    try:
        add_rows(pg_engine, outbox, [(namespace, "k", "a"), (namespace, "t", "b")])
        # The relay counts a pass's rows after their delete commits: wait for the count.
        eventually(lambda: relay.applied >= 2, timeout=10.0)
        assert relay.applied == 2
        assert rows(pg_engine, outbox) == []
    finally:
        relay.stop()
    assert not any(t.name == "veneer-outbox-relay" and t.is_alive() for t in threading.enumerate())


def test_the_relay_works_on_sqlite(tmp_path: Path, make_cache: MakeCache, namespace: str) -> None:
    """On SQLite the relay uses a plain SELECT (no row locks)."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    table = create_outbox(engine)
    add_rows(engine, table, [(namespace, "k", "a"), (namespace, "k", "b")])
    cache = make_cache()
    with OutboxRelay(engine, lambda ns: cache, table=table) as relay:
        assert relay.run_once() == 2
        assert relay.backlog() == 0
    engine.dispose()


def test_cli_relay_once(
    pg_engine: sa.Engine, outbox: sa.Table, redis_url: str, dead_redis_url: str, namespace: str
) -> None:
    """`veneer relay --once` drains the outbox and exits 0; with Redis unreachable it says
    so and exits 3, leaving the rows."""
    add_rows(pg_engine, outbox, [(namespace, "k", "a"), (namespace, "e", "")])
    args = ["--db", POSTGRES_URL, "--table", outbox.name, "--once"]
    refused = CliRunner().invoke(relay_command, [*args, "--redis", dead_redis_url])
    assert refused.exit_code == 3, refused.output
    assert "nothing accepts connections" in refused.output
    assert len(rows(pg_engine, outbox)) == 2
    result = CliRunner().invoke(relay_command, [*args, "--redis", redis_url])
    assert result.exit_code == 0, result.output
    assert "applied 2 invalidation(s); 0 row(s) left" in result.output
    assert rows(pg_engine, outbox) == []


def test_outbox_ddl_and_urls() -> None:
    """The documented DDL matches the table; libpq DSNs become psycopg 3 URLs."""
    ddl = outbox_ddl()
    assert ddl.startswith("CREATE TABLE veneer_outbox")
    assert "created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL" in ddl
    assert sqlalchemy_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert sqlalchemy_url("sqlite:///x.db") == "sqlite:///x.db"
