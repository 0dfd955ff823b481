"""The public names of veneer.sessions are pinned: adding or removing one is deliberate."""

from __future__ import annotations

import veneer
import veneer.sessions


def test_sessions_public_api() -> None:
    assert sorted(veneer.sessions.__all__) == [
        "AsyncSessionStore",
        "Session",
        "SessionDataTooLarge",
        "SessionStats",
        "SessionStore",
        "SessionTables",
        "SourceUnavailable",
        "UnencodableSessionData",
        "create_tables",
        "purge_expired",
        "session_tables",
        "tables_ddl",
    ]
    for name in veneer.sessions.__all__:
        assert getattr(veneer.sessions, name).__module__.startswith("veneer.sessions")
    for name in ("SessionDataTooLarge", "SourceUnavailable", "UnencodableSessionData"):
        assert issubclass(getattr(veneer.sessions, name), veneer.VeneerError)


def test_asgi_public_api() -> None:
    import veneer.sessions.asgi

    assert sorted(veneer.sessions.asgi.__all__) == [
        "LazySession",
        "SessionMiddleware",
        "SessionNotLoaded",
    ]
