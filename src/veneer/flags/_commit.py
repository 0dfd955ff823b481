"""Run a callback after a SQLAlchemy session's outermost transaction commits, never otherwise.

``set_flag(..., session=...)`` writes in the application's transaction; the
change may be published only once that transaction has committed, and not at
all if it rolls back. SQLAlchemy 2.1 fires ``after_commit`` for savepoint
releases as well as for the outermost commit, so (as
``veneer.integrations.sqlalchemy`` does) the decision is taken in
``after_transaction_end`` of the outermost transaction: it committed if its
``after_commit`` was seen.

Callbacks are keyed: a second ``set_flag`` by the same client in the same
transaction replaces the first one's callback (one publication, of the last
version). An asyncio callback returns an awaitable, which is awaited through
SQLAlchemy's greenlet bridge before ``await session.commit()`` returns.
"""

from __future__ import annotations

import inspect
import logging
import threading
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

try:  # SQLAlchemy 2.1 name; 2.0 only has the old one.
    from sqlalchemy.util.concurrency import await_ as _await
except ImportError:  # pragma: no cover - SQLAlchemy 2.0
    from sqlalchemy.util.concurrency import await_only as _await

try:
    from sqlalchemy.util.concurrency import in_greenlet as _in_greenlet
except ImportError:  # pragma: no cover - very old 2.0 releases

    def _in_greenlet() -> bool:
        return False


__all__ = ["after_commit", "sync_session_of"]

log = logging.getLogger("veneer")


@dataclass(slots=True, eq=False)
class _Pending:
    callbacks: dict[Hashable, Callable[[], Any]] = field(default_factory=dict)
    committed: bool = False


_lock = threading.Lock()
_pending: weakref.WeakKeyDictionary[SessionTransaction, _Pending] = weakref.WeakKeyDictionary()
_watched: weakref.WeakSet[Session] = weakref.WeakSet()


def sync_session_of(session: Any) -> Session:
    """The ORM ``Session`` behind ``session`` (itself, or an ``AsyncSession``'s)."""
    if isinstance(session, Session):
        return session
    inner = getattr(session, "sync_session", None)
    if isinstance(inner, Session):
        return inner
    raise TypeError(f"session= takes a SQLAlchemy Session or AsyncSession, got {session!r}")


def after_commit(session: Session, key: Hashable, callback: Callable[[], Any]) -> None:
    """Call ``callback()`` once the outermost transaction now open on ``session`` commits."""
    root = session.get_transaction()
    if root is None or not root.is_active:
        raise RuntimeError("after_commit() needs an open, active transaction on the session")
    with _lock:
        if session not in _watched:
            event.listen(session, "after_commit", _on_commit)
            event.listen(session, "after_transaction_end", _on_end)
            _watched.add(session)
        _pending.setdefault(root, _Pending()).callbacks[key] = callback


def _on_commit(session: Session) -> None:
    # Only the committing transaction is still open: with no savepoint, the outermost.
    if session.get_nested_transaction() is not None:
        return
    root = session.get_transaction()
    with _lock:
        state = _pending.get(root) if root is not None else None
        if state is not None:
            state.committed = True


def _on_end(session: Session, trans: SessionTransaction) -> None:
    with _lock:
        state = _pending.pop(trans, None)
    if state is None or not state.committed:
        return
    for callback in state.callbacks.values():
        try:
            outcome = callback()
            if inspect.isawaitable(outcome):
                if _in_greenlet():
                    _await(outcome)
                else:  # pragma: no cover - AsyncFlags refuses a plain Session up front
                    getattr(outcome, "close", lambda: None)()
                    log.error("veneer.flags: an asyncio publication outside AsyncSession.commit()")
        except Exception:
            # The change is committed: a failed publication delays it (readers catch up
            # at their next check), it must not make the commit look failed.
            log.exception("veneer.flags: publishing a committed change failed")
