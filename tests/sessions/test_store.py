"""The session store's promises with Redis and PostgreSQL up: security defaults, timeouts
from stored timestamps, no write amplification, clear errors for bad input."""

from __future__ import annotations

import base64
import hashlib
import hmac
import string
import time
from collections.abc import Callable, Iterator

import pytest
import redis
import sqlalchemy as sa

from sessions.conftest import StatementCounter
from veneer import ConfigurationError
from veneer.sessions import (
    Session,
    SessionDataTooLarge,
    SessionStore,
    SessionTables,
    UnencodableSessionData,
    tables_ddl,
)
from veneer.sessions._sync import _store as sync_store_module
from veneer.sessions._tokens import TokenDigest, new_token


class Clock:
    """The store's wall clock, moved by the test instead of waited for."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(sync_store_module, "_wall", c)
    return c


def all_rows(engine: sa.Engine, tables: SessionTables) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(sa.select(tables.sessions))]
        rows += [tuple(r) for r in conn.execute(sa.select(tables.users))]
    return rows


def all_redis_bytes(client: redis.Redis) -> list[bytes]:
    """Every key and every string value in the server (SCAN is fine in a test)."""
    found: list[bytes] = []
    for key in client.scan_iter(count=1000):
        found.append(key)
        if client.type(key) == b"string":
            found.append(client.get(key) or b"")
    return found


def test_create_load_save_round_trip(make_store: Callable[..., SessionStore]) -> None:
    """A session created with data loads with that data; a changed session saves once."""
    store = make_store()
    token, created = store.create(42, {"theme": "dark"})
    assert created.user_id == "42" and created.data == {"theme": "dark"}
    loaded = store.load(token)
    assert loaded is not None and loaded.id == created.id and loaded.data == {"theme": "dark"}
    loaded.data["cart"] = [1, 2]
    assert store.save(loaded) is True
    assert store.save(loaded) is False  # unchanged since the last save: nothing written
    again = store.load(token)
    assert again is not None and again.data == {"theme": "dark", "cart": [1, 2]}
    assert "dark" not in repr(again) and token not in repr(again) and token not in repr(store)


def test_tokens_are_256_bit_and_only_their_digest_is_stored(
    make_store: Callable[..., SessionStore],
    engine: sa.Engine,
    tables: SessionTables,
    raw: redis.Redis,
) -> None:
    """Tokens carry 256 random bits; neither the database nor Redis holds a token's text
    or bytes, only a digest (HMAC-SHA256 with a secret key, SHA-256 without)."""
    plain = make_store()
    keyed = make_store(secret=b"0123456789abcdef-secret", key_prefix="ks:")
    tokens = []
    for store in (plain, keyed):
        for uid in (1, 2, None):
            token, session = store.create(uid, {"n": 1})
            assert len(base64.urlsafe_b64decode(token + "=")) == 32
            assert store.load(token) is not None  # fills Redis with the cached row
            tokens.append((store, token, session))
    dumped_db = repr(all_rows(engine, tables)).encode()
    dumped_redis = b"".join(all_redis_bytes(raw))
    assert dumped_redis  # the cache did write: the check below has something to search
    for store, token, session in tokens:
        token_bytes = base64.urlsafe_b64decode(token + "=")
        for blob in (dumped_db, dumped_redis):
            assert token.encode() not in blob
            assert token_bytes not in blob
        sha = hashlib.sha256(token.encode()).hexdigest()
        assert (session.id == sha) is (store is plain)
        if store is keyed:
            mac = hmac.new(b"0123456789abcdef-secret", token.encode(), "sha256").hexdigest()
            assert session.id == mac
        assert session.id.encode() in dumped_db


def test_unknown_forged_or_malformed_tokens_never_become_sessions(
    make_store: Callable[..., SessionStore], engine: sa.Engine, tables: SessionTables
) -> None:
    """A well-formed token nobody was given, or junk, loads as None and creates no row."""
    store = make_store()
    forged = base64.urlsafe_b64encode(b"\x01" * 32).decode().rstrip("=")
    for token in (forged, "", "short", "x" * 43 + "!", "é" * 43, "a" * 4096):
        assert store.load(token) is None
        assert store.rotate(token) is None
        assert store.revoke(token) is False
    assert all_rows(engine, tables) == []
    assert store.stats().malformed >= 5


@pytest.mark.parametrize(
    "secret", [None, b"s" * 16, b"k" * 64, b"long" * 17, "a text secret of 25 chars"]
)
def test_digests_are_sha256_or_hmac_sha256_and_only_of_well_formed_tokens(
    secret: bytes | str | None,
) -> None:
    """The id of a token is its hex SHA-256, or its HMAC-SHA256 under the secret (any key
    length, the same as the standard library's); a string with one character outside
    base64url, of another length, or not a string, has none."""
    id_of = TokenDigest(secret).id_of
    alphabet = string.ascii_letters + string.digits + "-_"
    tokens = [new_token() for _ in range(20)] + [alphabet[:43], alphabet[-43:]]
    for token in tokens:
        if secret is None:
            expected = hashlib.sha256(token.encode()).hexdigest()
        else:
            key = secret.encode() if isinstance(secret, str) else secret
            expected = hmac.new(key, token.encode(), "sha256").hexdigest()
        assert id_of(token) == expected
    good = tokens[0]
    outside = [chr(c) for c in range(256) if chr(c) not in alphabet] + ["\u2028", "\U0001f600"]
    for char in outside:
        for position in (0, 21, 42):
            assert id_of(good[:position] + char + good[position + 1 :]) is None, repr(char)
    for junk in ("", good[:42], good + "A", good + "=", good.encode(), None, 43, [good]):
        assert id_of(junk) is None


def test_every_load_gets_a_private_copy_of_the_data(
    make_store: Callable[..., SessionStore],
) -> None:
    """Loads served from this process's L1 each get their own data: changing one (nested
    lists and dicts too) changes neither the cached copy nor another request's."""
    store = make_store()
    token, _ = store.create(1, {"cart": [1, 2], "prefs": {"theme": "dark"}})
    first = store.load(token)  # fills L1
    hits = store._cache.stats().l1_hits
    second, third = store.load(token), store.load(token)
    assert store._cache.stats().l1_hits == hits + 2  # both from L1: the path under test
    assert first is not None and second is not None and third is not None
    second.data["cart"].append(3)
    second.data["prefs"]["theme"] = "light"
    second.data["new"] = True
    assert third.data == {"cart": [1, 2], "prefs": {"theme": "dark"}}
    fourth = store.load(token)
    assert fourth is not None and fourth.data == {"cart": [1, 2], "prefs": {"theme": "dark"}}
    assert fourth.data is not third.data and fourth.data["cart"] is not third.data["cart"]
    assert store.save(third) is False  # unchanged: its copy was never touched


