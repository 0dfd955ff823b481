"""Code the revocation test's second process runs (importable by multiprocessing's spawn)."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa


def watch_tokens(
    redis_url: str,
    postgres_url: str,
    names: tuple[str, str],
    namespace: str,
    options: dict[str, Any],
    commands: Any,
    reports: Any,
) -> None:
    """Process B: for each token sent, load it in a loop until it is refused.

    Reports ``("accepting", token)`` once it has loaded it, ``("lost", t)`` when its cache
    stops hearing invalidations, then ``("refused", t_refused, t_last_accept_started,
    stats)`` with monotonic times (shared by processes on one host).
    """
    from veneer import Cache
    from veneer.sessions import SessionStore, session_tables

    engine = sa.create_engine(postgres_url)
    tables = session_tables(name=names[0], users_name=names[1])
    cache = Cache.from_url(
        redis_url, namespace=namespace, redis_timeout=0.1, breaker_cooldown=0.3, max_stale=30
    )
    cache.ready(5)
    store = SessionStore(engine, cache, tables=tables, **options)
    reports.put(("up", time.monotonic()))
    try:
        while True:
            token = commands.get(timeout=60)
            if token is None:
                return
            accepted = 0
            lost_reported = False
            last_accept = 0.0
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                started = time.monotonic()
                session = store.load(token)
                if session is None:
                    reports.put(("refused", time.monotonic(), last_accept, store.stats()))
                    break
                last_accept = started
                accepted += 1
                if accepted == 3:
                    reports.put(("accepting", token))
                if not lost_reported and not cache.ready(0):
                    lost_reported = True
                    reports.put(("lost", time.monotonic()))
                time.sleep(0.001)
            else:
                reports.put(("timeout", time.monotonic(), last_accept, store.stats()))
    finally:
        cache.close()
        engine.dispose()
