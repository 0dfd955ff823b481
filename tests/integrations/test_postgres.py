"""Writes that bypass the application: a PostgreSQL trigger names keys, the listener drops them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
import redis
import sqlalchemy as sa

from servers import POSTGRES_URL
from veneer import Cache, ConfigurationError
from veneer.integrations.postgres import (
    PgInvalidationListener,
    drop_trigger_sql,
    install_trigger,
    libpq_dsn,
    trigger_sql,
)

from .conftest import eventually, unique_name

MakeCache = Callable[..., Cache]
DSN = libpq_dsn(POSTGRES_URL)


def value_key(namespace: str, key: str) -> str:
    return "{" + namespace + ":" + key + "}"


def psql(statement: str, *params: Any) -> None:
    """Run SQL on a plain connection of its own, the way psql or another service would."""
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(statement.encode() if not params else statement, params or None)


class Items:
    """A table with the veneer trigger installed: keys ``item:{id}``, tag ``org:{org}``."""

    def __init__(self, engine: sa.Engine, namespace: str) -> None:
        self.name = unique_name("vitems")
        self.channel = unique_name("vchan")
        self.namespace = namespace
        with engine.begin() as conn:
            conn.exec_driver_sql(
                f'CREATE TABLE "{self.name}" (id int PRIMARY KEY, name text, org int)'
            )
            conn.exec_driver_sql(
                f"INSERT INTO \"{self.name}\" VALUES (1, 'old', 7), (2, 'two', 7), (3, 'three', 8)"
            )
        install_trigger(
            engine,
            self.name,
            namespace=namespace,
            keys=["item:{id}"],
            tags=["org:{org}"],
            key_sql=["'item-name:' || lower({row}.name)"],
            channel=self.channel,
        )

    def name_of(self, uid: int) -> Callable[[], str | None]:
        def load() -> str | None:
            with psycopg.connect(DSN) as conn:
                row = conn.execute(
                    f'SELECT name FROM "{self.name}" WHERE id = %s'.encode(), (uid,)
                ).fetchone()
                return None if row is None else str(row[0])

        return load


@pytest.fixture
def items(pg_engine: sa.Engine, namespace: str) -> Iterator[Items]:
    table = Items(pg_engine, namespace)
    yield table
    with pg_engine.begin() as conn:
        conn.exec_driver_sql(drop_trigger_sql(table.name))
        conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{table.name}"')


@pytest.fixture
def listener(items: Items, redis_url: str) -> Iterator[PgInvalidationListener]:
    """A listener on the items' channel, building its own caches from the Redis URL."""
    worker = PgInvalidationListener(DSN, redis_url, channel=items.channel, poll_interval=0.1)
    worker.start()
    assert worker.wait_listening(10.0)
    yield worker
    worker.close()


def test_a_plain_sql_update_invalidates_the_key_within_bounded_time(
    items: Items, listener: PgInvalidationListener, make_cache: MakeCache
) -> None:
    """An UPDATE made outside the application reaches every cache within seconds."""
    cache = make_cache()
    assert cache.get_or_load("item:1", items.name_of(1)) == "old"
    psql(f"UPDATE \"{items.name}\" SET name = 'new' WHERE id = 1")
    took = eventually(lambda: cache.get_or_load("item:1", items.name_of(1)) == "new", timeout=10)
    assert took < 10
    assert listener.received == 1
    assert listener.queued == 0


def test_old_and_new_rows_name_their_keys_and_tags(
    items: Items, listener: PgInvalidationListener, raw: redis.Redis, namespace: str
) -> None:
    """UPDATE names the keys of the old and the new row; INSERT the new; DELETE the old;
    tags and SQL-expression keys come along, without duplicates."""
    invalidated: list[str] = []
    real_handle = listener.handle

    def spy(payload: str) -> None:
        invalidated.append(payload)
        real_handle(payload)

    listener.handle = spy  # type: ignore[method-assign]
    psql(f"UPDATE \"{items.name}\" SET id = 10, name = 'Ten' WHERE id = 1")
    psql(f"INSERT INTO \"{items.name}\" VALUES (20, 'twenty', 9)")
    psql(f'DELETE FROM "{items.name}" WHERE id = 3')
    eventually(lambda: len(invalidated) == 3)

    messages = [json.loads(p) for p in invalidated]
    assert all(m["namespace"] == namespace for m in messages)
    update, insert, delete = messages
    assert sorted(update["keys"]) == ["item-name:old", "item-name:ten", "item:1", "item:10"]
    assert update["tags"] == ["org:7"]
    assert sorted(insert["keys"]) == ["item-name:twenty", "item:20"]
    assert insert["tags"] == ["org:9"]
    assert sorted(delete["keys"]) == ["item-name:three", "item:3"]
    assert delete["tags"] == ["org:8"]
    eventually(lambda: listener.applied == 11)


def test_a_rolled_back_write_notifies_nothing(
    items: Items, listener: PgInvalidationListener, make_cache: MakeCache, raw: redis.Redis
) -> None:
    """NOTIFY is transactional: a rolled-back write never reaches the listener."""
    cache = make_cache()
    cache.get_or_load("item:1", items.name_of(1))
    with psycopg.connect(DSN) as conn:
        conn.execute(f"UPDATE \"{items.name}\" SET name = 'new' WHERE id = 1".encode())
        conn.rollback()
    psql(f"UPDATE \"{items.name}\" SET name = 'later' WHERE id = 2")  # delivered after it
    eventually(lambda: listener.received == 1)
    assert raw.exists(value_key(items.namespace, "item:1"))


