"""The veneer stack: the same shop with the database as the truth and Redis as a layer.

Product pages through the cache (invalidated after commit), sessions in
``veneer.sessions``, view counters in ``veneer.counters`` (exact mode), the flag in
``veneer.flags``, the rate limit in ``veneer.ratelimit``; one Cache under them all.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from .._sync._cache import Cache
from ..counters import Counters, counter_tables, create_counter_tables
from ..flags import Flags, flag_tables
from ..flags import create_tables as create_flag_tables
from ..ratelimit import RateLimiter
from ..sessions import SessionStore, session_tables
from ..sessions import create_tables as create_session_tables
from ._naive import PAGE_TTL, RATE
from ._shop import ShopDB, quiet

__all__ = ["VeneerStack"]


class VeneerStack:
    name = "veneer"

    def __init__(self, redis_url: str, db: ShopDB, prefix: str, namespace: str) -> None:
        self.db = db
        engine = db.engine
        self.cache = Cache.from_url(redis_url, namespace=namespace, ttl=PAGE_TTL)
        self.cache.ready()
        self.session_tables = session_tables(name=f"{prefix}sessions")
        create_session_tables(engine, self.session_tables)
        self.sessions = SessionStore(engine, self.cache, tables=self.session_tables)
        self.counter_tables = counter_tables(prefix=f"{prefix}counter")
        create_counter_tables(engine, self.counter_tables)
        # exact: acknowledged means committed; Redis losing everything loses no count.
        self.counters = Counters(
            self.cache, engine, {"views": "exact"}, tables=self.counter_tables, flusher=True
        )
        self.flag_tables = flag_tables(prefix=f"{prefix}flag")
        create_flag_tables(engine, self.flag_tables)
        self.flags = Flags(
            engine, self.cache, tables=self.flag_tables, defaults={"new-checkout": False}
        )
        self.limiter = RateLimiter(self.cache, f"{RATE}/second", name="shop")

    def setup(self, flag_on: bool) -> None:
        self.flags.start()
        self.flags.set_flag("new-checkout", enabled=flag_on, actor="operator")

    def close(self) -> None:
        for close in (self.limiter.close, self.flags.close, self.counters.close, self.cache.close):
            try:
                close()
            except Exception:
                pass

    def drop_tables(self) -> None:
        with quiet():
            for meta in (
                self.session_tables.metadata,
                self.counter_tables.all[0].metadata,
                self.flag_tables.metadata,
            ):
                meta.drop_all(self.db.engine)

    def restarts(self) -> int:
        return self.cache.stats().cold_restarts

    def redis_back(self, restarts_before: int) -> bool:
        stats = self.cache.stats()
        return stats.cold_restarts > restarts_before and stats.breaker_state == "closed"

    def login(self, uid: int) -> str:
        name = self.db.load_user(uid)
        token, _ = self.sessions.create(uid, {"name": name})
        return token

    def session(self, token: str) -> dict[str, Any] | None:
        found = self.sessions.load(token)
        return None if found is None else found.data

    def allow(self, uid: int) -> bool:
        return self.limiter.hit(f"user:{uid}").allowed

    def flag(self, uid: int) -> bool:
        return self.flags.enabled("new-checkout", subject=f"user:{uid}")

    def product(self, pid: int) -> dict[str, Any]:
        value: dict[str, Any] = self.cache.get_or_load(
            f"product:{pid}", lambda: self.db.load_product(pid)
        )
        return value

    def count_view(self, pid: int) -> None:
        self.counters.incr("views", str(pid))

    def catalog(self, limit: int) -> dict[str, Any]:
        value: dict[str, Any] = self.cache.get_or_load(
            "catalog", lambda: self.db.load_catalog(limit)
        )
        return value

    def update_product(self, pid: int) -> int:
        version = self.db.update_product(pid)  # committed
        self.cache.invalidate(f"product:{pid}")  # after the commit: no reader refills the old row
        return version

    # ---------------------------------------------------------------- the demo's probes

    def held_views(self, pids: list[int]) -> dict[int, int]:
        """What the database holds of each view counter, read past veneer (plain SQL).

        Totals and journal in one statement, so one snapshot: a compaction moving rows
        from the journal into the totals between two reads would hide them.
        """
        t = self.counter_tables
        rows = sa.union_all(
            sa.select(t.totals.c.key.label("key"), t.totals.c.total.label("n")).where(
                t.totals.c.name == "views"
            ),
            sa.select(t.journal.c.key.label("key"), t.journal.c.delta.label("n")).where(
                t.journal.c.name == "views"
            ),
        ).subquery()
        held = dict.fromkeys(pids, 0)
        with quiet(), self.db.engine.connect() as conn:
            for key, n in conn.execute(
                sa.select(rows.c.key, sa.func.sum(rows.c.n)).group_by(rows.c.key)
            ):
                held[int(key)] = held.get(int(key), 0) + int(n)
        return held

    def alive(self, tokens: list[str]) -> set[str]:
        with quiet():
            return {t for t in tokens if self.sessions.load(t) is not None}
