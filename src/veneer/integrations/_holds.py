"""Which open transactions in this context hold each mark, so a mark leaves the bypass
set only when the last transaction holding it ends.

``veneer._txn`` keeps a plain set: a savepoint that rolls back a mark its parent
also holds must not take the parent's bypass away. The counts live in a
ContextVar next to that set, so they follow the same contexts (threads, asyncio
tasks, and SQLAlchemy's greenlets, which run in the awaiting task's context).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from types import MappingProxyType

from .._txn import Mark, mark_open, unmark_open

__all__ = ["hold", "release"]

_EMPTY: Mapping[Mark, int] = MappingProxyType({})
_holds: ContextVar[Mapping[Mark, int]] = ContextVar("veneer_mark_holds", default=_EMPTY)


def hold(marks: Iterable[Mark]) -> None:
    """One more open transaction in this context holds each of ``marks``."""
    counts = dict(_holds.get())
    fresh = []
    for mark in marks:
        held = counts.get(mark, 0)
        counts[mark] = held + 1
        if not held:
            fresh.append(mark)
    _holds.set(counts)
    if fresh:
        mark_open(fresh)


def release(marks: Iterable[Mark]) -> None:
    """One open transaction fewer holds each of ``marks``; unmark those nobody holds."""
    counts = dict(_holds.get())
    gone = []
    for mark in marks:
        held = counts.get(mark, 0)
        if held <= 1:
            counts.pop(mark, None)
            gone.append(mark)
        else:
            counts[mark] = held - 1
    _holds.set(counts)
    if gone:
        unmark_open(gone)
