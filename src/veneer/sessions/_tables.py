"""The two tables sessions live in, and their DDL.

``veneer_sessions`` holds one row per live session; ``veneer_session_users``
holds one revocation stamp per user who was ever logged out everywhere. Times
are seconds since the Unix epoch (UTC) as double precision: portable between
PostgreSQL and SQLite, and cheap to compare.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.schema import CreateIndex, CreateTable

__all__ = ["SessionTables", "create_tables", "session_tables", "tables_ddl"]

USER_ID_LENGTH = 255


@dataclass(frozen=True, slots=True)
class SessionTables:
    """The sessions table and the per-user revocation stamps table."""

    sessions: sa.Table
    users: sa.Table

    @property
    def metadata(self) -> sa.MetaData:
        return self.sessions.metadata


def session_tables(
    metadata: sa.MetaData | None = None,
    *,
    name: str = "veneer_sessions",
    users_name: str | None = None,
    schema: str | None = None,
) -> SessionTables:
    """Define the tables (on ``metadata``, so your migrations can pick them up)."""
    metadata = metadata if metadata is not None else sa.MetaData()
    users_name = users_name or f"{name}_users"
    sessions = sa.Table(
        name,
        metadata,
        # Hex SHA-256 / HMAC-SHA256 of the token, never the token itself.
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(USER_ID_LENGTH), nullable=True),
        # The user's revocation stamp when this session was issued; a session whose
        # generation is behind its user's current one is revoked.
        sa.Column("generation", sa.BigInteger, nullable=False, default=0),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("last_seen", sa.Double, nullable=False),
        # The earlier of the idle and absolute deadlines as of the last write: purge's index.
        sa.Column("expires_at", sa.Double, nullable=False),
        sa.Index(f"{name}_user_id_idx", "user_id"),
        sa.Index(f"{name}_expires_at_idx", "expires_at"),
        schema=schema,
    )
    users = sa.Table(
        users_name,
        metadata,
        sa.Column("user_id", sa.String(USER_ID_LENGTH), primary_key=True),
        sa.Column("generation", sa.BigInteger, nullable=False),
        schema=schema,
    )
    return SessionTables(sessions, users)


def create_tables(engine: sa.Engine, tables: SessionTables | None = None) -> SessionTables:
    """Create the tables (and indexes) if they do not exist; returns them.

    For an ``AsyncEngine``: ``await conn.run_sync(tables.metadata.create_all)``.
    """
    tables = tables or session_tables()
    with engine.begin() as conn:
        for table in (tables.sessions, tables.users):
            table.create(conn, checkfirst=True)
    return tables


def tables_ddl(dialect: str = "postgresql", tables: SessionTables | None = None) -> str:
    """The ``CREATE TABLE`` / ``CREATE INDEX`` statements, for migrations you write by hand."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialects: dict[str, Any] = {
        "postgresql": postgresql.dialect(),  # type: ignore[no-untyped-call]
        "sqlite": sqlite.dialect(),
    }
    if dialect not in dialects:
        raise ValueError(f"dialect={dialect!r}: use 'postgresql' or 'sqlite'")
    tables = tables or session_tables()
    statements: list[str] = []
    for table in (tables.sessions, tables.users):
        statements.append(str(CreateTable(table).compile(dialect=dialects[dialect])).strip())
        statements.extend(
            str(CreateIndex(index).compile(dialect=dialects[dialect])).strip()
            for index in sorted(table.indexes, key=lambda i: str(i.name))
        )
    return ";\n\n".join(statements) + ";\n"
