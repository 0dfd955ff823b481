"""Purging expired rows in bounded batches, and counting what the tables hold."""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlalchemy as sa

from ._tables import SessionTables

__all__ = ["purge_expired", "session_counts"]


def purge_expired(
    engine: sa.Engine,
    tables: SessionTables,
    *,
    batch: int = 1000,
    pause: float = 0.0,
    max_batches: int | None = None,
    now: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Delete rows whose ``expires_at`` has passed; returns how many were deleted.

    Each batch is its own transaction of at most ``batch`` rows picked through the
    ``expires_at`` index (on PostgreSQL ``FOR UPDATE SKIP LOCKED``, so a purge never
    waits for the application's writes), so no lock is held for long.
    """
    if batch < 1:
        raise ValueError("batch must be >= 1")
    sessions = tables.sessions
    cutoff = time.time() if now is None else now
    picked = (
        sa.select(sessions.c.id)
        .where(sessions.c.expires_at < cutoff)
        .order_by(sessions.c.expires_at)
        .limit(batch)
    )
    if engine.dialect.name == "postgresql":
        picked = picked.with_for_update(skip_locked=True)
    statement = sa.delete(sessions).where(sessions.c.id.in_(picked.scalar_subquery()))
    deleted = 0
    batches = 0
    while max_batches is None or batches < max_batches:
        with engine.begin() as conn:
            count = conn.execute(statement).rowcount
        batches += 1
        deleted += count
        if progress is not None:
            progress(deleted)
        if count < batch:
            break
        if pause:
            time.sleep(pause)
    return deleted


def session_counts(engine: sa.Engine, tables: SessionTables) -> dict[str, int]:
    """Live, expired (purgeable), anonymous and authenticated sessions; users with a stamp."""
    s = tables.sessions.c
    now = time.time()
    live = s.expires_at >= now
    query = sa.select(
        sa.func.count().label("rows"),
        sa.func.count().filter(live).label("live"),
        sa.func.count().filter(~live).label("expired"),
        sa.func.count().filter(live, s.user_id.is_(None)).label("anonymous"),
        sa.func.count().filter(live, s.user_id.is_not(None)).label("authenticated"),
        sa.func.count(sa.distinct(s.user_id)).filter(live).label("users"),
    )
    with engine.connect() as conn:
        row = conn.execute(query).one()
        stamps = conn.execute(sa.select(sa.func.count()).select_from(tables.users)).scalar_one()
    counts = {key: int(value or 0) for key, value in row._mapping.items()}
    counts["revoked_users"] = int(stamps)
    return counts
