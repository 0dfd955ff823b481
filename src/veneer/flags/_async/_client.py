"""The asyncio flags client; ``flags/_sync/_client.py`` is generated from this file.

Evaluation (:class:`~veneer.flags._reader.FlagReader`) reads an in-process
snapshot. This module keeps that snapshot current:

- a writer commits a change (and the version bump) in the database, then
  invalidates the cached head and publishes ``version:token`` on the flags
  channel, after the commit;
- every process's subscriber hears it and its worker loads snapshot ``token``
  through the cache (``get_or_load``: one database read across all processes,
  then Redis), then swaps it in;
- while the subscriber is not live (Redis down or hung), the worker reads the
  database's state row every ``poll_interval`` and loads from the database when
  the token changed; while it is live, every ``check_interval`` (a lost message,
  a writer killed between its commit and its publication);
- on every (re)subscription the worker reads the state row at once: messages
  published while it was not subscribed are lost.

A loaded snapshot is kept in the last-known-good file, if one is configured,
which ``start()`` reads first when nothing else answers.
"""

from __future__ import annotations

import logging
import os
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from ..._async._access import AsyncRedisAccess
from ..._async._broadcast import AsyncBroadcastSubscriber
from ..._async._cache import AsyncCache
from ..._async._concurrency import Background, call_later, spawn
from ..._errors import ConfigurationError, RedisDown
from ..._fork import park
from .._commit import after_commit, sync_session_of
from .._errors import InvalidFlag
from .._evaluate import compile_snapshot
from .._file import read_snapshot_file, write_snapshot_file
from .._model import Flag, check_flag, flag_from_document
from .._reader import FlagReader
from .._sql import FlagChange, Head
from .._tables import FlagTables, flag_tables
from ._store import AsyncFlagStore
from ._wakeup import RESTARTS_IN_CHILD, Wakeup

__all__ = ["AsyncFlags"]

log = logging.getLogger("veneer")

_monotonic = time.monotonic
_MESSAGE_FORMAT = b"1"
_WARN_EVERY = 30.0


