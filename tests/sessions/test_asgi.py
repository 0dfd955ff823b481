"""The ASGI middleware through a real Starlette app on uvicorn (loopback), driven by httpx:
the login flow, secure cookie defaults, laziness, saving only on change, bad cookies."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa

from sessions.asgi_app import ServedApp
from sessions.conftest import StatementCounter
from veneer.sessions import SessionTables


@pytest.fixture
def served(redis_url: str, namespace: str, tables: SessionTables) -> Iterator[ServedApp]:
    app = ServedApp(redis_url, namespace, tables)
    yield app
    app.stop()


def cookie_of(response: httpx.Response) -> tuple[str, str] | None:
    """(value, attributes) of the session cookie the response sets, if any."""
    for header in response.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        if name == "session":
            value, _, attributes = rest.partition(";")
            return value, attributes.strip()
    return None


class Browser:
    """An HTTP client that keeps the session cookie the way a browser would (by hand, so
    that the Secure attribute does not stop it over loopback HTTP)."""

    def __init__(self, base: str) -> None:
        self.client = httpx.Client(base_url=base, timeout=10)
        self.token: str | None = None

    def request(self, method: str, path: str) -> httpx.Response:
        headers = {"cookie": f"session={self.token}"} if self.token else {}
        response = self.client.request(method, path, headers=headers)
        assert response.status_code == 200, response.text
        cookie = cookie_of(response)
        if cookie is not None:
            self.token = cookie[0] if cookie[0] not in ("", '""') else None
        return response

    def close(self) -> None:
        self.client.close()


def test_login_flow(served: ServedApp) -> None:
    """Create, read, rotate on login, log out, and log out everywhere, over HTTP."""
    laptop, phone = Browser(served.url), Browser(served.url)
    try:
        first = laptop.request("POST", "/cart/apple")
        value, attributes = cookie_of(first) or ("", "")
        for attribute in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=1209600"):
            assert attribute in attributes.split("; ")
        anonymous = laptop.token
        assert anonymous == value and len(base64.urlsafe_b64decode(value + "=")) == 32
        assert laptop.request("GET", "/me").json() == {"user": None, "cart": ["apple"]}
        assert laptop.request("GET", "/sync-cart").json() == {"cart": ["apple"]}  # a thread

        laptop.request("POST", "/login/7")
        assert laptop.token is not None and laptop.token != anonymous  # rotated on login
        assert laptop.request("GET", "/me").json() == {"user": "7", "cart": ["apple"]}
        stolen = Browser(served.url)
        stolen.token = anonymous
        assert stolen.request("GET", "/me").json() == {"user": None, "cart": []}

        phone.request("POST", "/login/7")
        laptop.request("POST", "/cart/pear")
        assert laptop.request("GET", "/me").json()["cart"] == ["apple", "pear"]
        assert phone.request("GET", "/me").json()["user"] == "7"

        before = laptop.token
        laptop.request("POST", "/logout")
        assert laptop.token is None
        stolen.token = before
        assert stolen.request("GET", "/me").json() == {"user": None, "cart": []}
        assert phone.request("GET", "/me").json()["user"] == "7"

        laptop.request("POST", "/login/7")
        assert laptop.request("POST", "/logout-everywhere").json() == {"revoked": 2}
        assert phone.request("GET", "/me").json() == {"user": None, "cart": []}
        assert phone.token is None  # its dead cookie was removed
        stolen.close()
    finally:
        laptop.close()
        phone.close()


def test_lazy_and_saved_only_on_change(served: ServedApp) -> None:
    """A request that never touches the session makes no store access; 1,000 read-only
    requests make no database write; a change is written once."""
    counter = StatementCounter(served.engine.sync_engine)
    browser = Browser(served.url)
    try:
        browser.request("POST", "/cart/tea")
        loads = served.store.stats().loads
        statements = len(counter.statements)
        for _ in range(20):
            assert cookie_of(browser.request("GET", "/static")) is None
        assert served.store.stats().loads == loads
        assert len(counter.statements) == statements
        for _ in range(1000):
            browser.request("GET", "/me")
        assert counter.writes == 1  # the INSERT of the first request
        browser.request("POST", "/cart/milk")
        assert counter.writes == 2 and served.store.stats().saves == 1
        browser.request("POST", "/clear")  # Starlette's logout idiom revokes the session
        assert browser.token is None and served.store.stats().revocations == 1
    finally:
        browser.close()


def test_bad_cookies_give_a_fresh_anonymous_session(
    served: ServedApp, engine: sa.Engine, tables: SessionTables
) -> None:
    """Malformed cookie headers never cause a 500; a forged token is never adopted: the
    first write issues a new token, and no row is named after the forged one."""
    forged = base64.urlsafe_b64encode(b"\x07" * 32).decode().rstrip("=")
    with httpx.Client(base_url=served.url, timeout=10) as client:
        headers: tuple[str | bytes, ...] = (
            "session=",
            "session=%%%",
            "session=" + "x" * 5000,
            "garbage",
            ";;;=;",
            b"session=\xff\xfe\x80",
            f"session={forged}",
        )
        for header in headers:
            response = client.get("/me", headers={"cookie": header})
            assert response.status_code == 200
            assert response.json() == {"user": None, "cart": []}
        response = client.post("/cart/x", headers={"cookie": f"session={forged}"})
        assert response.status_code == 200
        new_token = (cookie_of(response) or ("", ""))[0]
        assert new_token and new_token != forged
    forged_id = hashlib.sha256(forged.encode()).hexdigest()
    with engine.connect() as conn:
        ids = conn.execute(sa.select(tables.sessions.c.id)).scalars().all()
    assert forged_id not in ids and hashlib.sha256(new_token.encode()).hexdigest() in ids
