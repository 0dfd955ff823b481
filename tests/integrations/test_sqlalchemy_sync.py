"""After-commit invalidation with SQLAlchemy's sync Session."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from servers import RedisServer
from veneer import Cache, ConfigurationError
from veneer._txn import open_marks
from veneer.integrations.sqlalchemy import CacheInvalidator

from .conftest import eventually, read_name

MakeCache = Callable[..., Cache]


def value_key(namespace: str, key: str) -> str:
    return "{" + namespace + ":" + key + "}"


class Loads:
    """A loader of a user's committed name that counts its calls."""

    def __init__(self, engine: sa.Engine, table: sa.Table, uid: int = 1) -> None:
        self.engine, self.table, self.uid, self.calls = engine, table, uid, 0

    def __call__(self) -> str | None:
        self.calls += 1
        return read_name(self.engine, self.table, self.uid)


def rename(session: Session, table: sa.Table, uid: int, name: str) -> None:
    session.execute(sa.update(table).where(table.c.id == uid).values(name=name))


@pytest.fixture
def maker(pg_engine: sa.Engine) -> sessionmaker[Session]:
    return sessionmaker(pg_engine)


def test_commit_invalidates_before_commit_returns(
    pg_engine: sa.Engine, users: sa.Table, make_cache: MakeCache, maker: sessionmaker[Session]
) -> None:
    """After commit() returns, this process reads the new value; another cache soon does too."""
    cache, other = make_cache(), make_cache()
    load = Loads(pg_engine, users)
    assert cache.get_or_load("user:1", load) == "old"
    assert other.get_or_load("user:1", load) == "old"  # now in the other cache's L1
    invalidator = CacheInvalidator(cache).install(maker)
    sent = cache.stats().invalidations_sent
    with maker() as session:
        rename(session, users, 1, "new")
        invalidator.invalidate(session, "user:1")
        assert cache.stats().invalidations_sent == sent  # nothing before the commit
        session.commit()
    assert cache.stats().invalidations_sent == sent + 1
    assert cache.get_or_load("user:1", load) == "new"
    eventually(lambda: other.get_or_load("user:1", load) == "new", timeout=5.0)


def test_rollback_sends_no_invalidation(
    pg_engine: sa.Engine,
    users: sa.Table,
    make_cache: MakeCache,
    maker: sessionmaker[Session],
    raw: redis.Redis,
    namespace: str,
) -> None:
    """A rolled-back transaction (or one closed without commit) invalidates nothing."""
    cache = make_cache()
    load = Loads(pg_engine, users)
    cache.get_or_load("user:1", load)
    invalidator = CacheInvalidator(cache).install(maker)
    with maker() as session:
        rename(session, users, 1, "new")
        invalidator.invalidate(session, "user:1")
        invalidator.invalidate_tag(session, "users")
        invalidator.invalidate_all(session)
        session.rollback()
    with maker() as session:
        invalidator.invalidate(session, "user:1")
        # closed without commit
    assert cache.stats().invalidations_sent == 0
    assert raw.exists(value_key(namespace, "user:1"))
    assert cache.get_or_load("user:1", load) == "old"
    assert load.calls == 1
    assert open_marks.get() == frozenset()


def test_failed_commit_sends_no_invalidation(
    users: sa.Table, make_cache: MakeCache, maker: sessionmaker[Session]
) -> None:
    """A transaction whose statement fails and is rolled back invalidates nothing."""
    cache = make_cache()
    invalidator = CacheInvalidator(cache).install(maker)
    with pytest.raises(sa.exc.IntegrityError), maker.begin() as session:
        invalidator.invalidate(session, "user:1")
        session.execute(sa.insert(users).values(id=1, name="duplicate"))
    assert cache.stats().invalidations_sent == 0
    assert open_marks.get() == frozenset()