class _Superseded(Exception):
    """The database has moved past the token asked for: the document read is the newer
    one, handed back instead of being cached under the old token's key."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document


def encode_message(version: int, token: str) -> bytes:
    return b"%s:%d:%s" % (_MESSAGE_FORMAT, version, token.encode())


def decode_message(data: bytes) -> tuple[int, str] | None:
    try:
        fmt, version, token = bytes(data).split(b":")
        if fmt != _MESSAGE_FORMAT or not 0 < len(token) <= 32:
            return None
        return int(version), token.decode("ascii")
    except (ValueError, TypeError):
        return None


class AsyncFlags(FlagReader):
    """Feature flags whose truth is the database, evaluated in process.

    ``engine``: the ``AsyncEngine`` of the database holding :func:`flag_tables`
    (PostgreSQL or SQLite). ``cache``: an :class:`~veneer.AsyncCache` to propagate
    changes through Redis (None: every process polls the database every
    ``poll_interval``). ``defaults``: the values declared in code (a bool, any JSON
    value, or a :class:`Flag`), served for flags the snapshot does not have.
    ``snapshot_file``: the last-known-good file. Intervals are in seconds.

    Call :meth:`start` when the process starts (or use ``async with``); evaluate
    with :meth:`enabled`, :meth:`variant` and :meth:`value` (plain calls, no await);
    change flags with :meth:`set_flag` and :meth:`delete_flag`.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        cache: AsyncCache | None = None,
        /,
        *,
        tables: FlagTables | None = None,
        defaults: Mapping[str, Any] | None = None,
        poll_interval: float = 2.0,
        check_interval: float = 10.0,
        snapshot_file: str | os.PathLike[str] | None = None,
        snapshot_ttl: float = 3600.0,
        start_timeout: float = 5.0,
    ) -> None:
        for label, value in (
            ("poll_interval", poll_interval),
            ("check_interval", check_interval),
            ("snapshot_ttl", snapshot_ttl),
            ("start_timeout", start_timeout),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigurationError(f"{label}={value!r} must be a number of seconds > 0")
        if cache is not None and not isinstance(cache, AsyncCache):
            raise ConfigurationError(
                f"cache= takes a veneer AsyncCache, got {type(cache).__name__}"
            )
        try:
            super().__init__(defaults)
        except (InvalidFlag, ValueError) as exc:
            raise ConfigurationError(f"defaults: {exc}") from None
        self.tables = tables or flag_tables()
        self.poll_interval = float(poll_interval)
        self.check_interval = float(check_interval)
        self.snapshot_ttl = float(snapshot_ttl)
        self.start_timeout = float(start_timeout)
        self.snapshot_file = Path(snapshot_file) if snapshot_file is not None else None
        self._engine = engine
        self._store = AsyncFlagStore(engine, self.tables)
        self._cache = cache
        self._access: AsyncRedisAccess | None = None
        self._channel = ""
        prefix = "flags:" + self.tables.flags.name
        self._head_key = prefix + ":head"
        self._snapshot_prefix = prefix + ":snapshot:"
        if cache is not None:
            self._access = cache.redis_access("flags")
            self._channel = self._access.channel(self.tables.flags.name)
        self._worker: Background | None = None
        self._subscriber: AsyncBroadcastSubscriber | None = None
        self._wakeup = Wakeup()
        self._loaded = Wakeup()
        self._stopping = False
        self._wanted: tuple[int, str] | None = None
        self._retry: tuple[int, str] | None = None
        self._retry_at = 0.0
        self._resync = True
        self._unpublished: tuple[FlagChange, float] | None = None
        self._retry_scheduled = False
        self._last_warning = 0.0
        _live.add(self)

    def __repr__(self) -> str:
        snap = self._snapshot
        return (
            f"{type(self).__name__}(table={self.tables.flags.name!r}, source={snap.source!r}, "
            f"version={snap.version}, mode={self._mode!r})"
        )

    # ------------------------------------------------------------- lifecycle

    @property
    def namespace(self) -> str | None:
        """The namespace of the cache changes propagate through (None: polling only); a
        metrics label."""
        return None if self._cache is None else self._cache.options.namespace

    async def start(self, timeout: float | None = None) -> bool:
        """Load the first snapshot and follow changes from now on.

        Reads the snapshot file first (if any), then waits up to ``timeout``
        (``start_timeout``) for a snapshot from the cache or the database; the worker
        keeps trying after that. True if that snapshot arrived in time. Evaluations
        never wait: until then they read the file's snapshot or the defaults.
        """
        if self._worker is not None:
            return self._snapshot.source in ("cache", "database")
        self._stopping = False
        if self.snapshot_file is not None and self._snapshot.source == "defaults":
            found = read_snapshot_file(self.snapshot_file)
            if found is not None:
                self._swap(found)
        self._spawn_worker()
        await self._loaded.wait(self.start_timeout if timeout is None else timeout)
        return self._snapshot.source in ("cache", "database")

    def _spawn_worker(self) -> None:
        self._wakeup = Wakeup()
        self._loaded = Wakeup()
        self._mode = "poll"
        self._resync = True
        if self._access is not None:
            self._subscriber = self._access.subscriber(
                self._channel,
                on_message=self._on_message,
                on_live=self._on_live,
                on_lost=self._on_lost,
            )
            self._subscriber.start()
        self._worker = spawn(self._run, f"veneer-flags-{self.tables.flags.name}")

    async def close(self) -> None:
        """Stop following changes (evaluation goes on from the last snapshot)."""
        self._stopping = True
        self._wakeup.set()
        subscriber, self._subscriber = self._subscriber, None
        if subscriber is not None:
            await subscriber.close()
        worker, self._worker = self._worker, None
        if worker is not None:
            await worker.stop()
        self._mode = "stopped"

    async def __aenter__(self) -> AsyncFlags:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _after_fork(self) -> None:
        """In a forked child: the parent's worker, subscriber and pooled database
        connections are not this process's. The threaded client starts again at once."""
        running = self._worker is not None and not self._stopping
        if self._subscriber is not None:
            self._subscriber.after_fork()
        park((self._worker, self._subscriber))
        self._worker = None
        self._subscriber = None
        self._wakeup = Wakeup()
        self._loaded = Wakeup()
        self._mode = "stopped"
        self._unpublished = None  # the parent retries its own publications
        self._retry_scheduled = False
        # SQLAlchemy's advice for forked children: drop, never close, the parent's
        # pooled connections (they share sockets with the parent).
        getattr(self._engine, "sync_engine", self._engine).dispose(close=False)
        if running and RESTARTS_IN_CHILD:
            self._spawn_worker()

    # ---------------------------------------------------------------- worker

    def _on_message(self, data: bytes) -> None:
        heard = decode_message(data)
        if heard is None:
            return
        wanted = self._wanted
        if wanted is None or heard[0] > wanted[0]:
            self._wanted = heard
        self._wakeup.set()

    async def _on_live(self) -> None:
        self._resync = True
        self._wakeup.set()

    def _on_lost(self) -> None:
        self._resync = True  # a change may have been published while the link was dying
        self._wakeup.set()

    def _live_now(self) -> bool:
        return self._subscriber is not None and self._subscriber.live

    async def _run(self) -> None:
        try:
            await self._first_load()
        finally:
            self._loaded.set()
        next_check = _monotonic()
        while not self._stopping:
            self._mode = "push" if self._live_now() else "poll"
            deadline = next_check if self._retry is None else min(next_check, self._retry_at)
            wait = deadline - _monotonic()
            if not self._resync and self._wanted is None and wait > 0:
                await self._wakeup.wait(wait)
            if self._stopping:
                return
            try:
                await self._follow_wanted()
                if self._resync or _monotonic() >= next_check:
                    self._resync = False
                    # A failed check is tried again soon, whatever the mode.
                    ok = await self._check()
                    # Scheduled from the mode now, not the one before the wait: a link lost
                    # while waiting must not leave a check_interval-long wait behind.
                    live = self._live_now()
                    interval = self.check_interval if ok and live else self.poll_interval
                    next_check = _monotonic() + interval
            except Exception as exc:  # the worker must outlive any failure
                self._failure("flags worker step failed", exc)

    async def _follow_wanted(self) -> None:
        """Load the newest change heard of (or one that failed to load earlier)."""
        wanted, self._wanted = self._wanted, None
        retry = self._retry
        if retry is not None and (wanted is None or retry[0] > wanted[0]):
            if _monotonic() < self._retry_at and wanted is None:
                return
            wanted = retry
        self._retry = None
        if wanted is None or not self._newer(wanted):
            return
        try:
            await self._follow(wanted[1], authoritative=False)
        except Exception as exc:
            # Its snapshot is neither in Redis nor readable from the database yet (another
            # process may fill Redis): try again after poll_interval.
            self._failure(f"loading flags snapshot {wanted[1]} failed", exc)
            self._retry = wanted
            self._retry_at = _monotonic() + self.poll_interval

    def _confirmed_time(self) -> float | None:
        confirmed, subscriber = self._confirmed, self._subscriber
        if (
            confirmed is not None
            and subscriber is not None
            and subscriber.live
            and not self._resync
            and self._wanted is None
        ):
            # Subscribed, caught up, nothing heard since: every change committed before
            # the channel's last reply would have reached this process.
            return max(confirmed, subscriber.heard)
        return confirmed

    def _newer(self, wanted: tuple[int, str]) -> bool:
        snap = self._snapshot
        return wanted[1] != snap.token and (
            wanted[0] > snap.version or snap.source not in ("cache", "database")
        )

    async def _first_load(self) -> None:
        head: Head | None = None
        try:
            if self._cache is not None:
                cached: dict[str, Any] = await self._cache.get_or_load(
                    self._head_key, self._head_as_dict, ttl=self.snapshot_ttl
                )
                head = Head.from_dict(cached)
            else:
                head = await self._store.head()
        except Exception as exc:
            self._failure("no flags head from the cache or the database", exc)
            return
        try:
            await self._follow(head.token, authoritative=True)
        except Exception as exc:
            self._failure("loading the first flags snapshot failed", exc)

    async def _head_as_dict(self) -> dict[str, Any]:
        return (await self._store.head()).as_dict()

    async def _check(self) -> bool:
        """Read the database's head; load its snapshot if it is not ours. False if that
        failed (the database is out of reach)."""
        try:
            head = await self._store.head()
            if head.token == self._snapshot.token:
                self._confirmed = _monotonic()
                return True
            await self._follow(head.token, authoritative=True)
        except Exception as exc:
            self._failure("checking the flags version in the database failed", exc)
            return False
        return True

    async def _follow(self, token: str, *, authoritative: bool) -> None:
        """Load snapshot ``token`` (or the database's newer one) and swap it in.

        ``authoritative``: the token came from the database itself, so its snapshot
        replaces ours even with a lower version (the database was restored)."""
        document, source = await self._fetch(token)
        snapshot = compile_snapshot(document, source=source, loaded_at=time.time())
        current = self._snapshot
        if snapshot.token == current.token:
            self._confirmed = _monotonic()
            return
        if (
            not authoritative
            and snapshot.version <= current.version
            and current.source in ("cache", "database")
        ):
            return  # a late message about an older change
        self._swap(snapshot)
        self._confirmed = _monotonic()
        if snapshot.invalid:
            self._failure(
                f"stored flag(s) {', '.join(snapshot.invalid)} fail the check and are left "
                "out (served their defaults); rewrite them with set_flag",
                None,
            )
        if self.snapshot_file is not None:
            write_snapshot_file(self.snapshot_file, snapshot)

    async def _fetch(self, token: str) -> tuple[dict[str, Any], str]:
        if self._cache is None:
            return await self._store.document(), "database"
        from_database = False

        async def load() -> dict[str, Any]:
            nonlocal from_database
            document = await self._store.document()
            from_database = True
            if document["token"] != token:
                raise _Superseded(document)
            return document

        try:
            found: dict[str, Any] = await self._cache.get_or_load(
                self._snapshot_prefix + token, load, ttl=self.snapshot_ttl
            )
        except _Superseded as newer:
            return newer.document, "database"
        if not isinstance(found, dict) or found.get("token") != token:
            # Not what the key names (corrupt or foreign): ask the database itself.
            return await self._store.document(), "database"
        return found, "database" if from_database else "cache"

    def _failure(self, what: str, exc: BaseException | None) -> None:
        detail = what if exc is None else f"{what}: {exc.__class__.__name__}: {exc}"
        self._last_error = detail
        if exc is not None:
            self._load_failures += 1
        now = _monotonic()
        if now - self._last_warning >= _WARN_EVERY:
            self._last_warning = now
            log.warning("veneer.flags[%s]: %s", self.tables.flags.name, detail)

    # ---------------------------------------------------------------- writes

    async def set_flag(
        self,
        flag: Flag | Mapping[str, Any] | str,
        /,
        *,
        session: Any = None,
        actor: str | None = None,
        **fields: Any,
    ) -> FlagChange:
        """Write a flag; every process sees it after the commit, none after a rollback.

        ``flag``: a :class:`Flag` (or its document) written whole, or a name with the
        ``fields`` to change (``set_flag("new-checkout", enabled=False)``; a new flag
        if there is none). ``session``: an ``AsyncSession`` whose transaction the
        change joins (the application commits it); without one, the change commits
        on its own. ``actor``: who, for the audit trail. A definition that cannot be
        evaluated raises :class:`InvalidFlag` and writes nothing.
        """
        if isinstance(flag, str):
            name = flag
            if not fields:
                raise InvalidFlag(f"set_flag({name!r}) with no field to change")

            def change(old: dict[str, Any] | None) -> dict[str, Any] | None:
                merged = dict(old or {"name": name})
                merged.update(fields)
                return check_flag(flag_from_document(merged))

        else:
            if fields:
                raise InvalidFlag("give either a whole Flag or a name with fields, not both")
            document = check_flag(flag)
            name = document["name"]

            def change(old: dict[str, Any] | None) -> dict[str, Any] | None:
                return document

        return await self._write(name, change, session=session, actor=actor)

    async def delete_flag(
        self, name: str, /, *, session: Any = None, actor: str | None = None
    ) -> FlagChange:
        """Delete a flag (its callers get their defaults); raises :class:`FlagNotFound`."""
        return await self._write(name, lambda old: None, session=session, actor=actor)

    async def _write(
        self, name: str, change: Any, *, session: Any, actor: str | None
    ) -> FlagChange:
        if session is None:
            async with self._engine.begin() as conn:
                record = await self._store.write(conn, name, change, actor=actor)
            await self._publish(record)
            return record
        if not isinstance(session, AsyncSession):
            raise ConfigurationError(
                f"AsyncFlags.set_flag(session=...) takes a session of type AsyncSession, got "
                f"{type(session).__name__} (the other front takes the other kind)"
            )
        sync_session = sync_session_of(session)
        record = await self._store.write(session, name, change, actor=actor)

        async def publish() -> None:
            await self._publish(record)

        after_commit(sync_session, id(self), publish)
        return record

    async def _publish(self, record: FlagChange) -> None:
        """After a commit: drop the cached head, tell every process, and this one."""
        wanted = self._wanted
        if wanted is None or record.version > wanted[0]:
            self._wanted = (record.version, record.token)
        self._wakeup.set()
        if self._cache is None or self._access is None:
            return
        try:
            await self._cache.invalidate(self._head_key)
        except Exception as exc:  # the cache queues what it cannot apply; never fail here
            self._failure("invalidating the cached flags head failed", exc)
        await self._send(record)

    async def _send(self, record: FlagChange) -> None:
        assert self._access is not None
        try:
            await self._access.publish(self._channel, encode_message(record.version, record.token))
        except RedisDown as exc:
            self._publish_failures += 1
            pending = self._unpublished
            if pending is None or record.version >= pending[0].version:
                since = pending[1] if pending is not None else _monotonic()
                self._unpublished = (record, since)
            self._failure("publishing a flags change failed (retried; readers poll)", exc)
            if not self._retry_scheduled:
                # Retried in the background, started client or not: readers that are
                # still subscribed would otherwise wait for their check_interval.
                self._retry_scheduled = True
                call_later(self.poll_interval, self._retry_publication)
            return
        pending = self._unpublished
        if pending is not None and pending[0].version <= record.version:
            self._unpublished = None

    async def _retry_publication(self) -> None:
        self._retry_scheduled = False
        pending = self._unpublished
        if pending is None or self._stopping:
            return
        record, since = pending
        if _monotonic() - since > self.check_interval:
            self._unpublished = None  # every reader has checked the database by now
            return
        await self._send(record)

    # ----------------------------------------------------------------- reads

    async def definitions(self) -> list[dict[str, Any]]:
        """Every stored flag definition, from the database."""
        return await self._store.definitions()

    async def definition(self, name: str, /) -> dict[str, Any]:
        """One stored definition, from the database; raises :class:`FlagNotFound`."""
        return await self._store.definition(name)

    async def history(self, name: str | None = None, /, *, limit: int = 50) -> list[FlagChange]:
        """The audit trail, newest first: who changed what, when, from what to what."""
        if limit < 1:
            raise ValueError(f"limit={limit} must be >= 1")
        return await self._store.history(name, limit)


_live: weakref.WeakSet[AsyncFlags] = weakref.WeakSet()


def _restart_in_child() -> None:
    for client in list(_live):
        try:
            client._after_fork()
        except Exception:
            log.exception("veneer.flags: resetting %r after fork failed", client)


# Registered after veneer._fork's handler (imported above through the cache), so the
# cache's connections are reset before a client starts again on them.
os.register_at_fork(after_in_child=_restart_in_child)
