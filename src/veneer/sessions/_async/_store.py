"""The asyncio session store; ``sessions/_sync/_store.py`` is generated from this file.

Rows are the truth: every write commits in the database first, and the cache
entry of a changed session is invalidated after the commit (through
``veneer.integrations.sqlalchemy``). Reads go through the cache (L1, then
Redis, then one lease-guarded database read per key).
"""

from __future__ import annotations

import functools
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from ..._async._cache import AsyncCache
from ..._async._concurrency import SourceBulkhead
from ..._errors import ConfigurationError
from ...integrations.sqlalchemy import CacheInvalidator
from .._model import (
    DataCodec,
    Record,
    Session,
    SessionStats,
    StoreOptions,
    expiry_of,
    idle_only,
    is_expired,
    touch_due,
)
from .._sql import (
    DATABASE_ERRORS,
    bump_generation,
    check_dialect,
    current_generation,
    record_of,
    select_record,
    translated,
    unavailable,
    user_id_of,
)
from .._tables import SessionTables, session_tables
from .._tokens import TokenDigest, new_token

__all__ = ["AsyncSessionStore"]

_monotonic = time.monotonic
_wall = time.time
_KEEP: Any = object()
_ABSENT: Any = object()  # not in this process's L1
_BOOK_LIMIT = 10_000


