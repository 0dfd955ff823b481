"""The statements both fronts send, and the translation of database failures.

Only PostgreSQL and SQLite are supported: the revocation stamp is an
``INSERT ... ON CONFLICT DO UPDATE``, which both spell the same way.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from .._errors import ConfigurationError
from ._errors import SourceUnavailable
from ._model import Record, SessionStats
from ._tables import USER_ID_LENGTH, SessionTables

__all__ = [
    "DATABASE_ERRORS",
    "bump_generation",
    "check_dialect",
    "current_generation",
    "record_of",
    "select_record",
    "translated",
    "unavailable",
    "user_id_of",
]

DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.TimeoutError,
    sa.exc.DisconnectionError,
)
"""A database that is down, unreachable, or out of pool connections (not a bad statement)."""

SUPPORTED_DIALECTS = ("postgresql", "sqlite")


def check_dialect(name: str) -> str:
    if name not in SUPPORTED_DIALECTS:
        raise ConfigurationError(f"the session store supports PostgreSQL and SQLite, not {name!r}")
    return name


def user_id_of(user_id: object) -> str:
    """User ids are stored as text; ints (and other ids) are converted with ``str``."""
    if isinstance(user_id, bool) or not isinstance(user_id, str | int):
        raise TypeError(f"user_id must be a str or an int, got {type(user_id).__name__}")
    text = str(user_id)
    if not text or len(text) > USER_ID_LENGTH:
        raise ValueError(f"user_id must be 1 to {USER_ID_LENGTH} characters long")
    return text


def select_record(tables: SessionTables, session_id: str) -> sa.Select[Any]:
    """The row and its user's current revocation stamp (0 when the user has none)."""
    s, u = tables.sessions.c, tables.users.c
    return (
        sa.select(
            s.user_id,
            s.generation,
            s.data,
            s.created_at,
            s.last_seen,
            s.expires_at,
            sa.func.coalesce(u.generation, 0).label("current"),
        )
        .select_from(tables.sessions.outerjoin(tables.users, u.user_id == s.user_id))
        .where(s.id == session_id)
    )


def record_of(row: Any) -> Record | None:
    """A live record from a ``select_record`` row; None when the user was logged out since."""
    if row is None or row.generation != row.current:
        return None
    return Record(
        row.user_id,
        int(row.generation),
        bytes(row.data),
        float(row.created_at),
        float(row.last_seen),
        float(row.expires_at),
    )


def current_generation(tables: SessionTables, user_id: str) -> sa.Select[Any]:
    return sa.select(tables.users.c.generation).where(tables.users.c.user_id == user_id)


def bump_generation(tables: SessionTables, dialect: str, user_id: str) -> Any:
    """Advance the user's revocation stamp (creating it at 1): every older session is dead."""
    from sqlalchemy.dialects import postgresql, sqlite

    insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    users = tables.users
    return (
        insert(users)
        .values(user_id=user_id, generation=1)
        .on_conflict_do_update(
            index_elements=[users.c.user_id], set_={"generation": users.c.generation + 1}
        )
    )


def unavailable(what: str, exc: BaseException, stats: SessionStats) -> SourceUnavailable:
    """The error for a database outage during ``what`` (counted in ``stats``)."""
    stats.database_errors += 1
    orig = getattr(exc, "orig", None) or exc
    # The first line of the driver's message, never the statement or its parameters.
    reason = (str(orig).strip().splitlines() or [""])[0][:200]
    return SourceUnavailable(
        f"could not {what}: the database is unavailable ({type(orig).__name__}: {reason}); "
        "nothing was changed, retry when it is back"
    )


class translated:  # used like a function: ``with translated(...)``
    """Turn a database outage into :class:`SourceUnavailable` naming what did not happen.

    Both a context manager and an async one, so that ``async with translated(...),
    maker() as db`` is one statement in the asyncio source and in its sync twin.
    """

    __slots__ = ("stats", "what")

    def __init__(self, what: str, stats: SessionStats) -> None:
        self.what = what
        self.stats = stats

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, DATABASE_ERRORS):
            raise unavailable(self.what, exc, self.stats) from exc

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        self.__exit__(kind, exc, tb)
