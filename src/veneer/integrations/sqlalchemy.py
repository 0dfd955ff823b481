"""After-commit invalidation for SQLAlchemy 2.x ``Session`` and ``AsyncSession``.

Code that changes data marks what the change makes stale::

    invalidator = CacheInvalidator(cache).install(SessionLocal)   # a sessionmaker
    with SessionLocal() as session:
        session.execute(update(User).where(User.id == 1).values(name="x"))
        invalidator.invalidate(session, "user:1")
        session.commit()            # "user:1" is invalidated before commit() returns

Marks belong to the innermost open transaction (a savepoint, or the outermost
transaction). A released savepoint hands its marks to its parent; a savepoint
rolled back drops its own marks only; the outermost commit applies them; a
rollback (or a close without commit) applies nothing. While a key is marked, this
context's reads of it bypass the cache, so the transaction reads its own writes.

SQLAlchemy 2.1 fires ``before_commit`` and ``after_commit`` for savepoint releases
as well as for the outermost commit, and ``after_transaction_end`` for every
transaction however it ended (``after_soft_rollback`` comes after it). So the
decision is taken in ``after_transaction_end``: a transaction whose
``after_commit`` was seen committed; any other ended without committing. The
outermost transaction's connection is back in the pool by then.

With ``outbox=`` (durable mode), marks are also written as rows of the outbox
table in the same database transaction: when the outermost commit begins (and
when a savepoint is released into it during one), and at once for marks made
while it commits. After the commit the invalidator applies them and deletes the
rows Redis applied; :class:`~veneer.integrations.outbox.OutboxRelay` applies the rest.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, SessionTransaction, scoped_session, sessionmaker

from .._async._cache import AsyncCache
from .._errors import ConfigurationError
from .._sync._cache import Cache
from .._txn import Mark
from ._holds import hold, release
from .outbox import delete_rows, write_rows

try:  # SQLAlchemy 2.1 name; 2.0 only has the old one.
    from sqlalchemy.util.concurrency import await_ as _await
except ImportError:  # pragma: no cover - SQLAlchemy 2.0
    from sqlalchemy.util.concurrency import await_only as _await

try:
    from sqlalchemy.util.concurrency import in_greenlet as _in_greenlet
except ImportError:  # pragma: no cover - very old 2.0 releases

    def _in_greenlet() -> bool:
        return False


if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

__all__ = ["CacheInvalidator"]

log = logging.getLogger("veneer")

T = TypeVar("T")


@dataclass(slots=True, eq=False)
class _Marks:
    """What one open transaction will invalidate if it commits."""

    marks: dict[Mark, None] = field(default_factory=dict)
    committed: bool = False
    committing: bool = False
    """The outermost commit has begun: new marks are written to the outbox at once."""
    unwritten: list[Mark] = field(default_factory=list)
    rows: dict[Mark, list[int]] = field(default_factory=dict)
    engine: Engine | None = None


class CacheInvalidator:
    """Invalidates ``cache`` entries after the database transaction that changed them commits.

    Install it on the sessions it should watch (:meth:`install`), then mark keys,
    tags or the whole namespace with :meth:`invalidate`, :meth:`invalidate_tag`
    and :meth:`invalidate_all`. Works with a sync :class:`~veneer.Cache` and an
    :class:`~veneer.AsyncCache` (then with ``AsyncSession``: the invalidation is
    awaited through SQLAlchemy's greenlet bridge, before ``await
    session.commit()`` returns).

    ``outbox``: a table from :func:`veneer.integrations.outbox.outbox_table` turns on
    durable mode (see the module documentation).
    """

    def __init__(self, cache: Cache | AsyncCache, /, *, outbox: sa.Table | None = None) -> None:
        if not isinstance(cache, (Cache, AsyncCache)):
            raise TypeError(f"expected a veneer Cache or AsyncCache, got {cache!r}")
        self.cache = cache
        self.namespace = cache.options.namespace
        self.outbox = outbox
        self._async = isinstance(cache, AsyncCache)
        self._lock = threading.Lock()
        self._states: weakref.WeakKeyDictionary[SessionTransaction, _Marks] = (
            weakref.WeakKeyDictionary()
        )
        self._classes: list[type[Session]] = []
        self._instances: weakref.WeakSet[Session] = weakref.WeakSet()

    # ------------------------------------------------------------ installing

    def install(self, target: Any, /) -> CacheInvalidator:
        """Watch the sessions of ``target``; returns self.

        ``target``: a ``sessionmaker``, ``async_sessionmaker``, ``scoped_session``,
        ``Session`` subclass, or one ``Session`` / ``AsyncSession``. Only those
        sessions are watched (``Session`` itself watches every session: do that
        only on purpose). For an ``async_sessionmaker`` whose sessions use the plain
        ``Session`` class, a private subclass is configured on it
        (``sync_session_class``) so that no other maker is affected.
        """
        listen_on = self._listen_target(target)
        if listen_on in self._classes or (
            isinstance(listen_on, Session) and listen_on in self._instances
        ):
            return self
        for name, handler in self._handlers():
            # First in line for after_commit: flagging the commit cannot fail, and a
            # hook before it that raises must not make a commit look rolled back.
            event.listen(listen_on, name, handler, insert=name == "after_commit")
        if isinstance(listen_on, Session):
            self._instances.add(listen_on)
        else:
            self._classes.append(listen_on)
        return self

    def uninstall(self, target: Any, /) -> None:
        """Stop watching ``target`` (what was passed to :meth:`install`)."""
        listen_on = self._listen_target(target, configure=False)
        for name, handler in self._handlers():
            if event.contains(listen_on, name, handler):
                event.remove(listen_on, name, handler)
        if isinstance(listen_on, Session):
            self._instances.discard(listen_on)
        elif listen_on in self._classes:
            self._classes.remove(listen_on)

    def _handlers(self) -> list[tuple[str, Callable[..., None]]]:
        handlers: list[tuple[str, Callable[..., None]]] = [
            ("after_commit", self._on_after_commit),
            ("after_transaction_end", self._on_transaction_end),
        ]
        if self.outbox is not None:
            handlers.append(("before_commit", self._on_before_commit))
        return handlers

    def _listen_target(self, target: Any, *, configure: bool = True) -> Any:
        if isinstance(target, scoped_session):
            target = target.session_factory
        if isinstance(target, sessionmaker):
            return target.class_
        if isinstance(target, Session) or (
            isinstance(target, type) and issubclass(target, Session)
        ):
            return target
        async_types = _async_types()
        if async_types is not None:
            async_session_cls, async_maker_cls = async_types
            if isinstance(target, async_session_cls):
                return target.sync_session
            if isinstance(target, async_maker_cls):
                cls = target.kw.get("sync_session_class")
                if cls is None or cls is Session:
                    if not configure:
                        return Session
                    cls = type("VeneerSession", (Session,), {})
                    target.configure(sync_session_class=cls)
                return cls
            if isinstance(target, type) and issubclass(target, async_session_cls):
                cls = target.sync_session_class
                if cls is Session:
                    raise ConfigurationError(
                        f"{target.__name__}.sync_session_class is Session itself: installing "
                        "on it would watch every session. Set a Session subclass as its "
                        "sync_session_class, or install on an async_sessionmaker."
                    )
                return cls
        raise TypeError(
            "install() takes a sessionmaker, async_sessionmaker, scoped_session, Session "
            f"subclass, Session or AsyncSession; got {target!r}"
        )

    # --------------------------------------------------------------- marking

    def invalidate(self, session: Any, key: str, /, *keys: str) -> None:
        """Invalidate ``key`` (and ``keys``) when ``session``'s transaction commits."""
        self._mark(session, [(self.namespace, "k", k) for k in (key, *keys)])

    def invalidate_tag(self, session: Any, tag: str, /, *tags: str) -> None:
        """Invalidate every entry tagged ``tag`` (and ``tags``) when the transaction commits."""
        self._mark(session, [(self.namespace, "t", t) for t in (tag, *tags)])

    def invalidate_all(self, session: Any, /) -> None:
        """Invalidate the cache's whole namespace when the transaction commits."""
        self._mark(session, [(self.namespace, "e", "")])

    def pending(self, session: Any, /) -> list[Mark]:
        """The marks the open transactions of ``session`` will apply if they all commit."""
        sync_session, _ = _sync_session(session)
        trans = sync_session.get_nested_transaction() or sync_session.get_transaction()
        found: dict[Mark, None] = {}
        with self._lock:
            while trans is not None:
                state = self._states.get(trans)
                if state is not None:
                    found.update(state.marks)
                trans = trans.parent
        return list(found)

    def _mark(self, session: Any, marks: list[Mark]) -> None:
        sync_session, via_async = _sync_session(session)
        if not self._watches(sync_session):
            raise ConfigurationError(
                "this session is not watched by the CacheInvalidator: call "
                "invalidator.install(...) on its sessionmaker (or the session) first"
            )
        if self._async and not via_async and not _in_greenlet():
            raise ConfigurationError(
                "an AsyncCache invalidator needs an AsyncSession (its invalidations are "
                "awaited through SQLAlchemy's greenlet bridge); use a sync Cache with Session"
            )
        trans = sync_session.get_nested_transaction() or sync_session.get_transaction()
        if trans is None:
            trans = _autobegin(sync_session)
        elif not trans.is_active:
            # Committed (an after_commit hook) or failed: a mark here would never be
            # applied, which must not pass silently.
            raise sa.exc.InvalidRequestError(
                "the session's transaction is no longer active (committed, or failed and "
                "awaiting rollback): mark invalidations before the commit, or call the "
                "cache's invalidate() directly"
            )
        with self._lock:
            state = self._states.get(trans)
            if state is None:
                state = self._states[trans] = _Marks()
            fresh = [m for m in dict.fromkeys(marks) if m not in state.marks]
            for mark in fresh:
                state.marks[mark] = None
            if self.outbox is not None:
                state.unwritten.extend(fresh)
        hold(fresh)
        if fresh and state.committing:
            # The outbox was already written for this commit: add these rows now.
            self._write(trans, state)

    def _watches(self, session: Session) -> bool:
        return session in self._instances or any(isinstance(session, c) for c in self._classes)

    # ---------------------------------------------------------------- events

    def _on_before_commit(self, session: Session) -> None:
        if session.get_nested_transaction() is not None:
            # A savepoint is being released (or the outermost commit starts with a
            # savepoint still open): its marks are written when they reach the root.
            return
        root = session.get_transaction()
        if root is None:  # pragma: no cover - SQLAlchemy always has one here
            return
        with self._lock:
            state = self._states.get(root)
            if state is None:
                state = self._states[root] = _Marks()
            state.committing = True
        self._write(root, state)

    def _on_after_commit(self, session: Session) -> None:
        # Only the committing transaction is open here: inner ones were committed
        # first, so it is the innermost savepoint or, with none, the root.
        trans = session.get_nested_transaction() or session.get_transaction()
        with self._lock:
            state = self._states.get(trans) if trans is not None else None
            if state is not None:
                state.committed = True

    def _on_transaction_end(self, session: Session, trans: SessionTransaction) -> None:
        parent = trans.parent
        with self._lock:
            state = self._states.pop(trans, None)
            if state is None:
                return
            if parent is None or (trans.nested and not state.committed):
                merged_into = None
            else:
                # A released savepoint (or a flush's subtransaction): the parent now
                # owns these marks.
                merged_into = self._merge(state, parent)
        if merged_into is None:
            # The outermost transaction, or a savepoint rolled back.
            try:
                if parent is None and state.committed:
                    self._deliver(state)
            finally:
                release(state.marks)
            return
        shared, target = merged_into
        release(shared)
        if self.outbox is not None and parent is not None and parent.parent is None:
            # Back in the outermost transaction's scope: its rows can be written now,
            # exactly where they belong (its rollback takes them back).
            self._write(parent, target)

    def _merge(self, state: _Marks, parent: SessionTransaction) -> tuple[list[Mark], _Marks]:
        """Give a released transaction's marks to its parent; returns the marks both held
        (the child's holds on them end) and the parent's state."""
        target = self._states.get(parent)
        if target is None:
            target = self._states[parent] = _Marks()
        shared = [m for m in state.marks if m in target.marks]
        target.unwritten.extend(m for m in state.unwritten if m not in target.marks)
        for mark in state.marks:
            target.marks[mark] = None
        for mark, ids in state.rows.items():
            target.rows.setdefault(mark, []).extend(ids)
        target.engine = target.engine or state.engine
        return shared, target

    # ------------------------------------------------------------- delivering

    def _write(self, trans: SessionTransaction, state: _Marks) -> None:
        """Insert the state's unwritten marks into the outbox, in ``trans`` (the outermost
        transaction, which owns them)."""
        assert self.outbox is not None
        with self._lock:
            todo, state.unwritten = state.unwritten, []
        if not todo:
            return
        # The transaction's own connection: Session.connection() refuses to run
        # inside a savepoint's context manager exit, where releases are seen.
        conn = trans.connection(None, clause=sa.insert(self.outbox))
        written = write_rows(conn, self.outbox, todo)
        with self._lock:
            for row_id, mark in written:
                state.rows.setdefault(mark, []).append(row_id)
            state.engine = conn.engine

    def _deliver(self, state: _Marks) -> None:
        """After the outermost commit: apply every mark; drop the outbox rows Redis applied."""
        applied_rows: list[int] = []
        for mark in state.marks:
            if self._send(mark):
                applied_rows.extend(state.rows.get(mark, ()))
        if applied_rows and state.engine is not None and self.outbox is not None:
            try:
                delete_rows(state.engine, self.outbox, applied_rows)
            except SQLAlchemyError as exc:
                # The relay applies them again and deletes them: at least once.
                log.warning("veneer: applied outbox rows not deleted (%s); the relay will", exc)

    def _send(self, mark: Mark) -> bool:
        _namespace, kind, name = mark
        cache = self.cache
        try:
            if kind == "k":
                outcome: bool | Awaitable[bool] = cache.invalidate(name)
            elif kind == "t":
                outcome = cache.invalidate_tag(name)
            else:
                outcome = cache.invalidate_all()
            if self._async:
                return self._wait(cast(Awaitable[bool], outcome))
            return cast(bool, outcome)
        except Exception:
            log.exception("veneer: invalidation %s:%r after commit failed", kind, name)
            return False

    def _wait(self, awaitable: Awaitable[T]) -> T:
        if not _in_greenlet():
            close = getattr(awaitable, "close", None)
            if close is not None:
                close()
            raise ConfigurationError(
                "an AsyncCache invalidation can only run inside AsyncSession.commit()"
            )
        return _await(awaitable)


def _sync_session(session: Any) -> tuple[Session, bool]:
    """The sync ``Session`` behind ``session``, and whether it is an AsyncSession's."""
    if isinstance(session, Session):
        return session, False
    async_types = _async_types()
    if async_types is not None and isinstance(session, async_types[0]):
        return session.sync_session, True
    raise TypeError(f"expected a Session or an AsyncSession, got {session!r}")


def _autobegin(session: Session) -> SessionTransaction:
    """Start the transaction the session would start on its first statement.

    Marking is not I/O: no connection is taken (and an AsyncSession need not be
    awaited). SQLAlchemy has no public spelling of autobegin, so this uses the
    one it calls itself, and fails clearly when that changes.
    """
    begin = getattr(session, "_autobegin_t", None)
    if begin is None:  # pragma: no cover - guards a SQLAlchemy change
        raise ConfigurationError(
            "no transaction is open on this session: begin one before marking invalidations"
        )
    return cast(SessionTransaction, begin())


def _async_types() -> tuple[type[AsyncSession], type[async_sessionmaker[Any]]] | None:
    try:
        from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
    except ImportError:  # greenlet missing: no asyncio extension, so no async sessions
        return None
    return AsyncSession, async_sessionmaker