def test_truncate_and_oversized_payloads_invalidate_the_namespace(
    items: Items, listener: PgInvalidationListener, make_cache: MakeCache
) -> None:
    """A payload too long for pg_notify is split per name, and a name too long alone bumps
    the namespace; TRUNCATE bumps the namespace."""
    cache = make_cache()
    assert cache.get_or_load("item:2", items.name_of(2)) == "two"
    psql(f'INSERT INTO "{items.name}" VALUES (30, %s, 1)', "x" * 9000)
    # item:30, then the 9000-byte name key (sent as "all"), then the tag org:1
    eventually(lambda: listener.applied == 3)
    assert listener.received == 3
    eventually(lambda: cache.get("item:2") is None)
    assert cache.get_or_load("item:2", items.name_of(2)) == "two"
    psql(f'TRUNCATE "{items.name}"')
    eventually(lambda: listener.applied == 4)
    eventually(lambda: cache.get("item:2") is None)


def test_the_listener_reconnects_and_resyncs_after_the_connection_drops(
    items: Items, redis_url: str, make_cache: MakeCache, namespace: str
) -> None:
    """When its connection is killed the listener reconnects (with backoff), bumps the
    resync namespaces (it may have missed notifications), and goes on invalidating."""
    cache = make_cache()
    worker = PgInvalidationListener(
        DSN, redis_url, channel=items.channel, poll_interval=0.1, resync_namespaces=[namespace]
    ).start()
    try:
        assert worker.wait_listening(10.0)
        first_pid = worker.backend_pid
        assert worker.applied == 1  # the resync on first connect
        assert cache.get_or_load("item:1", items.name_of(1)) == "old"
        psql("SELECT pg_terminate_backend(%s)", first_pid)
        eventually(lambda: worker.connections == 2 and worker.listening, timeout=15)
        assert worker.backend_pid != first_pid
        assert worker.applied == 2  # resynced again
        eventually(lambda: cache.get_or_load("item:1", items.name_of(1)) == "old")
        psql(f"UPDATE \"{items.name}\" SET name = 'new' WHERE id = 1")
        eventually(lambda: cache.get_or_load("item:1", items.name_of(1)) == "new", timeout=10)
    finally:
        worker.close()


def test_a_malformed_notification_is_ignored(
    items: Items, listener: PgInvalidationListener
) -> None:
    """Garbage on the channel is counted and skipped; the listener keeps working."""
    psql("SELECT pg_notify(%s, 'not json')", items.channel)
    psql("SELECT pg_notify(%s, '{\"keys\": [1]}')", items.channel)
    psql(f"UPDATE \"{items.name}\" SET name = 'new' WHERE id = 2")
    eventually(lambda: listener.applied == 4)  # item:2, item-name:two, item-name:new, org:7
    assert listener.received == 3
    assert listener.malformed == 2


def test_trigger_sql_is_checked_when_generated() -> None:
    """Templates name columns only; a namespace must be valid; something must be named."""
    sql = trigger_sql("users", namespace="shop", keys=["user:{id}"], schema="app")
    assert "'user:' || (NEW.\"id\")::text" in sql
    assert 'CREATE TRIGGER "veneer_notify_users_row" AFTER INSERT OR UPDATE OR DELETE' in sql
    assert 'ON "app"."users"' in sql
    assert "AFTER TRUNCATE" in sql
    with pytest.raises(ValueError, match="column"):
        trigger_sql("users", namespace="shop", keys=["user:{id + 1}"])
    with pytest.raises(ValueError, match="column"):
        trigger_sql("users", namespace="shop", keys=["user:{id!r}"])
    with pytest.raises(ValueError, match="at least one"):
        trigger_sql("users", namespace="shop")
    with pytest.raises(ConfigurationError):
        trigger_sql("users", namespace="bad:ns", keys=["k"])
    quoted = trigger_sql("we'ird", namespace="shop", keys=["it's:{id}"], truncate=False)
    assert "'it''s:'" in quoted
    assert '"we\'ird"' in quoted
    assert "AFTER TRUNCATE" not in quoted
    assert libpq_dsn("postgresql+psycopg://u@h:5432/db") == "postgresql://u@h:5432/db"


def test_cli_listen_invalidates_until_terminated(
    items: Items, redis_url: str, make_cache: MakeCache
) -> None:
    """`veneer listen` applies trigger notifications and stops cleanly on SIGTERM."""
    cache = make_cache()
    assert cache.get_or_load("item:1", items.name_of(1)) == "old"
    with subprocess.Popen(
        [sys.executable, "-m", "veneer.cli", "listen", "--db", POSTGRES_URL,
         "--redis", redis_url, "--channel", items.channel],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as proc:  # fmt: skip
        try:
            assert proc.stdout is not None and proc.stderr is not None
            assert proc.stdout.readline().strip() == f"listening on channel {items.channel}"
            psql(f"UPDATE \"{items.name}\" SET name = 'new' WHERE id = 1")
            eventually(lambda: cache.get_or_load("item:1", items.name_of(1)) == "new", timeout=10)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
            assert "1 notification(s), 4 applied, 0 queued" in proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
