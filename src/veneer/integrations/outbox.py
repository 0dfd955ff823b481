"""Durable invalidations: an outbox table written in the application's transaction,
and a relay that applies what is left in it.

An invalidation recorded in the outbox commits or rolls back with the data it
describes. After the commit the writer applies it and deletes the row; whatever a
crash, a Redis outage or a failed delete leaves behind, :class:`OutboxRelay`
applies later (at least once: a row is deleted only after Redis applied it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from .._sync._cache import Cache
from .._txn import Mark
from ._caches import CachesByNamespace, CacheSource, apply_op
from ._worker import ThreadedWorker

__all__ = [
    "DEFAULT_OUTBOX",
    "OutboxRelay",
    "create_outbox",
    "outbox_ddl",
    "outbox_table",
    "sqlalchemy_url",
]

log = logging.getLogger("veneer")

DEFAULT_OUTBOX = "veneer_outbox"

# Dialects whose SELECT ... FOR UPDATE SKIP LOCKED lets relays share one outbox.
_SKIP_LOCKED = frozenset({"postgresql", "mysql", "mariadb", "oracle"})


def outbox_table(
    metadata: sa.MetaData | None = None, *, name: str = DEFAULT_OUTBOX, schema: str | None = None
) -> sa.Table:
    """The outbox as a Core table: add it to your migrations, or use :func:`create_outbox`."""
    return sa.Table(
        name,
        metadata if metadata is not None else sa.MetaData(),
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("namespace", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(1), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema=schema,
    )


def create_outbox(bind: Engine | Connection, table: sa.Table | None = None) -> sa.Table:
    """Create the outbox table if it does not exist; returns it."""
    table = table if table is not None else outbox_table()
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            table.create(conn, checkfirst=True)
    else:
        table.create(bind, checkfirst=True)
    return table


def outbox_ddl(table: sa.Table | None = None, dialect: str = "postgresql") -> str:
    """The ``CREATE TABLE`` statement of the outbox for ``dialect``, for hand-written migrations."""
    from sqlalchemy.schema import CreateTable

    table = table if table is not None else outbox_table()
    module = __import__(f"sqlalchemy.dialects.{dialect}", fromlist=["dialect"])
    return str(CreateTable(table).compile(dialect=module.dialect())).strip() + ";"


def sqlalchemy_url(dsn: str) -> str:
    """A libpq-style ``postgresql://`` DSN as a SQLAlchemy URL using psycopg 3; others as given."""
    for scheme in ("postgresql://", "postgres://"):
        if dsn.startswith(scheme):
            return "postgresql+psycopg://" + dsn[len(scheme) :]
    return dsn


# ----------------------------------------------------------------- writer side


def write_rows(conn: Connection, table: sa.Table, marks: Sequence[Mark]) -> list[tuple[int, Mark]]:
    """Insert one row per mark in ``conn``'s current transaction; returns (id, mark) pairs."""
    if not marks:
        return []
    c = table.c
    result = conn.execute(
        sa.insert(table).returning(c.id, c.namespace, c.kind, c.name),
        [{"namespace": ns, "kind": kind, "name": name} for ns, kind, name in marks],
    )
    return [(int(row[0]), (row[1], row[2], row[3])) for row in result]


def delete_rows(engine: Engine, table: sa.Table, ids: Iterable[int]) -> None:
    """Delete applied rows in a transaction of their own; rows a relay holds are left to it."""
    ids = list(ids)
    if not ids:
        return
    id_col = table.c.id
    if engine.dialect.name in _SKIP_LOCKED:
        # A relay working on the same rows holds their locks: skip them instead of
        # making the application's commit wait for the relay's batch.
        locked = sa.select(id_col).where(id_col.in_(ids)).with_for_update(skip_locked=True)
        stmt = sa.delete(table).where(id_col.in_(locked.scalar_subquery()))
    else:
        stmt = sa.delete(table).where(id_col.in_(ids))
    with engine.begin() as conn:
        conn.execute(stmt)


# ------------------------------------------------------------------ the relay


