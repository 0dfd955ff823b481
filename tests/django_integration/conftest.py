"""The Django project of the integration tests: settings, tables of this run on
PostgreSQL, private redis-servers, and uvicorn serving the ASGI app in another process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

os.environ.setdefault("VENEER_DJ_SUFFIX", f"{os.getpid()}_{uuid.uuid4().hex[:6]}")
os.environ["DJANGO_SETTINGS_MODULE"] = "django_integration.settings"

import django

django.setup()

from django.db import connection  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

from servers import RedisServer, free_port, reap  # noqa: E402
from veneer.integrations.django import _config  # noqa: E402

from .shop.models import Item, Tag  # noqa: E402

TESTS = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def shop_tables() -> Iterator[None]:
    """The shop's tables, named for this run, created once and dropped at the end."""
    with connection.schema_editor() as editor:
        editor.create_model(Tag)
        editor.create_model(Item)
    yield
    with connection.schema_editor() as editor:
        editor.delete_model(Item)
        editor.delete_model(Tag)
    connection.close()


@pytest.fixture(scope="session")
def session_tables_made(shop_tables: None) -> Iterator[None]:
    """The session tables of this run (VENEER_SESSIONS['TABLE']), dropped at the end."""
    from veneer.integrations.django import sessions

    made = sessions.create_session_tables()
    sessions.close_all()
    yield
    import sqlalchemy as sa

    from servers import POSTGRES_URL

    engine = sa.create_engine(POSTGRES_URL)
    made.metadata.drop_all(engine)
    engine.dispose()


def caches_setting(url: str, namespace: str, **options: Any) -> dict[str, Any]:
    return {
        "default": {
            "BACKEND": "veneer.integrations.django.VeneerCache",
            "LOCATION": url,
            "OPTIONS": {"namespace": namespace, **options},
        },
        "control": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"socket_timeout": 0.1, "socket_connect_timeout": 0.1},
        },
    }


@pytest.fixture
def use_caches(namespace: str) -> Iterator[Callable[..., None]]:
    """Point CACHES at a Redis for this test; every veneer cache built is closed after."""
    stack: list[Any] = []

    def use(url: str, **options: Any) -> None:
        override = override_settings(CACHES=caches_setting(url, namespace, **options))
        override.enable()
        stack.append(override)

    yield use
    for override in reversed(stack):
        override.disable()
    _config.close_all()
    from veneer.integrations.django import sessions

    sessions.close_all()


@pytest.fixture
def django_cache(redis_server: RedisServer, use_caches: Callable[..., None]) -> Any:
    """caches['default']: a VeneerCache on the shared private Redis, this test's namespace."""
    from django.core.cache import caches

    # Redis is up for these tests: a loaded machine's 100 ms stall is no outage here.
    use_caches(redis_server.url, redis_timeout=1.0, connect_timeout=1.0)
    return caches["default"]


class DjangoServer:
    """uvicorn serving the test project's ASGI app in its own process, stopped by PID."""

    def __init__(self, redis_url: str, namespace: str, log: Path) -> None:
        self.port = free_port()
        self.log = log
        env = {
            **os.environ,
            "VENEER_DJ_REDIS": redis_url,
            "VENEER_DJ_NAMESPACE": namespace,
            "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        }
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "django_integration.asgi:application",
             "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "warning", "--no-access-log"],
            env=env, cwd=TESTS, stdout=subprocess.DEVNULL, stderr=self._log,
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=10.0)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.client.get("/ping/")
                return
            except httpx.TransportError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    err = log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"uvicorn did not start: {err}") from None
                time.sleep(0.05)

    def get(self, path: str) -> httpx.Response:
        return self.client.get(path)

    def stop(self) -> None:
        self.client.close()
        reap(self.proc)
        self._log.close()


@pytest.fixture
def make_server(namespace: str, tmp_path: Path) -> Iterator[Callable[..., DjangoServer]]:
    started: list[DjangoServer] = []

    def make(redis_url: str) -> DjangoServer:
        server = DjangoServer(redis_url, namespace, tmp_path / f"uvicorn{len(started)}.log")
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