def test_savepoint_rollback_drops_only_its_own_marks(
    pg_engine: sa.Engine,
    users: sa.Table,
    make_cache: MakeCache,
    maker: sessionmaker[Session],
    raw: redis.Redis,
    namespace: str,
) -> None:
    """Marks of a rolled-back savepoint are dropped; the outer transaction's are applied."""
    cache = make_cache()
    for uid in (1, 2):
        cache.get_or_load(f"user:{uid}", Loads(pg_engine, users, uid))
    invalidator = CacheInvalidator(cache).install(maker)
    with maker() as session:
        rename(session, users, 1, "new")
        invalidator.invalidate(session, "user:1")
        nested = session.begin_nested()
        rename(session, users, 2, "gone")
        invalidator.invalidate(session, "user:2")
        assert set(invalidator.pending(session)) == {
            (namespace, "k", "user:1"),
            (namespace, "k", "user:2"),
        }
        nested.rollback()
        assert invalidator.pending(session) == [(namespace, "k", "user:1")]
        session.commit()
    assert cache.stats().invalidations_sent == 1
    assert not raw.exists(value_key(namespace, "user:1"))
    assert raw.exists(value_key(namespace, "user:2"))
    assert read_name(pg_engine, users, 2) == "two"


def test_released_savepoint_marks_are_applied_at_the_outer_commit(
    pg_engine: sa.Engine,
    users: sa.Table,
    make_cache: MakeCache,
    maker: sessionmaker[Session],
    raw: redis.Redis,
    namespace: str,
) -> None:
    """Releasing a savepoint applies nothing yet; its marks go with the outer commit."""
    cache = make_cache()
    cache.get_or_load("user:2", Loads(pg_engine, users, 2))
    invalidator = CacheInvalidator(cache).install(maker)
    with maker() as session:
        with session.begin_nested(), session.begin_nested():
            rename(session, users, 2, "new")
            invalidator.invalidate(session, "user:2")
            invalidator.invalidate_tag(session, "users")
        assert cache.stats().invalidations_sent == 0
        assert raw.exists(value_key(namespace, "user:2"))
        assert set(invalidator.pending(session)) == {
            (namespace, "k", "user:2"),
            (namespace, "t", "users"),
        }
        session.commit()
    assert cache.stats().invalidations_sent == 2
    assert not raw.exists(value_key(namespace, "user:2"))


def test_released_savepoint_marks_die_with_an_outer_rollback(
    users: sa.Table, make_cache: MakeCache, maker: sessionmaker[Session]
) -> None:
    """A released savepoint's marks are rolled back with the transaction that owns them."""
    cache = make_cache()
    invalidator = CacheInvalidator(cache).install(maker)
    with maker() as session:
        with session.begin_nested():
            invalidator.invalidate(session, "user:2")
        session.rollback()
    assert cache.stats().invalidations_sent == 0
    assert open_marks.get() == frozenset()


def test_savepoint_rollback_keeps_a_mark_the_parent_also_holds(
    pg_engine: sa.Engine, users: sa.Table, make_cache: MakeCache, maker: sessionmaker[Session]
) -> None:
    """When parent and savepoint mark the same key, the savepoint's rollback keeps the
    parent's mark, its bypass included."""
    cache = make_cache()
    invalidator = CacheInvalidator(cache).install(maker)
    with maker() as session:
        rename(session, users, 1, "new")
        invalidator.invalidate(session, "user:1")
        with session.begin_nested() as nested:
            invalidator.invalidate(session, "user:1")
            nested.rollback()
        assert open_marks.get() == {(cache.options.namespace, "k", "user:1")}
        session.commit()
    assert cache.stats().invalidations_sent == 1
    assert open_marks.get() == frozenset()


