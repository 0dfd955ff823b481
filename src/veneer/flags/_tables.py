"""The five tables flags live in, and their DDL (PostgreSQL and SQLite).

- ``veneer_flags``: one row per flag (switch, on/off variants, allow and deny
  lists, fallthrough, salt, description, who changed it last and when);
- ``veneer_flag_variants``: the flag's variants, in declared order (rollouts
  assign bucket ranges in that order);
- ``veneer_flag_rules``: the flag's rules, in evaluation order;
- ``veneer_flag_state``: one row, the snapshot ``version`` (bumped by every
  change, in the change's own transaction) and the ``token`` that names that
  committed change (random, so a restored backup never reuses a cached
  snapshot's name);
- ``veneer_flag_audit``: one row per change: who, when, the version, the old and
  the new definition.

JSON columns hold JSON text (``json`` on PostgreSQL, not ``jsonb``: it keeps the
key order of rollouts).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.schema import CreateIndex, CreateTable

__all__ = ["FlagTables", "create_tables", "flag_tables", "new_token", "tables_ddl"]

NAME_LENGTH = 200
VARIANT_LENGTH = 100
STATE_ID = 1
_AUDIT_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def new_token() -> str:
    """A name for one committed change (64 random bits, hex)."""
    return secrets.token_hex(8)


def _json() -> sa.JSON:
    return sa.JSON(none_as_null=True)


@dataclass(frozen=True, slots=True)
class FlagTables:
    """The flags, variants, rules, state and audit tables."""

    flags: sa.Table
    variants: sa.Table
    rules: sa.Table
    state: sa.Table
    audit: sa.Table

    @property
    def metadata(self) -> sa.MetaData:
        return self.flags.metadata

    def all(self) -> tuple[sa.Table, ...]:
        return (self.flags, self.variants, self.rules, self.state, self.audit)


def flag_tables(
    metadata: sa.MetaData | None = None,
    *,
    prefix: str = "veneer_flag",
    schema: str | None = None,
) -> FlagTables:
    """Define the tables on ``metadata`` (so your migrations pick them up). Their names
    are ``{prefix}s``, ``{prefix}_variants``, ``{prefix}_rules``, ``{prefix}_state`` and
    ``{prefix}_audit``."""
    metadata = metadata if metadata is not None else sa.MetaData()
    now = sa.DateTime(timezone=True)
    flags = sa.Table(
        f"{prefix}s",
        metadata,
        sa.Column("name", sa.String(NAME_LENGTH), primary_key=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("on_variant", sa.String(VARIANT_LENGTH), nullable=False),
        sa.Column("off_variant", sa.String(VARIANT_LENGTH), nullable=False),
        sa.Column("allow", _json(), nullable=False),
        sa.Column("deny", _json(), nullable=False),
        # A variant name, a rollout {variant: percentage}, or NULL for the automatic one.
        sa.Column("fallthrough", _json(), nullable=True),
        sa.Column("salt", sa.String(NAME_LENGTH), nullable=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("updated_at", now, nullable=False),
        sa.Column("updated_by", sa.String(NAME_LENGTH), nullable=True),
        schema=schema,
    )
    variants = sa.Table(
        f"{prefix}_variants",
        metadata,
        sa.Column("flag", sa.String(NAME_LENGTH), primary_key=True),
        sa.Column("key", sa.String(VARIANT_LENGTH), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("value", _json(), nullable=True),
        schema=schema,
    )
    rules = sa.Table(
        f"{prefix}_rules",
        metadata,
        sa.Column("flag", sa.String(NAME_LENGTH), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("conditions", _json(), nullable=False),
        sa.Column("serve", sa.String(VARIANT_LENGTH), nullable=True),
        sa.Column("rollout", _json(), nullable=True),
        schema=schema,
    )
    state = sa.Table(
        f"{prefix}_state",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("token", sa.String(32), nullable=False),
        sa.Column("changed_at", now, nullable=False),
        schema=schema,
    )
    audit = sa.Table(
        f"{prefix}_audit",
        metadata,
        # SQLite gives autoincrement only to an INTEGER primary key.
        sa.Column("id", _AUDIT_ID, primary_key=True, autoincrement=True),
        sa.Column("flag", sa.String(NAME_LENGTH), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("changed_at", now, nullable=False),
        sa.Column("actor", sa.String(NAME_LENGTH), nullable=True),
        sa.Column("action", sa.String(10), nullable=False),
        sa.Column("old", _json(), nullable=True),
        sa.Column("new", _json(), nullable=True),
        sa.Index(f"{prefix}_audit_flag_idx", "flag", "id"),
        schema=schema,
    )
    return FlagTables(flags, variants, rules, state, audit)


def create_tables(bind: sa.Engine | sa.Connection, tables: FlagTables | None = None) -> FlagTables:
    """Create the tables if they do not exist, with the state row; returns them.

    ``bind``: an ``Engine``, or a ``Connection`` (for an ``AsyncEngine``:
    ``await conn.run_sync(create_tables)``).
    """
    tables = tables or flag_tables()
    if isinstance(bind, sa.Engine):
        with bind.begin() as conn:
            _create(conn, tables)
    else:
        _create(bind, tables)
    return tables


def _create(conn: sa.Connection, tables: FlagTables) -> None:
    for table in tables.all():
        table.create(conn, checkfirst=True)
    state = tables.state
    found = conn.execute(sa.select(state.c.id).where(state.c.id == STATE_ID)).first()
    if found is None:
        conn.execute(
            sa.insert(state).values(
                id=STATE_ID, version=0, token=new_token(), changed_at=datetime.now(UTC)
            )
        )


def tables_ddl(dialect: str = "postgresql", tables: FlagTables | None = None) -> str:
    """The ``CREATE TABLE`` / ``CREATE INDEX`` statements and the state row's ``INSERT``,
    for migrations you write by hand."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialects: dict[str, Any] = {
        "postgresql": postgresql.dialect(),  # type: ignore[no-untyped-call]
        "sqlite": sqlite.dialect(),
    }
    if dialect not in dialects:
        raise ValueError(f"dialect={dialect!r}: use 'postgresql' or 'sqlite'")
    tables = tables or flag_tables()
    statements: list[str] = []
    for table in tables.all():
        statements.append(str(CreateTable(table).compile(dialect=dialects[dialect])).strip())
        statements.extend(
            str(CreateIndex(index).compile(dialect=dialects[dialect])).strip()
            for index in sorted(table.indexes, key=lambda i: str(i.name))
        )
    now = "now()" if dialect == "postgresql" else "CURRENT_TIMESTAMP"
    statements.append(
        f"INSERT INTO {tables.state.fullname} (id, version, token, changed_at) "
        f"VALUES ({STATE_ID}, 0, '{new_token()}', {now})"
    )
    return ";\n\n".join(statements) + ";\n"