class AsyncSessionStore:
    """Sessions in a SQL table, read through an :class:`~veneer.AsyncCache`.

    ``engine``: the ``AsyncEngine`` of the database holding :func:`session_tables`
    (PostgreSQL or SQLite). ``cache``: the cache sessions are read through; its
    namespace should be one sessions do not share with keys of the same prefix.
    ``secret``: a key (at least 16 bytes) to store HMAC-SHA256 digests of tokens
    instead of plain SHA-256. ``outbox``: the outbox table of
    :mod:`veneer.integrations.outbox`, to make invalidations durable.
    Options (seconds): ``idle_timeout``, ``absolute_timeout``, ``touch_interval``,
    ``revocation_check``, ``cache_ttl``; ``max_data_bytes``, ``data_format``
    (``"msgpack"`` or ``"json"``), ``key_prefix``.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        cache: AsyncCache,
        /,
        *,
        tables: SessionTables | None = None,
        secret: bytes | str | None = None,
        outbox: sa.Table | None = None,
        **options: Any,
    ) -> None:
        try:
            self.options = StoreOptions(**options)
        except TypeError:
            known = sorted(StoreOptions.__dataclass_fields__)
            raise ConfigurationError(
                f"unknown option(s) {', '.join(sorted(options))}; known: {', '.join(known)}"
            ) from None
        if not isinstance(cache, AsyncCache):
            raise TypeError(f"expected a veneer AsyncCache, got {type(cache).__name__}")
        try:
            self._digest = TokenDigest(secret)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        self.tables = tables or session_tables()
        self._engine = engine
        self._dialect = check_dialect(engine.dialect.name)
        self._cache = cache
        self._codec = DataCodec(self.options.data_format, self.options.max_data_bytes)
        self._maker = async_sessionmaker(engine, expire_on_commit=False)
        self._invalidator = CacheInvalidator(cache, outbox=outbox).install(self._maker)
        self._stats = SessionStats()
        self._prefix = self.options.key_prefix
        # Bound once: the load path is a few microseconds, attribute chains show in it.
        self._id_of = self._digest.id_of
        self._get_local = cache.get_local
        self._get_or_load = cache.get_or_load
        self._idle_timeout = self.options.idle_timeout
        self._absolute_timeout = self.options.absolute_timeout
        self._hears_invalidations = functools.partial(cache.ready, 0)
        self._decode = self._codec.decode
        self._cache_ttl = self.options.cache_ttl
        self._touch_interval = self.options.touch_interval
        # Per session id: when the database was last asked while this process could not
        # hear invalidations, and what it said (the row, or None when it is gone).
        self._checks: dict[str, tuple[float, Record | None]] = {}
        self._touched: dict[str, float] = {}
        self._unsure_until = 0.0
        # The store's own reads past the cache (re-checks, expiry confirmations) are
        # bounded like the cache's loads, so an outage cannot pile them onto the database.
        self._bulkhead = SourceBulkhead(
            cache.options.source_concurrency, cache.options.source_queue_timeout
        )

    def __repr__(self) -> str:
        return (
            f"AsyncSessionStore(table={self.tables.sessions.name!r}, "
            f"namespace={self._cache.options.namespace!r}, keyed={self._digest.keyed})"
        )

    # ------------------------------------------------------------------ reads

    async def load(self, token: str, /) -> Session | None:
        """The live session ``token`` names, or None (unknown, malformed, revoked, expired).

        Raises :class:`SourceUnavailable` only when the session is in no cache tier and
        the database is down. A due last-seen update is written here, at most once
        per ``touch_interval``; its failure is counted, never raised.
        """
        session_id = self._id_of(token)
        stats = self._stats
        if session_id is None:
            stats.malformed += 1
            return None
        stats.loads += 1
        key = self._prefix + session_id
        # An L1 hit needs no loader bound and nothing awaited: get_local, then the full
        # read. Either way the cache counts one hit or one miss.
        record: Any = self._get_local(key, _ABSENT)
        if record is _ABSENT:
            record = await self._read(key, session_id)
            deaf = record is not None and not await self._hears_invalidations()
        else:
            # L1 serves a copy as fresh only while its invalidation channel vouches for
            # it (for h after the last pong, no longer once the channel is lost): a hit
            # means this process heard every invalidation up to then. ready(0) adds
            # nothing here, and is the dearest call of the hit in the asyncio shell.
            deaf = False
        if deaf or (
            record is not None and self._unsure_until and _monotonic() < self._unsure_until
        ):
            # This process may have missed an invalidation: ask the database (bounded).
            if deaf:
                self._unsure_until = max(self._unsure_until, await self._unsure_deadline())
            record = await self._recheck(session_id, record)
        if record is None:
            stats.loads_refused += 1
            return None
        now = _wall()
        # is_expired(record, now, self.options), inlined: a call and three option
        # lookups are a tenth of an L1 load.
        if (
            now >= record.expires_at
            or now - record.created_at >= self._absolute_timeout
            or now - record.last_seen >= self._idle_timeout
        ):
            record = await self._confirm_expiry(session_id, record, now)
            if record is None:
                stats.expired += 1
                stats.loads_refused += 1
                return None
        # A fresh decode of the stored bytes is this request's own copy: cheaper than a
        # deep copy of a shared dict, and nothing of it is shared with another load.
        session = Session._from_record(session_id, record, self._decode(record.data))
        if now - record.last_seen >= self._touch_interval:
            await self._touch_quietly(session, now)
        return session

    async def sessions_of(self, user_id: str | int, /) -> list[Session]:
        """The user's live sessions (a device list), newest activity first, from the database."""
        uid = user_id_of(user_id)
        s, u = self.tables.sessions.c, self.tables.users.c
        query = (
            sa.select(
                s.id,
                s.user_id,
                s.generation,
                s.data,
                s.created_at,
                s.last_seen,
                s.expires_at,
                sa.func.coalesce(u.generation, 0).label("current"),
            )
            .select_from(self.tables.sessions.outerjoin(self.tables.users, u.user_id == s.user_id))
            .where(s.user_id == uid, s.expires_at > _wall())
            .order_by(s.last_seen.desc())
        )
        async with (
            translated("list the user's sessions", self._stats),
            self._engine.connect() as conn,
        ):
            rows = (await conn.execute(query)).all()
        now = _wall()
        found = []
        for row in rows:
            record = record_of(row)
            if record is not None and not is_expired(record, now, self.options):
                found.append(self._session(row.id, record))
        return found

    @property
    def namespace(self) -> str:
        """The namespace of the cache this store reads through (a metrics label)."""
        return self._cache.options.namespace

    def stats(self) -> SessionStats:
        """A copy of this store's counters (the cache's own are in ``cache.stats()``)."""
        s = self._stats
        return SessionStats(**{name: getattr(s, name) for name in s.__dataclass_fields__})

    # ----------------------------------------------------------------- writes

    async def create(
        self, user_id: str | int | None, data: dict[str, Any] | None = None, /
    ) -> tuple[str, Session]:
        """A new session (``user_id`` None: anonymous): its token (for the client) and itself.

        The token is returned once and stored nowhere; raises
        :class:`SessionDataTooLarge` or :class:`UnencodableSessionData` for bad data
        and :class:`SourceUnavailable` when the database is down.
        """
        uid = None if user_id is None else user_id_of(user_id)
        payload = dict(data) if data else {}
        encoded = self._codec.encode(payload)
        token = new_token()
        session_id = self._digest.id_of(token)
        assert session_id is not None
        now = _wall()
        expires = expiry_of(now, now, self.options)
        async with translated("create a session", self._stats), self._maker() as db, db.begin():
            generation = 0
            if uid is not None:
                found = (await db.execute(current_generation(self.tables, uid))).scalar()
                generation = int(found or 0)
            await db.execute(
                sa.insert(self.tables.sessions).values(
                    id=session_id,
                    user_id=uid,
                    generation=generation,
                    data=encoded,
                    created_at=now,
                    last_seen=now,
                    expires_at=expires,
                )
            )
        self._stats.created += 1
        session = Session(
            session_id,
            uid,
            payload,
            created_at=now,
            last_seen=now,
            expires_at=expires,
            generation=generation,
            encoded=encoded,
        )
        return token, session

    async def save(self, session: Session, /) -> bool:
        """Store the session's data if it changed; True when a row was written.

        An unchanged session writes nothing. A session revoked since it was loaded
        is not brought back (False). The user cannot change here: a login must get
        a new token, see :meth:`rotate`.
        """
        if session.user_id != session._user_at_load:
            raise ValueError(
                "a session's user cannot change in place (that would let a token issued "
                "before the login act after it): call rotate(token, user_id=...) instead"
            )
        encoded = self._codec.encode(session.data)
        if encoded == session._encoded:
            self._stats.saves_unchanged += 1
            return False
        now = _wall()
        expires = expiry_of(session.created_at, now, self.options)
        sessions = self.tables.sessions
        async with translated("save the session", self._stats), self._maker() as db, db.begin():
            result = await db.execute(
                sa.update(sessions)
                .where(sessions.c.id == session.id)
                .values(data=encoded, last_seen=now, expires_at=expires)
            )
            written = bool(result.rowcount)  # type: ignore[attr-defined]
            if written:
                self._invalidator.invalidate(db, self._prefix + session.id)
        if written:
            self._stats.saves += 1
            session._encoded = encoded
            session.last_seen = now
            session.expires_at = expires
        return written

    async def rotate(
        self, token: str, /, *, user_id: str | int | None = _KEEP
    ) -> tuple[str, Session] | None:
        """A new token for the same data; the old token is dead when this returns.

        Call it at login (``user_id=`` the user: the absolute timeout restarts) and
        on privilege changes (the user stays, and so does the absolute deadline).
        None when ``token`` names no live session.
        """
        old_id = self._digest.id_of(token)
        if old_id is None:
            self._stats.malformed += 1
            return None
        new_uid: Any = user_id if user_id is _KEEP or user_id is None else user_id_of(user_id)
        fresh_token = new_token()
        new_id = self._digest.id_of(fresh_token)
        assert new_id is not None
        now = _wall()
        sessions = self.tables.sessions
        async with translated("rotate the session", self._stats), self._maker() as db, db.begin():
            query = select_record(self.tables, old_id)
            if self._dialect == "postgresql":
                query = query.with_for_update(of=sessions)
            record = record_of((await db.execute(query)).first())
            if record is None or is_expired(record, now, self.options):
                return None
            uid = record.user_id if new_uid is _KEEP else new_uid
            generation = record.generation
            created = record.created_at
            if uid != record.user_id:
                created = now
                generation = 0
                if uid is not None:
                    found = (await db.execute(current_generation(self.tables, uid))).scalar()
                    generation = int(found or 0)
            expires = expiry_of(created, now, self.options)
            await db.execute(sa.delete(sessions).where(sessions.c.id == old_id))
            await db.execute(
                sa.insert(sessions).values(
                    id=new_id,
                    user_id=uid,
                    generation=generation,
                    data=record.data,
                    created_at=created,
                    last_seen=now,
                    expires_at=expires,
                )
            )
            self._invalidator.invalidate(db, self._prefix + old_id)
        self._forget(old_id)
        self._stats.rotations += 1
        session = Session(
            new_id,
            uid,
            self._codec.decode(record.data),
            created_at=created,
            last_seen=now,
            expires_at=expires,
            generation=generation,
            encoded=record.data,
        )
        return fresh_token, session

    async def revoke(self, token: str | Session, /) -> bool:
        """Log one session out (by its token, or a :class:`Session` from a device list).

        Committed in the database, then invalidated in every process's cache before
        this returns. True when a session was deleted.
        """
        session_id = token.id if isinstance(token, Session) else self._digest.id_of(token)
        if session_id is None:
            self._stats.malformed += 1
            return False
        sessions = self.tables.sessions
        async with translated("revoke the session", self._stats), self._maker() as db, db.begin():
            result = await db.execute(sa.delete(sessions).where(sessions.c.id == session_id))
            self._invalidator.invalidate(db, self._prefix + session_id)
        self._forget(session_id)
        deleted = bool(result.rowcount)  # type: ignore[attr-defined]
        self._stats.revocations += deleted
        return deleted

    async def revoke_user(self, user_id: str | int, /) -> int:
        """Log the user out everywhere; returns how many sessions were deleted.

        The user's revocation stamp advances in the same transaction, so a login
        committing concurrently with this call is dead too.
        """
        uid = user_id_of(user_id)
        sessions = self.tables.sessions
        async with (
            translated("revoke the user's sessions", self._stats),
            self._maker() as db,
            db.begin(),
        ):
            await db.execute(bump_generation(self.tables, self._dialect, uid))
            ids = list(
                (await db.execute(sa.select(sessions.c.id).where(sessions.c.user_id == uid)))
                .scalars()
                .all()
            )
            await db.execute(sa.delete(sessions).where(sessions.c.user_id == uid))
            if ids:
                self._invalidator.invalidate(db, *[self._prefix + i for i in ids])
        for session_id in ids:
            self._forget(session_id)
        self._stats.revocations += len(ids)
        return len(ids)

    async def touch(self, session: Session, /) -> bool:
        """Record activity now if the last record is ``touch_interval`` old; True if written.

        :meth:`load` already does this; call it for activity that does not load.
        """
        now = _wall()
        if not touch_due(session.last_seen, now, self.options):
            return False
        with translated("touch the session", self._stats):
            return await self._touch(session, now)

    # --------------------------------------------------------------- plumbing

    def _session(self, session_id: str, record: Record) -> Session:
        return Session._from_record(session_id, record, self._decode(record.data))

    async def _read(self, key: str, session_id: str) -> Record | None:
        """The cached record past L1: Redis, then one lease-guarded database read."""
        try:
            record: Record | None = await self._get_or_load(
                key,
                functools.partial(self._read_row, session_id),
                ttl=self._cache_ttl,
                type=Record,
            )
        except DATABASE_ERRORS as exc:
            # In no cache tier and the database is down: say so, do not guess.
            raise unavailable("load the session", exc, self._stats) from exc
        return record

    async def _read_row(self, session_id: str) -> Record | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select_record(self.tables, session_id))).first()
        return record_of(row)

    async def _unsure_deadline(self) -> float:
        """Until when this process must ask the database before trusting the cache.

        While the cache does not hear invalidations (Redis down, hung, or
        reconnecting), and for its ``restart_warmup`` after (a restarted Redis lets
        it serve in-process copies while keys refill).
        """
        if await self._cache.ready(0):
            return self._unsure_until
        return _monotonic() + self._cache.options.restart_warmup

    async def _recheck(self, session_id: str, record: Record) -> Record | None:
        """The row as the database has it, asked at most every ``revocation_check`` seconds."""
        now = _monotonic()
        checked = self._checks.get(session_id)
        if checked is not None and now - checked[0] < self.options.revocation_check:
            return checked[1]
        if not await self._bulkhead.acquire():
            self._stats.checks_shed += 1
            return record if checked is None else checked[1]
        self._stats.revocation_checks += 1
        try:
            fresh = await self._read_row(session_id)
        except DATABASE_ERRORS:
            # Both tiers of truth are out: the cache's copy stands (within its max_stale).
            self._stats.database_errors += 1
            fresh = record
        finally:
            self._bulkhead.release()
        if fresh is None:
            self._stats.revoked_by_check += 1
        if len(self._checks) >= _BOOK_LIMIT:
            self._checks.clear()
        self._checks[session_id] = (now, fresh)
        return fresh

    async def _confirm_expiry(self, session_id: str, record: Record, now: float) -> Record | None:
        """An idle-expired copy may predate a touch whose invalidation was lost: ask the row."""
        if not idle_only(record, now, self.options) or not await self._bulkhead.acquire():
            return None
        try:
            fresh = await self._read_row(session_id)
        except DATABASE_ERRORS:
            self._stats.database_errors += 1
            return None
        finally:
            self._bulkhead.release()
        if fresh is None or is_expired(fresh, now, self.options):
            return None
        await self._cache.invalidate(self._prefix + session_id)
        return fresh

    async def _touch_quietly(self, session: Session, now: float) -> None:
        last = self._touched.get(session.id)
        if last is not None and now - last < self.options.touch_interval:
            return  # this process already wrote (or tried) within the interval
        try:
            await self._touch(session, now)
        except DATABASE_ERRORS:
            self._stats.database_errors += 1
            self._stats.touch_failures += 1

    async def _touch(self, session: Session, now: float) -> bool:
        if len(self._touched) >= _BOOK_LIMIT:
            self._touched.clear()
        self._touched[session.id] = now
        sessions = self.tables.sessions
        expires = expiry_of(session.created_at, now, self.options)
        async with self._maker() as db, db.begin():
            # The condition makes concurrent touches from several processes one write.
            result = await db.execute(
                sa.update(sessions)
                .where(
                    sessions.c.id == session.id,
                    sessions.c.last_seen < now - self.options.touch_interval,
                )
                .values(last_seen=now, expires_at=expires)
            )
            written = bool(result.rowcount)  # type: ignore[attr-defined]
            if written:
                self._invalidator.invalidate(db, self._prefix + session.id)
        if written:
            self._stats.touches += 1
            session.last_seen = now
            session.expires_at = expires
        return written

    def _forget(self, session_id: str) -> None:
        self._checks.pop(session_id, None)
        self._touched.pop(session_id, None)
