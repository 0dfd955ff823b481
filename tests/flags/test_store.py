"""The flags tables: versions, the audit trail, transactional writes, refused definitions
(issue 12, storage and transactional flags), on PostgreSQL and on SQLite."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.orm import Session

from servers import RedisServer
from veneer import Cache
from veneer.flags import (
    Condition,
    Flag,
    FlagNotFound,
    Flags,
    FlagTables,
    InvalidFlag,
    Rule,
    create_tables,
    flag_tables,
    tables_ddl,
)

from .conftest import drop


def head(engine: sa.Engine, tables: FlagTables) -> tuple[int, str]:
    with engine.connect() as conn:
        row = conn.execute(sa.select(tables.state.c.version, tables.state.c.token)).one()
    return int(row.version), row.token


def audit_count(engine: sa.Engine, tables: FlagTables) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(tables.audit)).scalar_one())


@pytest.fixture(params=["postgresql", "sqlite"])
def store(
    request: pytest.FixtureRequest, pg_tables: FlagTables, pg: sa.Engine, sqlite: sa.Engine
) -> Iterator[tuple[sa.Engine, FlagTables]]:
    """Every storage test runs on PostgreSQL and on SQLite."""
    if request.param == "postgresql":
        yield pg, pg_tables
        return
    yield sqlite, create_tables(sqlite)


class Messages:
    """Everything published on one flags channel, heard by a plain redis-py subscriber."""

    def __init__(self, server: RedisServer, channel: str) -> None:
        self._client = server.client()
        self._pubsub = self._client.pubsub()
        self._pubsub.subscribe(channel)
        assert self._pubsub.get_message(timeout=5)["type"] == "subscribe"  # type: ignore[index]
        self.heard: list[bytes] = []

    def drain(self, expect: int, timeout: float = 5.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while len(self.heard) < expect and time.monotonic() < deadline:
            message = self._pubsub.get_message(timeout=0.05)
            if message is not None and message["type"] == "message":
                self.heard.append(message["data"])
        return self.heard

    def through_sentinel(self, flags: Flags) -> list[bytes]:
        """Everything heard up to a fresh committed change (messages of one publisher
        arrive in order, so anything published before it has been heard by then)."""
        sentinel = flags.set_flag(f"sentinel-{len(self.heard)}", enabled=True)
        expected = f"1:{sentinel.version}:{sentinel.token}".encode()
        deadline = time.monotonic() + 5
        while expected not in self.heard and time.monotonic() < deadline:
            self.drain(len(self.heard) + 1, timeout=0.1)
        assert self.heard[-1] == expected
        return self.heard[:-1]

    def close(self) -> None:
        self._pubsub.close()
        self._client.close()


@pytest.fixture
def writer(
    redis_server: RedisServer, namespace: str, pg: sa.Engine, pg_tables: FlagTables
) -> Iterator[tuple[Flags, Messages]]:
    """A writing client on PostgreSQL with a cache, and a listener on its channel."""
    cache = Cache.from_url(redis_server.url, namespace=namespace, ttl=60)
    flags = Flags(pg, cache, tables=pg_tables)
    messages = Messages(redis_server, cache.redis_access("flags").channel(pg_tables.flags.name))
    yield flags, messages
    messages.close()
    flags.close()
    cache.close()


def test_tables_are_created_once_with_their_state_row_and_the_ddl_is_runnable(
    pg: sa.Engine, tmp_path: Any
) -> None:
    """create_tables makes the five tables and the state row (and is idempotent); the
    documented DDL creates the same on a fresh SQLite database, where flags then work."""
    tables = flag_tables(prefix="vf_ddl_" + str(id(tmp_path) % 100_000))
    try:
        create_tables(pg, tables)
        first = head(pg, tables)
        create_tables(pg, tables)
        assert head(pg, tables) == first and first[0] == 0
    finally:
        drop(pg, tables)
    for dialect in ("postgresql", "sqlite"):
        ddl = tables_ddl(dialect)
        for name in ("veneer_flags", "veneer_flag_variants", "veneer_flag_rules"):
            assert f"CREATE TABLE {name}" in ddl
        assert "INSERT INTO veneer_flag_state" in ddl
    engine = sa.create_engine(f"sqlite:///{tmp_path}/ddl.db")
    with engine.begin() as conn:
        for statement in tables_ddl("sqlite").split(";\n\n"):
            conn.exec_driver_sql(statement.strip().rstrip(";"))
    flags = Flags(engine)
    change = flags.set_flag("from-ddl", enabled=True)
    assert change.version == 1 and flags.definition("from-ddl")["enabled"] is True
    engine.dispose()
    with pytest.raises(ValueError, match="dialect"):
        tables_ddl("oracle")


def test_every_change_bumps_the_version_and_is_audited(
    store: tuple[sa.Engine, FlagTables],
) -> None:
    """Create, update, partial update and delete each bump the version by one, in the same
    transaction, and leave an audit row: who, when, the version, old and new."""
    engine, tables = store
    flags = Flags(engine, tables=tables)
    started = time.time()
    created = flags.set_flag(
        Flag("checkout", enabled=False, rules=[Rule(percentage=10)]), actor="alice"
    )
    updated = flags.set_flag("checkout", enabled=True, actor="bob")
    config = flags.set_flag(
        Flag("limits", enabled=True, variants={"v": {"max": 3}, "off": None}, on_variant="v")
    )
    deleted = flags.delete_flag("limits", actor="carol")
    assert [c.version for c in (created, updated, config, deleted)] == [1, 2, 3, 4]
    assert head(engine, tables)[0] == 4
    assert flags.definition("checkout")["rules"] == [
        {"when": [], "rollout": {"on": 10.0, "off": 90.0}}
    ]  # a partial update keeps the other fields
    with pytest.raises(FlagNotFound):
        flags.definition("limits")
    history = flags.history("checkout")
    assert [(c.action, c.actor, c.version) for c in history] == [
        ("update", "bob", 2),
        ("create", "alice", 1),
    ]
    assert history[0].old is not None and history[0].old["enabled"] is False
    assert history[0].new is not None and history[0].new["enabled"] is True
    assert history[1].old is None
    assert started - 1 <= history[1].changed_at <= time.time() + 1
    everything = flags.history()
    assert [c.action for c in everything] == ["delete", "create", "update", "create"]
    assert everything[0].new is None and everything[0].old is not None
    assert flags.history(limit=1)[0].version == 4
    with pytest.raises(FlagNotFound):
        flags.delete_flag("limits")
    assert head(engine, tables)[0] == 4  # a refused delete bumps nothing


def test_a_malformed_rule_is_refused_when_written_and_nothing_is_written(
    pg: sa.Engine, pg_tables: FlagTables
) -> None:
    """An invalid definition raises InvalidFlag before any statement: no version bump, no
    audit row, and the application's transaction goes on untouched."""
    flags = Flags(pg, tables=pg_tables)
    flags.set_flag("f", enabled=True)
    before = head(pg, pg_tables)
    with pytest.raises(InvalidFlag, match="percentage"):
        flags.set_flag(Flag("f", rules=[Rule(percentage=101)]))
    with pytest.raises(InvalidFlag, match="'lt' compares with a number"):
        flags.set_flag("f", rules=[Rule(when=[Condition("age", "lt", "old")], serve="on")])
    with pytest.raises(InvalidFlag, match="unknown field"):
        flags.set_flag("f", colour="red")
    with Session(pg) as session:
        with pytest.raises(InvalidFlag):
            flags.set_flag("f", session=session, on_variant="nope")
        session.execute(sa.select(1))  # the transaction is still usable
        session.commit()
    assert head(pg, pg_tables) == before
    assert audit_count(pg, pg_tables) == 1
    assert flags.definition("f")["enabled"] is True