def test_a_marked_key_bypasses_the_cache_only_in_its_own_context(
    pg_engine: sa.Engine, users: sa.Table, make_cache: MakeCache, maker: sessionmaker[Session]
) -> None:
    """Inside the open transaction a marked key reads the transaction's own write; another
    thread still reads the cached value until the commit."""
    cache = make_cache()
    committed = Loads(pg_engine, users)
    assert cache.get_or_load("user:1", committed) == "old"
    invalidator = CacheInvalidator(cache).install(maker)
    with maker() as session:
        rename(session, users, 1, "new")
        invalidator.invalidate(session, "user:1")

        def own_view() -> str | None:
            return session.execute(sa.select(users.c.name).where(users.c.id == 1)).scalar()

        assert cache.get_or_load("user:1", own_view) == "new"
        assert cache.get("user:1") is None  # the cached "old" is not served here
        seen: list[str | None] = []
        reader = threading.Thread(target=lambda: seen.append(cache.get_or_load("user:1", own_view)))
        reader.start()
        reader.join(10)
        assert seen == ["old"]
        session.commit()
    assert open_marks.get() == frozenset()
    assert cache.get_or_load("user:1", committed) == "new"


def test_marks_before_the_first_statement_start_the_transaction(
    pg_engine: sa.Engine, users: sa.Table, make_cache: MakeCache, maker: sessionmaker[Session]
) -> None:
    """Marking first, writing later works: the mark belongs to the transaction that commits."""
    cache = make_cache()
    invalidator = CacheInvalidator(cache).install(maker)
    with maker() as session:
        invalidator.invalidate(session, "user:1", "user:2")
        rename(session, users, 1, "new")
        session.commit()
    assert cache.stats().invalidations_sent == 2


def test_installation_is_scoped_to_the_given_sessionmaker(
    pg_engine: sa.Engine, make_cache: MakeCache, maker: sessionmaker[Session]
) -> None:
    """Sessions of other makers are not watched, and marking on them is refused."""
    cache = make_cache()
    invalidator = CacheInvalidator(cache).install(maker)
    other = sessionmaker(pg_engine)
    with other() as session:
        with pytest.raises(ConfigurationError, match="install"):
            invalidator.invalidate(session, "k")
        session.commit()
    single = Session(pg_engine)
    invalidator.install(single)
    invalidator.invalidate(single, "k")
    single.commit()
    single.close()
    assert cache.stats().invalidations_sent == 1
    invalidator.uninstall(maker)
    with maker() as session, pytest.raises(ConfigurationError):
        invalidator.invalidate(session, "k")


def test_commit_with_redis_down_is_not_an_error_and_queues_the_invalidation(
    own_redis: RedisServer, users: sa.Table, make_cache: MakeCache, maker: sessionmaker[Session]
) -> None:
    """Redis unreachable at commit: the commit succeeds promptly, the invalidation is queued
    by the cache and applied when Redis is back."""
    cache = make_cache(url=own_redis.url)
    invalidator = CacheInvalidator(cache).install(maker)
    own_redis.kill()
    started = time.monotonic()
    with maker() as session:
        rename(session, users, 1, "new")
        invalidator.invalidate(session, "user:1")
        session.commit()
    assert time.monotonic() - started < 5.0
    assert cache.stats().invalidations_pending == 1
    own_redis.start()
    eventually(lambda: cache.stats().invalidations_pending == 0, timeout=15.0)


def test_marking_a_finished_transaction_is_an_error(
    make_cache: MakeCache, maker: sessionmaker[Session]
) -> None:
    """A mark made after the commit (in an after_commit hook) would never be applied: refused."""
    cache = make_cache()
    invalidator = CacheInvalidator(cache).install(maker)
    errors: list[Exception] = []

    def too_late(session: Session) -> None:
        try:
            invalidator.invalidate(session, "k")
        except sa.exc.InvalidRequestError as exc:
            errors.append(exc)

    sa.event.listen(maker, "after_commit", too_late)
    with maker() as session:
        session.execute(sa.text("SELECT 1"))
        session.commit()
    assert len(errors) == 1
    assert "no longer active" in str(errors[0])


def test_install_on_a_scoped_session(
    pg_engine: sa.Engine, make_cache: MakeCache, maker: sessionmaker[Session]
) -> None:
    """A scoped_session is watched through its session factory."""
    from sqlalchemy.orm import scoped_session

    cache = make_cache()
    registry = scoped_session(maker)
    invalidator = CacheInvalidator(cache).install(registry)
    invalidator.invalidate(registry(), "k")
    registry.commit()
    registry.remove()
    assert cache.stats().invalidations_sent == 1
