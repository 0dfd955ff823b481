"""The flags tables through an ``AsyncEngine``; ``flags/_sync/_store.py`` is generated from it.

Reads of a whole snapshot are checked against the state row before and after
(a seqlock): a change committed in between changes the token, and the read is
done again. That gives one consistent version on PostgreSQL and on SQLite alike,
with no isolation level to set. Writes run in the caller's transaction (a
connection or an ORM session) and start with the version bump, which takes the
state row's lock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from .._errors import FlagNotFound
from .._sql import (
    FlagChange,
    Head,
    audit_insert,
    bump_statement,
    change_of,
    delete_statements,
    epoch,
    flag_documents,
    head_select,
    history_select,
    insert_statements,
    snapshot_document,
)
from .._tables import FlagTables, new_token

__all__ = ["AsyncFlagStore", "MissingTables"]

# A snapshot read that keeps racing commits gives up after this many tries (the
# caller keeps its snapshot and tries again at its next check).
_READ_TRIES = 5

Executor = AsyncConnection | AsyncSession


class MissingTables(LookupError):
    """The state row is missing: the tables were not created with ``create_tables``."""


class AsyncFlagStore:
    """Reads and writes of the flags tables (no cache, no Redis)."""

    def __init__(self, engine: AsyncEngine, tables: FlagTables) -> None:
        self.engine = engine
        self.tables = tables

    async def head(self) -> Head:
        """The committed version and token (one primary-key read)."""
        async with self.engine.connect() as conn:
            return await self._head(conn)

    async def _head(self, executor: Executor) -> Head:
        row = (await executor.execute(head_select(self.tables))).first()
        if row is None:
            raise MissingTables(
                f"no state row in {self.tables.state.name!r}: create the tables with "
                "veneer.flags.create_tables(engine) (or tables_ddl())"
            )
        return Head(int(row.version), row.token, epoch(row.changed_at))

    async def document(self) -> dict[str, Any]:
        """Every flag at one committed version, as a snapshot document."""
        t = self.tables
        async with self.engine.connect() as conn:
            for _ in range(_READ_TRIES):
                before = await self._head(conn)
                flags = (await conn.execute(sa.select(t.flags))).all()
                variants = (await conn.execute(sa.select(t.variants))).all()
                rules = (await conn.execute(sa.select(t.rules))).all()
                after = await self._head(conn)
                await conn.rollback()  # end the read transaction: the next try sees new commits
                if before.token == after.token:
                    return snapshot_document(after, flag_documents(flags, variants, rules))
            return await self._locked_document(conn)

    async def _locked_document(self, conn: AsyncConnection) -> dict[str, Any]:
        """One read that holds writers off: for a writer so busy that the optimistic
        reads keep racing it. Every write starts by bumping the state row, so a share
        lock on that row (PostgreSQL) or SQLite's write lock keeps the version still
        while the tables are read; a writer waits for one short read."""
        t = self.tables
        try:
            if conn.dialect.name == "sqlite":
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                await conn.execute(head_select(t).with_for_update(read=True))
            head = await self._head(conn)
            flags = (await conn.execute(sa.select(t.flags))).all()
            variants = (await conn.execute(sa.select(t.variants))).all()
            rules = (await conn.execute(sa.select(t.rules))).all()
        finally:
            await conn.rollback()
        return snapshot_document(head, flag_documents(flags, variants, rules))

    async def definitions(self) -> list[dict[str, Any]]:
        """The stored flag documents (as stored: not checked)."""
        return list((await self.document())["flags"])

    async def definition(self, name: str) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            found = await self._read_flag(conn, name)
        if found is None:
            raise FlagNotFound(name)
        return found

    async def _read_flag(self, executor: Executor, name: str) -> dict[str, Any] | None:
        t = self.tables
        flags = (await executor.execute(sa.select(t.flags).where(t.flags.c.name == name))).all()
        if not flags:
            return None
        variants = (
            await executor.execute(sa.select(t.variants).where(t.variants.c.flag == name))
        ).all()
        rules = (await executor.execute(sa.select(t.rules).where(t.rules.c.flag == name))).all()
        return flag_documents(flags, variants, rules)[0]

    async def write(
        self,
        executor: Executor,
        name: str,
        change: Callable[[dict[str, Any] | None], dict[str, Any] | None],
        *,
        actor: str | None,
    ) -> FlagChange:
        """Bump the version, replace flag ``name`` by ``change(old)`` (None deletes it) and
        write the audit row, all in ``executor``'s transaction (which the caller commits).

        ``change`` must check the new definition (it raises :class:`InvalidFlag`); it is
        called once before the bump, so a refused definition writes nothing at all, and
        again under the lock in case the flag changed in between."""
        if change(await self._read_flag(executor, name)) is None and not await self._exists(
            executor, name
        ):
            raise FlagNotFound(name)
        now = datetime.now(UTC)
        token = new_token()
        await executor.execute(bump_statement(self.tables, token, now))
        head = await self._head(executor)
        old = await self._read_flag(executor, name)
        new = change(old)
        if old is None and new is None:
            raise FlagNotFound(name)
        for statement in delete_statements(self.tables, name):
            await executor.execute(statement)
        if new is not None:
            for insert, rows in insert_statements(self.tables, new, now, actor):
                await executor.execute(insert, rows)
        action = "create" if old is None else "delete" if new is None else "update"
        record = FlagChange(
            flag=name,
            version=head.version,
            token=token,
            action=action,
            changed_at=now.timestamp(),
            actor=actor,
            old=old,
            new=new,
        )
        await executor.execute(audit_insert(self.tables, record, now))
        return record

    async def _exists(self, executor: Executor, name: str) -> bool:
        flags = self.tables.flags
        found = await executor.execute(sa.select(flags.c.name).where(flags.c.name == name))
        return found.first() is not None

    async def history(self, name: str | None = None, limit: int = 50) -> list[FlagChange]:
        """The latest changes, newest first (of one flag, or of all)."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(history_select(self.tables, name, limit))).all()
        return [change_of(row) for row in rows]
