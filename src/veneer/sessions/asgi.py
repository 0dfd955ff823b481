"""ASGI middleware: ``request.session`` (Starlette-compatible) backed by an AsyncSessionStore.

::

    app.add_middleware(SessionMiddleware, store=store)          # Starlette / FastAPI

    @app.get("/")
    async def home(request):
        request.session["visits"] = request.session.get("visits", 0) + 1

    @app.post("/login")
    async def login(request):
        user = await check_password(...)
        await request.session.login(user.id)      # new token (rotation), same data

The session is a mapping put in ``scope["session"]``, which is where Starlette's
``Request.session`` reads it. It is lazy: nothing is asked of the store until
the app touches it, and a request without a session cookie never asks at all.
It is saved when the response starts, only if its data changed. A cookie that
names no live session (malformed, forged, revoked, expired) gives a fresh,
empty, anonymous session: its token is issued only if the app writes to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any, Literal

from .._errors import VeneerError
from ._async._store import AsyncSessionStore
from ._model import Session
from ._portal import in_portal, portal_await, run_with_portal

__all__ = ["LazySession", "SessionMiddleware", "SessionNotLoaded"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_MAX_COOKIE_HEADER = 8192


class SessionNotLoaded(VeneerError, RuntimeError):
    """The session was first used synchronously where it could not be loaded."""


class LazySession(MutableMapping[str, Any]):
    """The request's session data; loads from the store on first use.

    Read and write it like a dict. From a task the middleware does not drive
    (one you created, or behind ``BaseHTTPMiddleware``), call ``await
    session.load()`` before the first synchronous use.
    """

    def __init__(self, store: AsyncSessionStore, token: str | None) -> None:
        self._store = store
        self._token = token
        self._loop = asyncio.get_running_loop()
        self._session: Session | None = None
        self._data: dict[str, Any] | None = None if token else {}
        self._set_token: str | None = None
        self._expire_cookie = False

    def __repr__(self) -> str:
        state = "not loaded" if self._data is None else f"keys={sorted(self._data)!r}"
        return f"LazySession({state})"  # never the token

    # ------------------------------------------------------------- loading

    @property
    def loaded(self) -> bool:
        return self._data is not None

    async def load(self) -> None:
        """Load the session now (no-op if already loaded)."""
        if self._data is not None:
            return
        session = await self._store.load(self._token or "")
        if session is None:
            # Unknown, forged, revoked or expired: a fresh anonymous session. The
            # presented token is never reused (no fixation) and its cookie is dropped.
            self._expire_cookie = True
            self._data = {}
        else:
            self._session = session
            self._data = session.data

    def _ensure(self) -> dict[str, Any]:
        if self._data is not None:
            return self._data
        if in_portal():
            portal_await(self.load())
        else:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not None:
                raise SessionNotLoaded(
                    "request.session was first used synchronously in a task that "
                    "SessionMiddleware does not drive (behind BaseHTTPMiddleware, or in a "
                    "task you created): call `await request.session.load()` first, or add "
                    "SessionMiddleware inside that middleware"
                )
            # A worker thread (a sync endpoint): wait for the load on the event loop.
            asyncio.run_coroutine_threadsafe(self.load(), self._loop).result()
        assert self._data is not None
        return self._data

    # --------------------------------------------------------- the mapping

    def __getitem__(self, key: str) -> Any:
        return self._ensure()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._ensure()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._ensure()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ensure())

    def __len__(self) -> int:
        return len(self._ensure())

    def __contains__(self, key: object) -> bool:
        return key in self._ensure()

    def __eq__(self, other: object) -> bool:
        return self._ensure() == (dict(other) if isinstance(other, LazySession) else other)

    __hash__ = None  # type: ignore[assignment]

    # ------------------------------------------------------ login, logout

    @property
    def user_id(self) -> str | None:
        self._ensure()
        return None if self._session is None else self._session.user_id

    @property
    def id(self) -> str | None:
        """The session's id (the token's digest, safe to log), or None before it exists."""
        self._ensure()
        return None if self._session is None else self._session.id

    async def login(self, user_id: str | int) -> None:
        """Bind the session to ``user_id`` with a new token (the old one dies), keeping data."""
        await self.load()
        assert self._data is not None
        if self._session is not None:
            await self._store.save(self._session)  # rotation copies the stored data
            rotated = await self._store.rotate(self._token or "", user_id=user_id)
            if rotated is not None:
                self._adopt(*rotated)
                return
        self._adopt(*await self._store.create(user_id, self._data))

    async def rotate(self) -> None:
        """A new token for the same session (after a privilege change)."""
        await self.load()
        if self._session is not None:
            await self._store.save(self._session)
            rotated = await self._store.rotate(self._token or "")
            if rotated is not None:
                self._adopt(*rotated)

    async def logout(self) -> None:
        """Revoke this session and clear its data; the cookie is removed."""
        await self.load()
        if self._session is not None:
            await self._store.revoke(self._session)
        self._session = None
        self._data = {}
        self._set_token = None
        self._expire_cookie = True

    async def logout_everywhere(self) -> int:
        """Revoke every session of this session's user (this one included)."""
        await self.load()
        user = None if self._session is None else self._session.user_id
        count = 0 if user is None else await self._store.revoke_user(user)
        self._session = None
        self._data = {}
        self._set_token = None
        self._expire_cookie = True
        return count

    def _adopt(self, token: str, session: Session) -> None:
        self._token = self._set_token = token
        self._session = session
        self._data = session.data
        self._expire_cookie = False

    # ------------------------------------------------------------- commit

    async def commit(self) -> Literal["set", "expire", None]:
        """At response start: store what changed; say what the cookie must do."""
        if self._data is None:
            return None  # never touched: no store access at all
        if self._session is None:
            if self._data:
                self._adopt(*await self._store.create(None, self._data))
                return "set"
            return "expire" if self._expire_cookie and self._token else None
        if not self._data and self._set_token is None:
            # clear() on a stored session (Starlette's logout idiom) revokes it.
            await self._store.revoke(self._session)
            return "expire"
        self._session.data = self._data
        await self._store.save(self._session)
        return "set" if self._set_token is not None else None

    @property
    def token_to_set(self) -> str | None:
        return self._set_token