def test_rotate_kills_the_old_token_and_keeps_the_data(
    make_store: Callable[..., SessionStore],
) -> None:
    """rotate() gives a new token for the same data; the old token is refused at once, in
    this process and in another one that had it cached."""
    store, other = make_store(), make_store()
    token, _ = store.create(None, {"cart": [3]})
    assert other.load(token) is not None  # cached in the other process's L1
    new_token, rotated = store.rotate(token, user_id=7) or ("", None)
    assert rotated is not None and rotated.user_id == "7" and rotated.data == {"cart": [3]}
    assert new_token != token
    assert store.load(token) is None
    deadline = time.monotonic() + 2
    while other.load(token) is not None:
        assert time.monotonic() < deadline, "the other process still accepts the old token"
        time.sleep(0.005)
    loaded = other.load(new_token)
    assert loaded is not None and loaded.user_id == "7"


def test_user_cannot_change_without_a_new_token(make_store: Callable[..., SessionStore]) -> None:
    """Saving a session with another user is refused: a login must rotate the token."""
    store = make_store()
    token, _ = store.create(None, {})
    session = store.load(token)
    assert session is not None
    session.user_id = "admin"
    with pytest.raises(ValueError, match="rotate"):
        store.save(session)
    reloaded = store.load(token)
    assert reloaded is not None and reloaded.user_id is None


def test_revoke_user_logs_out_every_device(make_store: Callable[..., SessionStore]) -> None:
    """sessions_of lists the user's devices; revoke one, then revoke_user logs out the rest."""
    store = make_store()
    tokens = [store.create("ann", {"device": i})[0] for i in range(3)]
    other_token, _ = store.create("bob", {})
    devices = store.sessions_of("ann")
    assert sorted(s.data["device"] for s in devices) == [0, 1, 2]
    assert store.revoke(devices[0]) is True
    assert len(store.sessions_of("ann")) == 2
    assert store.revoke_user("ann") == 2
    assert [store.load(t) for t in tokens] == [None, None, None]
    assert store.sessions_of("ann") == []
    assert store.load(other_token) is not None
    fresh, _ = store.create("ann", {})  # a login after the revocation is alive
    assert store.load(fresh) is not None


