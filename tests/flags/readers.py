"""Code that the flags tests' reader processes run (importable by multiprocessing's spawn)."""

from __future__ import annotations

import os
import time
from typing import Any

import sqlalchemy as sa

from veneer import Cache
from veneer.flags import Flags, flag_tables


def follow(
    redis_url: str,
    namespace: str,
    database_url: str,
    prefix: str,
    flag: str,
    options: dict[str, Any],
    events: Any,
    stop: Any,
) -> None:
    """Evaluate ``flag`` in a loop and report every change of its answer, with the
    (system-wide) monotonic time it was first seen, and every change of the client's
    mode. Exceptions from evaluation are counted and reported at the end."""
    pid = os.getpid()
    engine = sa.create_engine(database_url, pool_size=2, max_overflow=2)
    cache = Cache.from_url(redis_url, namespace=namespace, ttl=60)
    flags = Flags(engine, cache, tables=flag_tables(prefix=prefix), **options)
    flags.start()
    errors = 0
    last = flags.enabled(flag)
    mode = flags.status().mode
    events.put(("ready", pid, last, mode))
    next_status = time.monotonic()
    try:
        while not stop.is_set():
            try:
                value = flags.enabled(flag)
            except Exception:
                errors += 1
                continue
            if value != last:
                events.put(("seen", pid, value, time.monotonic()))
                last = value
            now = time.monotonic()
            if now >= next_status:
                next_status = now + 0.02
                current = flags.status().mode
                if current != mode:
                    mode = current
                    events.put(("mode", pid, mode, now))
            time.sleep(0.0005)
    finally:
        events.put(("done", pid, errors, flags.status().load_failures))
        flags.close()
        cache.close()
        engine.dispose()
