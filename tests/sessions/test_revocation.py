"""Revocation is immediate: revoke_user in process A, process B refuses the token within
100 ms with Redis up, and within revocation_check of noticing the outage with Redis down."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from typing import Any

from servers import POSTGRES_URL, RedisServer
from sessions.workers import watch_tokens
from veneer.sessions import SessionStats, SessionStore, SessionTables

REVOCATION_CHECK = 0.5


def expect(reports: Any, kind: str, timeout: float = 30) -> tuple[Any, ...]:
    message = reports.get(timeout=timeout)
    assert message[0] == kind, message
    return tuple(message)


def test_revoke_user_reaches_another_process(
    own_redis: RedisServer,
    make_store: Callable[..., SessionStore],
    tables: SessionTables,
    namespace: str,
) -> None:
    """Redis up: B refuses within 100 ms of A's revoke_user returning, by the invalidation
    (no database re-check). Redis killed: B serves from its L1 while it cannot hear
    invalidations, and refuses at its next database re-check after A's revoke_user, at most
    revocation_check later."""
    store = make_store(
        url=own_redis.url, cache_options={"redis_timeout": 0.1, "breaker_cooldown": 0.3}
    )
    context = multiprocessing.get_context("spawn")
    commands, reports = context.Queue(), context.Queue()
    names = (tables.sessions.name, tables.users.name)
    options = {"revocation_check": REVOCATION_CHECK}
    other = context.Process(
        target=watch_tokens,
        args=(own_redis.url, POSTGRES_URL, names, namespace, options, commands, reports),
        daemon=True,
    )
    other.start()
    try:
        expect(reports, "up")

        # Redis up: the after-commit invalidation reaches B's L1.
        token, _ = store.create("alice", {})
        commands.put(token)
        expect(reports, "accepting")
        store.revoke_user("alice")
        revoked = time.monotonic()
        _, refused, last_accept, stats = expect(reports, "refused")
        assert isinstance(stats, SessionStats)
        assert refused - revoked <= 0.1, refused - revoked
        assert last_accept <= revoked + 0.1
        assert stats.revocation_checks == 0  # the invalidation did it, not a re-check

        # Redis down: B cannot hear the invalidation; its database re-check refuses.
        token, _ = store.create("bob", {})
        commands.put(token)
        expect(reports, "accepting")
        own_redis.kill()
        _, lost_at = expect(reports, "lost")
        checks_before = stats.revocation_checks
        assert store.revoke_user("bob") == 1  # committed; the invalidation is queued
        revoked = time.monotonic()
        kind, refused, last_accept, stats = reports.get(timeout=30)
        assert kind == "refused", (kind, stats)
        assert stats.revoked_by_check == 1
        # Counted, not raced: B refused at its first or second re-check after the revoke
        # (one may have been in flight), and every accept started before that check.
        checks_after = stats.revocation_checks - checks_before
        assert 1 <= checks_after <= 2 + int((refused - lost_at) / REVOCATION_CHECK), stats
        assert refused - revoked <= REVOCATION_CHECK + 0.5, refused - revoked
        assert last_accept < refused
        commands.put(None)
        other.join(20)
        assert other.exitcode == 0
    finally:
        if other.is_alive():
            other.kill()
            other.join(5)
