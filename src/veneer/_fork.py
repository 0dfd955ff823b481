"""Per-process state after ``os.fork()`` (gunicorn ``--preload``, multiprocessing).

A forked child has one thread, but it inherits every object of its parent: loads
that the parent's threads were running (their flights would never resolve),
locks that a parent thread held at the moment of the fork (never released),
bulkhead slots taken by those threads, a subscriber flag saying "live" with no
subscriber thread, and sockets shared with the parent. Each cache registers
here; in the child, every live one resets what belongs to its process.

The parent's sockets and connection objects are not closed in the child:
closing a socket the parent still uses is harmless at the file level, but
redis-py's disconnect shuts the socket down for both, and an asyncio transport
unregisters itself from an epoll set the parent shares. They are parked in
:data:`_PARKED` instead, never to be used or collected in this process.
"""

from __future__ import annotations

import logging
import os
import weakref
from typing import Any, Protocol

__all__ = ["ForkAware", "park", "register"]

log = logging.getLogger("veneer")


class ForkAware(Protocol):
    def _after_fork(self) -> None: ...


_live: weakref.WeakSet[Any] = weakref.WeakSet()
_PARKED: list[Any] = []


def register(obj: ForkAware) -> None:
    """Call ``obj._after_fork()`` in every child forked while ``obj`` is alive."""
    _live.add(obj)


def park(obj: Any) -> None:
    """Keep a parent's object (a socket, a connection) alive and untouched in the child."""
    _PARKED.append(obj)


def _in_child() -> None:
    for obj in list(_live):
        try:
            obj._after_fork()
        except Exception:  # one broken cache must not break the others in the child
            log.exception("veneer: resetting %r after fork failed", obj)


os.register_at_fork(after_in_child=_in_child)