def test_a_change_in_the_applications_transaction_is_published_only_after_commit(
    pg: sa.Engine, pg_tables: FlagTables, writer: tuple[Flags, Messages]
) -> None:
    """set_flag(session=...) joins the transaction: other connections do not see it and
    nothing is published until the commit; then exactly one message names the version."""
    flags, messages = writer
    with Session(pg) as session:
        change = flags.set_flag("migrated", enabled=True, session=session, actor="migration")
        assert head(pg, pg_tables)[0] == 0  # another connection sees nothing yet
        assert messages.drain(1, timeout=0.2) == []
        session.commit()
        assert head(pg, pg_tables) == (change.version, change.token)
    assert messages.through_sentinel(flags) == [f"1:{change.version}:{change.token}".encode()]


def test_a_rollback_changes_nothing_anywhere(
    pg: sa.Engine, pg_tables: FlagTables, writer: tuple[Flags, Messages]
) -> None:
    """A rolled-back transaction (or a session closed without commit) leaves no flag, no
    version, no audit row and no message; a later commit is the only thing heard."""
    flags, messages = writer
    with Session(pg) as session:
        flags.set_flag("risky", enabled=True, session=session)
        session.rollback()
    with Session(pg) as session:
        flags.set_flag("risky", enabled=True, session=session)  # closed without commit
    assert head(pg, pg_tables)[0] == 0 and audit_count(pg, pg_tables) == 0
    with pytest.raises(FlagNotFound):
        flags.definition("risky")
    assert messages.through_sentinel(flags) == []