def test_a_login_racing_revoke_user_is_dead(
    make_store: Callable[..., SessionStore], engine: sa.Engine, tables: SessionTables
) -> None:
    """A session issued under an older revocation stamp is refused even if its row survived."""
    store = make_store()
    token, session = store.create("carl", {})
    with engine.begin() as conn:  # what a concurrent revoke_user commits around the login
        conn.execute(sa.insert(tables.users).values(user_id="carl", generation=1))
    store._cache.invalidate(store.options.key_prefix + session.id)
    assert store.load(token) is None


def test_idle_and_absolute_timeouts_use_stored_timestamps(
    make_store: Callable[..., SessionStore], clock: Clock
) -> None:
    """The cached copy lives 300 s in Redis, yet a session idle past idle_timeout, or older
    than absolute_timeout however active, is refused."""
    store = make_store(idle_timeout=100, absolute_timeout=300, touch_interval=10)
    idle_token, _ = store.create(1, {})
    busy_token, _ = store.create(2, {})
    assert store.load(idle_token) is not None
    for _ in range(29):  # active every 9 s for 261 s: each load within the idle timeout
        clock.offset += 9
        assert store.load(busy_token) is not None
    assert store.load(idle_token) is None  # idle for 261 s
    clock.offset += 40  # 301 s after creation
    assert store.load(busy_token) is None
    assert store.stats().expired == 2


def test_read_only_requests_make_no_database_writes(
    make_store: Callable[..., SessionStore], engine: sa.Engine
) -> None:
    """1,000 read-only loads of a session make 0 database writes and 1 database read."""
    store = make_store()
    token, _ = store.create(5, {"a": 1})
    counter = StatementCounter(engine)
    for _ in range(1000):
        assert store.load(token) is not None
    assert counter.writes == 0
    assert counter.reads == 1


def test_touches_are_coalesced_to_one_write_per_interval(
    make_store: Callable[..., SessionStore], engine: sa.Engine, clock: Clock
) -> None:
    """Two processes loading one session 1,000 times over 10 simulated minutes write its
    last-seen at most once per touch_interval (60 s): 10 row writes, not 1,000, and each
    process sends at most one UPDATE per interval."""
    stores = [make_store(), make_store()]
    token, _ = stores[0].create(9, {})
    counter = StatementCounter(engine)
    for i in range(1000):
        clock.offset += 0.6
        assert stores[i % 2].load(token) is not None
    touches = sum(s.stats().touches for s in stores)
    assert 9 <= touches <= 10, touches
    assert counter.writes <= 2 * 11, counter.statements.count("UPDATE")


def test_bad_data_gets_a_clear_error_and_corrupts_nothing(
    make_store: Callable[..., SessionStore],
) -> None:
    """Oversized or unencodable data raises before anything is written; the stored
    session keeps its data."""
    store = make_store(max_data_bytes=1024)
    with pytest.raises(SessionDataTooLarge, match="max_data_bytes=1024"):
        store.create(1, {"blob": "x" * 2000})
    with pytest.raises(UnencodableSessionData, match="cannot be encoded"):
        store.create(1, {"when": object()})
    token, _ = store.create(1, {"ok": True})
    session = store.load(token)
    assert session is not None
    session.data["blob"] = "x" * 2000
    with pytest.raises(SessionDataTooLarge):
        store.save(session)
    session.data = {"z": 1j}
    with pytest.raises(UnencodableSessionData):
        store.save(session)
    session.data = ["not", "a", "dict"]  # type: ignore[assignment]
    with pytest.raises(UnencodableSessionData, match="must be a dict"):
        store.save(session)
    for bad in (3.5, b"id", True):
        with pytest.raises(TypeError):
            store.create(bad, {})  # type: ignore[arg-type]
    reloaded = store.load(token)
    assert reloaded is not None and reloaded.data == {"ok": True}


