"""Django sessions on veneer.sessions (PostgreSQL rows, a private Redis, uvicorn serving
the project): Redis losing everything logs nobody out, cycle_key kills the old key in
every process, and a user can be logged out everywhere."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from django.contrib.sessions.backends.cache import SessionStore as CacheSession

from integrations.conftest import eventually
from servers import POSTGRES_URL, RedisServer
from veneer.integrations.django import sessions
from veneer.integrations.django.sessions import SessionStore

from .conftest import DjangoServer

pytestmark = pytest.mark.usefixtures("session_tables_made")


@pytest.fixture
def server(
    django_cache: Any, redis_server: RedisServer, make_server: Callable[..., DjangoServer]
) -> DjangoServer:
    return make_server(redis_server.url)


def _login(server: DjangoServer, uid: int) -> httpx.Client:
    browser = httpx.Client(base_url=server.url, timeout=10.0)
    assert browser.get(f"/login/{uid}/").status_code == 200
    assert browser.cookies.get("sessionid")
    return browser


def test_flushall_logs_nobody_out(server: DjangoServer, redis_server: RedisServer) -> None:
    """20 logged-in browsers keep their sessions (sync and async views) across a FLUSHALL;
    the same sessions in Django's cache engine on the same Redis are all lost."""
    browsers = [_login(server, uid) for uid in range(20)]
    control = []
    for uid in range(20):
        session = CacheSession()
        session["_auth_user_id"] = str(uid)
        session.save()
        control.append(session.session_key)
    try:
        for browser in browsers:
            assert browser.get("/whoami/").json()["user"] is not None
        redis_server.client().flushall()
        for uid, browser in enumerate(browsers):
            for path in ("/whoami/", "/awhoami/"):
                assert browser.get(path).json() == {"user": str(uid), "cart": [uid]}
        lost = [key for key in control if not CacheSession(key).exists(key)]
        assert len(lost) == 20  # the control: Redis was its only copy
    finally:
        for browser in browsers:
            browser.close()


def test_cycle_key_kills_the_old_key_everywhere(server: DjangoServer, django_cache: Any) -> None:
    """After cycle_key in the server, the old key is refused by the server and by this
    process (which had it in its cache), and the new key carries the same data."""
    browser = _login(server, 7)
    old = browser.cookies["sessionid"]
    assert SessionStore(old).load()["cart"] == [7]  # this process now caches it
    browser.get("/cycle/")
    new = browser.cookies["sessionid"]
    assert new != old
    assert browser.get("/whoami/").json() == {"user": "7", "cart": [7]}
    eventually(lambda: not SessionStore(old).exists(old), timeout=2.0)
    assert SessionStore(old).load() == {}
    stale = httpx.get(server.url + "/whoami/", cookies={"sessionid": old})
    assert stale.json() == {"user": None, "cart": None}
    browser.close()


def test_revoke_user_logs_out_every_device(server: DjangoServer, django_cache: Any) -> None:
    """revoke_user ends every session of the user, in every process; others stay."""
    phones = [_login(server, 42) for _ in range(3)]
    other = _login(server, 43)
    assert len(sessions.sessions_of(42)) == 3
    assert sessions.revoke_user(42) == 3
    for phone in phones:
        eventually(lambda phone=phone: phone.get("/whoami/").json()["user"] is None, timeout=2.0)
        phone.close()
    assert other.get("/whoami/").json()["user"] == "43"
    other.close()


def test_read_only_requests_write_nothing_and_only_digests_are_stored(
    server: DjangoServer, django_cache: Any
) -> None:
    """50 reads of a session write no row (lazy touch); the table holds digests, never the
    key a browser presents."""
    browser = _login(server, 5)
    key = browser.cookies["sessionid"]
    table = sessions.tables().sessions
    engine = sa.create_engine(POSTGRES_URL)
    try:
        with engine.connect() as conn:
            before = conn.execute(sa.select(table.c.last_seen, table.c.data)).all()
            ids = set(conn.execute(sa.select(table.c.id)).scalars())
        for _ in range(50):
            assert browser.get("/whoami/").json()["user"] == "5"
        with engine.connect() as conn:
            assert conn.execute(sa.select(table.c.last_seen, table.c.data)).all() == before
    finally:
        engine.dispose()
        browser.close()
    assert key not in ids
    assert all(len(i) == 64 for i in ids)


def test_a_save_after_logout_elsewhere_does_not_resurrect(django_cache: Any) -> None:
    """A session deleted in one context cannot be brought back by a save in another
    (Django's UpdateError), and a login binds the new key to the user."""
    from django.contrib.sessions.backends.base import UpdateError

    first = SessionStore()
    first["x"] = 1
    first.save()
    SessionStore(first.session_key).delete()
    first["x"] = 2
    with pytest.raises(UpdateError):
        first.save()
    anonymous = SessionStore()
    anonymous["cart"] = [1]
    anonymous.save()
    before = anonymous.session_key
    anonymous["_auth_user_id"] = "900"
    anonymous.save()
    assert anonymous.session_key != before
    assert SessionStore(before).load() == {}
    assert [s.user_id for s in sessions.sessions_of(900)] == ["900"]