def test_savepoints_and_repeated_writes_in_one_transaction(
    pg: sa.Engine, pg_tables: FlagTables, writer: tuple[Flags, Messages]
) -> None:
    """A change in a savepoint rolled back is undone while the rest commits; two changes
    in one transaction are published once, with the last version."""
    flags, messages = writer
    with Session(pg) as session:
        flags.set_flag("kept", enabled=True, session=session)
        savepoint = session.begin_nested()
        flags.set_flag("dropped", enabled=True, session=session)
        savepoint.rollback()
        last = flags.set_flag("kept", enabled=False, session=session)
        session.commit()
    assert [f["name"] for f in flags.definitions()] == ["kept"]
    assert flags.definition("kept")["enabled"] is False
    assert head(pg, pg_tables) == (last.version, last.token)
    assert messages.through_sentinel(flags) == [f"1:{last.version}:{last.token}".encode()]


def test_concurrent_writers_commit_in_version_order(pg: sa.Engine, pg_tables: FlagTables) -> None:
    """Writers in 4 threads get distinct versions 1..40 with no gap, and the audit trail's
    order is the version order (the bump serialises them)."""
    flags = Flags(pg, tables=pg_tables)
    start = threading.Barrier(4)

    def write(worker: int) -> None:
        start.wait()
        for i in range(10):
            flags.set_flag(f"w{worker}", enabled=i % 2 == 0, actor=f"t{worker}")

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    versions = [c.version for c in reversed(flags.history(limit=100))]
    assert versions == list(range(1, 41))
    assert head(pg, pg_tables)[0] == 40


def race_snapshot_reads(
    engine: sa.Engine,
    tables: FlagTables,
    *,
    reads: int,
    versions: int,
    seconds: float,
    pause: float = 0.0,
) -> tuple[int, set[int]]:
    """A writer keeps changing one flag's row and another flag's variant together in one
    transaction while snapshot reads run; every read must see both from the same commit
    (they live in different tables, read by different statements). Returns the reads
    done and the versions they saw."""
    flags = Flags(engine, tables=tables)

    def config(n: int) -> Flag:
        return Flag("b", enabled=True, variants={"n": n, "off": None}, on_variant="n")

    flags.set_flag("a", enabled=True)
    flags.set_flag(config(0))
    stop = threading.Event()

    def flip() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            with Session(engine) as session:
                flags.set_flag("a", enabled=n % 2 == 0, session=session)
                flags.set_flag(config(n), session=session)
                session.commit()

    thread = threading.Thread(target=flip)
    thread.start()
    seen_versions: set[int] = set()
    done = 0
    deadline = time.monotonic() + seconds
    try:
        while (done < reads or len(seen_versions) < versions) and time.monotonic() < deadline:
            done += 1
            document = flags._store.document()
            by_name = {f["name"]: f for f in document["flags"]}
            n = by_name["b"]["variants"]["n"]
            assert by_name["a"]["enabled"] is (n % 2 == 0), document["version"]
            seen_versions.add(document["version"])
            time.sleep(pause)
    finally:
        stop.set()
        thread.join(30)
    return done, seen_versions


def test_a_snapshot_read_is_one_committed_version(store: tuple[sa.Engine, FlagTables]) -> None:
    """Snapshot reads racing a busy writer each see one committed version."""
    engine, tables = store
    _, seen_versions = race_snapshot_reads(engine, tables, reads=150, versions=10, seconds=5)
    assert len(seen_versions) >= 3  # the reads really raced the writer


def test_the_locked_read_is_one_committed_version_too(
    store: tuple[sa.Engine, FlagTables], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer so busy that every optimistic read races it: the read that holds writers
    off (taken after the optimistic tries, here forced at once) is still one version,
    and it returns instead of giving up."""
    import veneer.flags._sync._store as store_module

    monkeypatch.setattr(store_module, "_READ_TRIES", 0)
    engine, tables = store
    # A pause between reads lets the writer commit: the locked read holds it off.
    reads, seen_versions = race_snapshot_reads(
        engine, tables, reads=30, versions=3, seconds=20, pause=0.01
    )
    assert reads >= 30
    assert len(seen_versions) >= 3, seen_versions  # the writer really ran between reads


def test_the_writer_refuses_a_session_of_the_wrong_kind(
    pg: sa.Engine, pg_tables: FlagTables
) -> None:
    """The sync client takes a Session; anything else is a clear error before any write."""
    flags = Flags(pg, tables=pg_tables)
    with pytest.raises(Exception, match="takes a session of type Session"):
        flags.set_flag("f", enabled=True, session=pg)
    assert head(pg, pg_tables)[0] == 0


def test_bad_client_options_are_refused_when_built(pg: sa.Engine, raw: redis.Redis) -> None:
    """Intervals must be positive numbers and cache= must be a veneer Cache."""
    with pytest.raises(ValueError, match="poll_interval"):
        Flags(pg, poll_interval=0)
    with pytest.raises(ValueError, match="check_interval"):
        Flags(pg, check_interval="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="takes a veneer Cache"):
        Flags(pg, raw)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="defaults"):
        Flags(pg, defaults={"x": Flag("y")})
