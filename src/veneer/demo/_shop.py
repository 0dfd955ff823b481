"""The web shop's database, the source of truth of both stacks: products, users, and
the count of every statement the demo sends it."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

__all__ = ["ASSEMBLY_S", "ShopDB", "make_engine", "quiet"]

# A product page is a row plus work (prices, stock, rendering) before it is cached.
# The same for both stacks; it is the window in which a write can race a fill.
ASSEMBLY_S = 0.004

_local = threading.local()


class quiet:
    """Statements sent inside are the demo's own probes: not counted as the shop's load."""

    def __enter__(self) -> None:
        _local.quiet = True

    def __exit__(self, *exc: object) -> None:
        _local.quiet = False


def make_engine(dsn: str) -> sa.Engine:
    if dsn.startswith("sqlite"):
        # WAL and a busy timeout: readers never wait for the writer, writers queue.
        engine = sa.create_engine(dsn, connect_args={"timeout": 30, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return sa.create_engine(dsn, pool_size=10, max_overflow=10)


class ShopDB:
    """Products and users in one SQL database, with a statement counter."""

    def __init__(self, engine: sa.Engine, prefix: str, on_query: Callable[[], None]) -> None:
        self.engine = engine
        # Called after a product's row is read, before its page is assembled: the demo
        # counts loads there, and the write race waits for it.
        self.on_load: Callable[[int], None] = lambda pid: None
        self.meta = sa.MetaData()
        self.products = sa.Table(
            f"{prefix}products",
            self.meta,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(100), nullable=False),
            sa.Column("price", sa.Float, nullable=False),
            sa.Column("version", sa.Integer, nullable=False),
            sa.Column("description", sa.Text, nullable=False),
        )
        self.users = sa.Table(
            f"{prefix}users",
            self.meta,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(100), nullable=False),
        )

        @sa.event.listens_for(engine, "before_cursor_execute")
        def _count(*args: Any) -> None:
            if not getattr(_local, "quiet", False):
                on_query()

        p = self.products
        self._by_id = sa.select(p.c.id, p.c.name, p.c.price, p.c.version, p.c.description).where(
            p.c.id == sa.bindparam("pid")
        )
        self._user = sa.select(self.users.c.name).where(self.users.c.id == sa.bindparam("uid"))

    def seed(self, products: int, users: int, seed: int = 7) -> None:
        rng = random.Random(seed)
        self.meta.drop_all(self.engine)
        self.meta.create_all(self.engine)
        with quiet(), self.engine.begin() as conn:
            conn.execute(
                self.products.insert(),
                [
                    {
                        "id": i,
                        "name": f"product {i}",
                        "price": round(rng.uniform(1, 500), 2),
                        "version": 1,
                        "description": "A fine thing, well made. " * rng.randint(4, 12),
                    }
                    for i in range(products)
                ],
            )
            conn.execute(
                self.users.insert(), [{"id": u, "name": f"user {u}"} for u in range(users)]
            )

    def drop(self) -> None:
        with quiet():
            self.meta.drop_all(self.engine)

    def load_user(self, uid: int) -> str:
        with self.engine.connect() as conn:
            return str(conn.execute(self._user, {"uid": uid}).scalar_one())

    def load_product(self, pid: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(self._by_id, {"pid": pid}).one()
        self.on_load(pid)
        time.sleep(ASSEMBLY_S)
        return {
            "id": row[0],
            "name": row[1],
            "price": row[2],
            "version": row[3],
            "description": row[4],
        }

    def load_catalog(self, limit: int) -> dict[str, Any]:
        """The category page: a few hundred KB, read by every visitor while it is shown."""
        p = self.products
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(p.c.id, p.c.name, p.c.price, p.c.version, p.c.description)
                .order_by(p.c.id)
                .limit(limit)
            ).all()
        return {
            "title": "all products",
            "items": [
                {"id": r[0], "name": r[1], "price": r[2], "version": r[3], "text": r[4]}
                for r in rows
            ],
        }

    def update_product(self, pid: int) -> int:
        """A price change, committed; returns the row's new version."""
        p = self.products
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(p)
                .where(p.c.id == pid)
                .values(version=p.c.version + 1, price=p.c.price + 0.01)
            )
            return int(conn.execute(sa.select(p.c.version).where(p.c.id == pid)).scalar_one())