class SessionMiddleware:
    """Sessions for any ASGI app, stored by an :class:`AsyncSessionStore`.

    Cookie defaults are the safe ones: ``Secure``, ``HttpOnly``, ``SameSite=Lax``,
    ``Path=/``, no ``Domain``, and a ``Max-Age`` of the store's absolute timeout
    (``max_age=None`` for a browser-session cookie). ``secure=False`` is for local
    development over plain HTTP only.
    """

    def __init__(
        self,
        app: ASGIApp,
        store: AsyncSessionStore,
        *,
        cookie_name: str = "session",
        max_age: int | Literal["absolute"] | None = "absolute",
        path: str = "/",
        domain: str | None = None,
        secure: bool = True,
        httponly: bool = True,
        samesite: Literal["lax", "strict", "none"] = "lax",
    ) -> None:
        if not isinstance(store, AsyncSessionStore):
            raise TypeError(f"SessionMiddleware needs an AsyncSessionStore, got {store!r}")
        if samesite == "none" and not secure:
            raise ValueError("samesite='none' requires secure=True (browsers refuse it)")
        if not cookie_name or any(c in cookie_name for c in ' ;,="\t\r\n'):
            raise ValueError(f"cookie_name={cookie_name!r} is not a valid cookie name")
        self.app = app
        self.store = store
        self.cookie_name = cookie_name
        if max_age == "absolute":
            max_age = int(store.options.absolute_timeout)
        attributes = [f"Path={path}"]
        if max_age is not None:
            attributes.append(f"Max-Age={int(max_age)}")
        if domain:
            attributes.append(f"Domain={domain}")
        if secure:
            attributes.append("Secure")
        if httponly:
            attributes.append("HttpOnly")
        attributes.append(f"SameSite={samesite.capitalize()}")
        self._attributes = "; ".join(attributes)
        expired = [a for a in attributes if not a.startswith("Max-Age")]
        self._expired = "; ".join(["Max-Age=0", *expired])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        token = self._token_of(scope)
        session = LazySession(self.store, token)
        scope["session"] = session
        if scope["type"] == "websocket":
            await self._run(token, self.app(scope, receive, send))
            return

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                action = await session.commit()
                if action is not None:
                    headers = list(message.get("headers", []))
                    value = (
                        f"{self.cookie_name}={session.token_to_set}; {self._attributes}"
                        if action == "set"
                        else f'{self.cookie_name}=""; {self._expired}'
                    )
                    headers.append((b"set-cookie", value.encode("latin-1")))
                    message["headers"] = headers
            await send(message)

        await self._run(token, self.app(scope, receive, send_with_cookie))

    @staticmethod
    async def _run(token: str | None, app_call: Any) -> None:
        if token is None:
            await app_call  # nothing to load lazily: no portal needed
        else:
            await run_with_portal(app_call)

    def _token_of(self, scope: Scope) -> str | None:
        """The session cookie's value, or None; any malformed header is just no cookie."""
        for name, value in scope.get("headers", ()):
            if name != b"cookie" or len(value) > _MAX_COOKIE_HEADER:
                continue
            for part in value.decode("latin-1").split(";"):
                key, sep, found = part.strip().partition("=")
                if sep and key == self.cookie_name:
                    return found.strip().strip('"') or None
        return None
