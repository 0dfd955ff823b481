"""A small Starlette app using veneer sessions, served by a real uvicorn on a loopback port."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from servers import POSTGRES_URL, free_port
from veneer import AsyncCache
from veneer.sessions import AsyncSessionStore, SessionTables
from veneer.sessions.asgi import SessionMiddleware


async def me(request: Request) -> JSONResponse:
    session = request.session  # Starlette's own accessor: scope["session"]
    return JSONResponse({"user": session.user_id, "cart": session.get("cart", [])})


async def add_to_cart(request: Request) -> JSONResponse:
    request.session.setdefault("cart", []).append(request.path_params["item"])
    return JSONResponse({"cart": request.session["cart"]})


async def login(request: Request) -> JSONResponse:
    await request.session.login(request.path_params["uid"])
    request.session["name"] = f"user {request.path_params['uid']}"
    return JSONResponse({"user": request.session.user_id})


async def logout(request: Request) -> PlainTextResponse:
    await request.session.logout()
    return PlainTextResponse("bye")


async def logout_everywhere(request: Request) -> JSONResponse:
    return JSONResponse({"revoked": await request.session.logout_everywhere()})


async def clear(request: Request) -> PlainTextResponse:
    request.session.clear()  # Starlette's logout idiom
    return PlainTextResponse("cleared")


async def static(request: Request) -> PlainTextResponse:
    return PlainTextResponse("a file the session is not needed for")


def sync_cart(request: Request) -> JSONResponse:  # a plain def: Starlette runs it in a thread
    return JSONResponse({"cart": request.session.get("cart", [])})


class ServedApp:
    """The app on uvicorn in a thread of this process; stopped by the test, not by signal."""

    def __init__(self, redis_url: str, namespace: str, tables: SessionTables, **mw: Any) -> None:
        self.engine: AsyncEngine = create_async_engine(POSTGRES_URL)
        self.cache = AsyncCache.from_url(redis_url, namespace=namespace)
        self.store = AsyncSessionStore(self.engine, self.cache, tables=tables)
        routes = [
            Route("/me", me),
            Route("/cart/{item}", add_to_cart, methods=["POST"]),
            Route("/login/{uid}", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/logout-everywhere", logout_everywhere, methods=["POST"]),
            Route("/clear", clear, methods=["POST"]),
            Route("/static", static),
            Route("/sync-cart", sync_cart),
        ]

        @asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            await self.cache.ready()
            yield
            await self.cache.close()  # on the server's own loop, where they were used
            await self.engine.dispose()

        app = Starlette(
            lifespan=lifespan,
            routes=routes,
            middleware=[Middleware(SessionMiddleware, store=self.store, **mw)],
        )
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
