"""Sessions whose truth is a SQL table; veneer's cache (L1 + Redis) only makes them fast.

::

    tables = create_tables(engine)                       # or tables_ddl() in a migration
    store = SessionStore(engine, Cache.from_url(url, namespace="sessions"))
    token, session = store.create(user.id, {"theme": "dark"})
    session = store.load(token)                          # None: unknown, revoked, expired

See ``docs/sessions.md`` for the security defaults and each failure's worst case.
The ASGI middleware is :mod:`veneer.sessions.asgi`.
"""

from __future__ import annotations

from ._async._store import AsyncSessionStore
from ._errors import SessionDataTooLarge, SourceUnavailable, UnencodableSessionData
from ._maintenance import purge_expired
from ._model import Session, SessionStats
from ._sync._store import SessionStore
from ._tables import SessionTables, create_tables, session_tables, tables_ddl

__all__ = [
    "AsyncSessionStore",
    "Session",
    "SessionDataTooLarge",
    "SessionStats",
    "SessionStore",
    "SessionTables",
    "SourceUnavailable",
    "UnencodableSessionData",
    "create_tables",
    "purge_expired",
    "session_tables",
    "tables_ddl",
]