class OutboxRelay(ThreadedWorker):
    """Applies the invalidations left in the outbox and deletes each row Redis applied.

    ``engine`` is a SQLAlchemy engine or URL (sync; a libpq ``postgresql://`` DSN
    uses psycopg 3). ``caches`` is a Redis URL (one cache per namespace is built),
    one :class:`~veneer.Cache` (its namespace only), or a factory ``namespace ->
    Cache``. Several relays may drain one PostgreSQL outbox: each takes rows with
    ``FOR UPDATE SKIP LOCKED``.
    """

    _thread_name = "veneer-outbox-relay"

    def __init__(
        self,
        engine: Engine | str,
        caches: CacheSource,
        /,
        *,
        table: sa.Table | None = None,
        batch: int = 500,
        interval: float = 1.0,
        namespaces: Iterable[str] | None = None,
        cache_options: dict[str, Any] | None = None,
    ) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        if interval <= 0:
            raise ValueError("interval must be positive")
        self._own_engine = isinstance(engine, str)
        self.engine: Engine = (
            sa.create_engine(sqlalchemy_url(engine), pool_pre_ping=True)
            if isinstance(engine, str)
            else engine
        )
        self.table = table if table is not None else outbox_table()
        self.batch = batch
        self.interval = interval
        self._caches = CachesByNamespace(caches, **(cache_options or {}))
        only = set(namespaces or ())
        if isinstance(caches, Cache):
            only.add(caches.options.namespace)
        self._namespaces = sorted(only)
        self._skip_locked = self.engine.dialect.name in _SKIP_LOCKED
        super().__init__()
        self.applied = 0
        """Rows applied and deleted since this relay was built."""
        self.failed_passes = 0
        """Passes that failed on a database error (they are retried)."""

    # -- one pass

    def run_once(self) -> int:
        """Drain the outbox: apply and delete batches until it is empty or Redis refuses.

        Returns how many rows were applied (and deleted). Rows whose invalidation
        Redis did not apply stay for the next run.
        """
        total = 0
        while True:
            applied, fetched, refused = self._pass()
            total += applied
            if refused or fetched < self.batch or applied == 0 or self._stop.is_set():
                break
        self.applied += total
        return total

    def _pass(self) -> tuple[int, int, bool]:
        c = self.table.c
        stmt = sa.select(c.id, c.namespace, c.kind, c.name).order_by(c.id).limit(self.batch)
        if self._namespaces:
            stmt = stmt.where(c.namespace.in_(self._namespaces))
        if self._skip_locked:
            stmt = stmt.with_for_update(skip_locked=True)
        with self.engine.begin() as conn:
            rows = conn.execute(stmt).all()
            outcome: dict[Mark, bool] = {}
            refused: set[str] = set()
            done: list[int] = []
            for row_id, namespace, kind, name in rows:
                op: Mark = (namespace, kind, name)
                if op not in outcome:
                    outcome[op] = namespace not in refused and self._apply(op)
                    if not outcome[op]:
                        # Redis is likely down for this namespace: each further call
                        # would wait out a connect timeout. Leave the rest for later.
                        refused.add(namespace)
                if outcome[op]:
                    done.append(row_id)
            if done:
                conn.execute(sa.delete(self.table).where(c.id.in_(done)))
        return len(done), len(rows), bool(refused)

    def _apply(self, op: Mark) -> bool:
        namespace, kind, name = op
        cache = self._caches.get(namespace)
        if cache is None:
            return False
        try:
            return apply_op(cache, kind, name)
        except ValueError:
            log.error("veneer: outbox row with unknown kind %r dropped", kind)
            return True

    def missing_table(self) -> str | None:
        """A message when the outbox table does not exist (else None): a setup error
        that retrying cannot fix."""
        table = self.table
        with self.engine.connect() as conn:
            if sa.inspect(conn).has_table(table.name, schema=table.schema):
                return None
        return (
            f"the outbox table {table.fullname!r} does not exist in that database: create it "
            "with veneer.integrations.outbox.create_outbox(engine), or add outbox_ddl() to "
            "your migrations"
        )

    def backlog(self) -> int:
        """How many rows wait in the outbox (for this relay's namespaces)."""
        stmt = sa.select(sa.func.count()).select_from(self.table)
        if self._namespaces:
            stmt = stmt.where(self.table.c.namespace.in_(self._namespaces))
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    # -- running

    def run_forever(self) -> None:
        """Run passes every ``interval`` seconds until :meth:`stop`; database errors are
        logged and retried with a growing pause (at most 30 s)."""
        pause = self.interval
        while not self._stop.is_set():
            try:
                applied = self.run_once()
                if applied:
                    log.info("veneer relay: applied %d outbox row(s)", applied)
                pause = self.interval
            except SQLAlchemyError as exc:
                self.failed_passes += 1
                log.warning("veneer relay: pass failed (%s); retrying in %.1fs", exc, pause)
                pause = min(pause * 2, 30.0)
            except Exception:
                # Keep the worker alive: a relay that dies silently loses nothing but
                # leaves every later row waiting for a restart.
                self.failed_passes += 1
                log.exception("veneer relay: pass failed; retrying in %.1fs", pause)
                pause = min(pause * 2, 30.0)
            self._stop.wait(pause)

    def close(self) -> None:
        """Stop, close the caches this relay built, and dispose an engine it built."""
        self.stop()
        self._caches.close()
        if self._own_engine:
            self.engine.dispose()

    def __enter__(self) -> OutboxRelay:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
