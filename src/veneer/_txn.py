"""Invalidations marked by database transactions that are still open in this context.

An integration (SQLAlchemy, ...) records here what an open transaction will
invalidate when it commits. Until then, a read of a marked key in the same
context bypasses the cache: the transaction may already have written a new
value that the cache does not have, and must read its own writes.

Marks are ``(namespace, kind, name)`` with kind ``"k"`` (a key), ``"t"`` (a tag)
or ``"e"`` (the whole namespace). The cache's hot path only checks whether the
set is empty.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextvars import ContextVar

__all__ = ["Mark", "bypasses", "mark_open", "open_marks", "unmark_open"]

Mark = tuple[str, str, str]

open_marks: ContextVar[frozenset[Mark]] = ContextVar("veneer_open_marks", default=frozenset())


def mark_open(marks: Iterable[Mark]) -> None:
    open_marks.set(open_marks.get() | frozenset(marks))


def unmark_open(marks: Iterable[Mark]) -> None:
    open_marks.set(open_marks.get() - frozenset(marks))


def bypasses(marks: frozenset[Mark], namespace: str, key: str, tags: Sequence[str] = ()) -> bool:
    """Whether a read of ``key`` (with ``tags``) must skip the cache in this context."""
    if (namespace, "k", key) in marks or (namespace, "e", "") in marks:
        return True
    return any((namespace, "t", tag) in marks for tag in tags)