def test_bad_options_are_refused_with_what_to_change(
    make_store: Callable[..., SessionStore],
) -> None:
    """Options are validated when the store is built."""
    for options, message in (
        ({"touch_interval": 600, "idle_timeout": 60}, "touch_interval"),
        ({"idle_timeout": -1}, "idle_timeout"),
        ({"data_format": "pickle"}, "data_format"),
        ({"secret": "short"}, "16 bytes"),
        ({"max_data_bytez": 1}, "unknown option"),
    ):
        with pytest.raises(ConfigurationError, match=message):
            make_store(**options)


def test_data_formats_json_and_msgpack(make_store: Callable[..., SessionStore]) -> None:
    """msgpack (the default) keeps bytes values; JSON stores them as base64 text."""
    packed = make_store(key_prefix="mp:")  # msgpack is the default
    token, _ = packed.create(1, {"raw": b"\x00\xff"})
    loaded = packed.load(token)
    assert loaded is not None and loaded.data == {"raw": b"\x00\xff"}
    as_json = make_store(data_format="json")
    token, _ = as_json.create(1, {"raw": b"\x00\xff"})
    loaded = as_json.load(token)
    assert loaded is not None and loaded.data == {"raw": "AP8="}


def test_ddl_names_the_documented_columns() -> None:
    """tables_ddl() gives the statements docs/sessions.md documents, for both dialects."""
    for dialect in ("postgresql", "sqlite"):
        ddl = tables_ddl(dialect)
        for column in ("id VARCHAR(64)", "user_id VARCHAR(255)", "generation BIGINT", "expires_at"):
            assert column in ddl
        assert "CREATE INDEX veneer_sessions_expires_at_idx" in ddl
    with pytest.raises(ValueError, match="postgresql"):
        tables_ddl("oracle")


@pytest.fixture
def sqlite_engine(tmp_path: object) -> Iterator[sa.Engine]:
    eng = sa.create_engine(f"sqlite:///{tmp_path}/sessions.db")
    yield eng
    eng.dispose()


def test_the_embedded_default_works_on_sqlite(
    make_store: Callable[..., SessionStore], sqlite_engine: sa.Engine
) -> None:
    """The same store on SQLite: create, rotate, revoke_user (its upsert) and stats."""
    from veneer.sessions import create_tables, session_tables

    tables = create_tables(sqlite_engine, session_tables())
    create_tables(sqlite_engine, tables)  # idempotent
    store = make_store(engine=sqlite_engine, tables=tables, key_prefix="lite:")
    token, _ = store.create(3, {"a": 1})
    rotated = store.rotate(token)
    assert rotated is not None and store.load(token) is None
    assert store.load(rotated[0]) is not None
    assert store.revoke_user(3) == 1 and store.revoke_user(3) == 0
    assert store.load(rotated[0]) is None


def test_sessions_on_a_redis_cluster(
    redis_cluster: object, engine: sa.Engine, tables: SessionTables, namespace: str
) -> None:
    """On the 3-shard cluster fixture the store behaves as on one Redis."""
    from veneer import Cache

    url = redis_cluster.url  # type: ignore[attr-defined]
    a, b = Cache.from_url(url, namespace=namespace), Cache.from_url(url, namespace=namespace)
    with a, b:
        assert a.ready(5) and b.ready(5)
        one, two = SessionStore(engine, a, tables=tables), SessionStore(engine, b, tables=tables)
        tokens = [one.create(i % 3, {"i": i})[0] for i in range(30)]
        assert all(two.load(t) is not None for t in tokens)  # spread over the shards
        assert all(two.load(t) is not None for t in tokens)  # now from L1
        assert one.revoke_user(1) == 10
        deadline = time.monotonic() + 2
        while any(two.load(t) is not None for t in tokens[1::3]):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert all(two.load(t) is not None for t in tokens[0::3])


def test_both_fronts_have_the_same_methods() -> None:
    """SessionStore and AsyncSessionStore expose the same public methods."""
    from veneer.sessions import AsyncSessionStore

    def public(cls: type) -> set[str]:
        return {n for n in dir(cls) if not n.startswith("_")}

    assert public(SessionStore) == public(AsyncSessionStore)
    assert {
        "create",
        "load",
        "save",
        "rotate",
        "revoke",
        "revoke_user",
        "sessions_of",
        "touch",
    } <= public(SessionStore)
    assert isinstance(Session.__slots__, tuple)
