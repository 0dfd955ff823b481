"""``SESSION_ENGINE = "veneer.integrations.django.sessions"``: Django sessions on
:mod:`veneer.sessions`.

The database is the truth (a row per session, in Django's database, read through
SQLAlchemy); the cache only makes reads fast, so a FLUSHALL or a dead Redis logs
nobody out. What :mod:`veneer.sessions` adds to Django's own backends:

- only a digest of the session key is stored (a dump gives nothing to present);
- ``cycle_key()`` (every login) is one transaction: the old key is dead when it
  returns, in every process;
- a login is bound to the user (``_auth_user_id``): :func:`revoke_user` logs a
  user out everywhere, :func:`sessions_of` lists their devices;
- activity is recorded lazily (once per ``TOUCH_INTERVAL``), so a read-only
  request writes nothing, and the idle timeout follows activity without
  ``SESSION_SAVE_EVERY_REQUEST``.

Settings (all optional)::

    VENEER_SESSIONS = {
        "CACHE": "default",        # a VeneerCache alias: its Redis, in namespace "<ns>.sessions"
        "DATABASE": "default",     # the Django database holding the tables
        "TABLE": "veneer_sessions",
        "IDLE_TIMEOUT": None,      # default: SESSION_COOKIE_AGE
        "ABSOLUTE_TIMEOUT": None,  # default: the larger of 14 days and the idle timeout
        "TOUCH_INTERVAL": 60, "REVOCATION_CHECK": 2, "CACHE_TTL": 300,
        "MAX_DATA_BYTES": 65536, "DATA_FORMAT": "msgpack", "SECRET": None,
    }
"""

from __future__ import annotations

import threading
import time
from typing import Any

import sqlalchemy as sa
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

from ..._sync._cache import Cache
from ...sessions import Session, SessionTables, create_tables, purge_expired, session_tables
from ...sessions import SessionStore as VeneerStore
from ._config import backend_settings

__all__ = ["SessionStore", "revoke_user", "session_store", "sessions_of", "tables"]

_DAY = 86_400.0
# Django's per-session expiry (set_expiry), as an absolute time: kept in the row's
# data beside Django's own ``_session_expiry``, never shown to the application.
_EXPIRY = "_veneer_expiry"
_STORE_OPTIONS = {
    "IDLE_TIMEOUT": "idle_timeout",
    "ABSOLUTE_TIMEOUT": "absolute_timeout",
    "TOUCH_INTERVAL": "touch_interval",
    "REVOCATION_CHECK": "revocation_check",
    "CACHE_TTL": "cache_ttl",
    "MAX_DATA_BYTES": "max_data_bytes",
    "DATA_FORMAT": "data_format",
    "KEY_PREFIX": "key_prefix",
}
_KNOWN = {*_STORE_OPTIONS, "CACHE", "DATABASE", "TABLE", "SECRET", "NAMESPACE"}


# ------------------------------------------------------------- one per process


def _settings() -> dict[str, Any]:
    configured = dict(getattr(settings, "VENEER_SESSIONS", None) or {})
    unknown = sorted(set(configured) - _KNOWN)
    if unknown:
        raise ImproperlyConfigured(
            f"VENEER_SESSIONS: unknown key(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(_KNOWN))}"
        )
    return configured


def _engine_url(alias: str) -> tuple[sa.URL, dict[str, Any]]:
    """A SQLAlchemy URL for Django's database ``alias`` (its current settings: under the
    test runner, the test database)."""
    connection = connections[alias]
    found = connection.settings_dict
    if connection.vendor == "postgresql":
        try:
            import psycopg  # noqa: F401

            driver = "postgresql+psycopg"
        except ImportError:
            driver = "postgresql+psycopg2"
        url = sa.URL.create(
            driver,
            username=found.get("USER") or None,
            password=found.get("PASSWORD") or None,
            host=found.get("HOST") or None,
            port=int(found["PORT"]) if found.get("PORT") else None,
            database=found.get("NAME") or None,
        )
        django_only = {"isolation_level", "server_side_binding", "pool", "assume_role", "context"}
        options = {k: v for k, v in (found.get("OPTIONS") or {}).items() if k not in django_only}
        return url, {"connect_args": options}
    if connection.vendor == "sqlite":
        name = str(found.get("NAME") or "")
        if not name or name == ":memory:" or ("mode=memory" in name and "cache=shared" not in name):
            raise ImproperlyConfigured(
                f"DATABASES[{alias!r}] is a private in-memory SQLite database, which no other "
                "connection can open: give it a file (or use PostgreSQL) for veneer sessions"
            )
        if name.startswith("file:"):
            return sa.make_url(
                "sqlite+pysqlite:///" + name + ("&" if "?" in name else "?") + "uri=true"
            ), {}
        return sa.make_url("sqlite+pysqlite:///" + name), {}
    raise ImproperlyConfigured(
        f"veneer sessions keep their rows in PostgreSQL or SQLite; DATABASES[{alias!r}] is "
        f"{connection.vendor}"
    )


def tables() -> SessionTables:
    """The session tables as configured (``VENEER_SESSIONS['TABLE']``)."""
    return session_tables(name=_settings().get("TABLE", "veneer_sessions"))


_lock = threading.Lock()
_stores: dict[Any, tuple[VeneerStore, sa.Engine, Cache]] = {}


def session_store() -> VeneerStore:
    """This process's :class:`veneer.sessions.SessionStore` for the current settings."""
    return _current()[0]


def _current() -> tuple[VeneerStore, sa.Engine, Cache]:
    configured = _settings()
    alias = configured.get("DATABASE", "default")
    cache_alias = configured.get("CACHE", "default")
    url, engine_options = _engine_url(alias)
    cache_entry = settings.CACHES.get(cache_alias, {})
    identity = (repr(sorted(configured.items(), key=str)), str(url), repr(cache_entry))
    found = _stores.get(identity)
    if found is not None:
        return found
    with _lock:
        found = _stores.get(identity)
        if found is None:
            found = _build(configured, url, engine_options, cache_alias, cache_entry)
            _stores[identity] = found
    return found


def _build(
    configured: dict[str, Any],
    url: sa.URL,
    engine_options: dict[str, Any],
    cache_alias: str,
    entry: dict[str, Any],
) -> tuple[VeneerStore, sa.Engine, Cache]:
    if entry.get("BACKEND") != "veneer.integrations.django.VeneerCache":
        raise ImproperlyConfigured(
            f"VENEER_SESSIONS['CACHE'] = {cache_alias!r} must be a CACHES alias whose BACKEND "
            "is veneer.integrations.django.VeneerCache (sessions use its Redis)"
        )
    backend = backend_settings(entry.get("LOCATION"), entry.get("OPTIONS") or {})
    # A cache of their own (the sessions' typed rows, the default codec), in a namespace
    # of their own: the Django cache's clear() does not touch them.
    cache = Cache.from_url(
        backend.location,
        namespace=configured.get("NAMESPACE", backend.namespace + ".sessions"),
        max_ttl=backend.max_ttl,
        **dict(backend.core),
    )
    age = float(getattr(settings, "SESSION_COOKIE_AGE", 14 * _DAY))
    options: dict[str, Any] = {"idle_timeout": age, "absolute_timeout": max(14 * _DAY, age)}
    for name, option in _STORE_OPTIONS.items():
        if configured.get(name) is not None:
            options[option] = configured[name]
    engine = sa.create_engine(
        url, pool_size=5, max_overflow=10, pool_pre_ping=True, **engine_options
    )
    store = VeneerStore(engine, cache, tables=tables(), secret=configured.get("SECRET"), **options)
    return store, engine, cache


def create_session_tables() -> SessionTables:
    """Create the tables in ``VENEER_SESSIONS['DATABASE']`` if missing (the app's migration
    does this for ``manage.py migrate``); returns them."""
    store, engine, _cache = _current()
    return create_tables(engine, store.tables)


def close_all() -> None:
    """Close every store's engine and cache (tests; a process simply exits)."""
    with _lock:
        found = list(_stores.values())
        _stores.clear()
    for _store, engine, cache in found:
        engine.dispose()
        cache.close()


def revoke_user(user: Any) -> int:
    """Log ``user`` (a user or a primary key) out everywhere; how many sessions ended."""
    return session_store().revoke_user(_user_id(getattr(user, "pk", user)))


def sessions_of(user: Any) -> list[Session]:
    """``user``'s live sessions (a device list), newest activity first."""
    return session_store().sessions_of(_user_id(getattr(user, "pk", user)))


def _user_id(value: Any) -> str:
    return str(value)


# ------------------------------------------------------------------ the engine


class SessionStore(SessionBase):  # type: ignore[misc]  # Django is untyped
    """Django's session API on :class:`veneer.sessions.SessionStore`."""

    _session_key: str | None  # SessionBase's validating property

    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        self._stored: Session | None = None

    # reads

    def load(self) -> dict[str, Any]:
        session = self._live(self.session_key)
        self._stored = session
        if session is None:
            self._session_key = None
            return {}
        data = dict(session.data)
        data.pop(_EXPIRY, None)
        return data

    def exists(self, session_key: str | None) -> bool:
        return self._live(session_key) is not None

    def _live(self, session_key: str | None) -> Session | None:
        if not session_key:
            return None
        session = session_store().load(session_key)
        if session is None:
            return None
        deadline = session.data.get(_EXPIRY)
        if isinstance(deadline, int | float) and time.time() >= deadline:
            return None  # Django's per-session expiry (set_expiry) has passed
        return session

    # writes

    def _payload(self) -> dict[str, Any]:
        data = dict(self._get_session(no_load=self._session_key is None))
        data.pop(_EXPIRY, None)
        if data.get("_session_expiry") is not None:
            data[_EXPIRY] = self.get_expiry_date().timestamp()
        return data

    def _user(self, data: dict[str, Any]) -> str | None:
        user = data.get(SESSION_KEY)
        return None if user is None else _user_id(user)

    def create(self) -> None:
        data = self._payload()
        token, session = session_store().create(self._user(data), data)
        self._session_key = token
        self._stored = session
        self.modified = True

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            self.create()
            return
        if must_create:
            # Keys are issued by the store; a key chosen elsewhere is never created.
            raise CreateError
        store = session_store()
        data = self._payload()
        session = self._stored if self._stored is not None else self._live(self.session_key)
        if session is None:
            raise UpdateError  # logged out (or expired) in another context: never resurrect
        user = self._user(data)
        if user != session.user_id:
            # A login (or a change of user): a new key bound to the user, the old one dead.
            rotated = store.rotate(self.session_key, user_id=user)
            if rotated is None:
                raise UpdateError
            self._session_key, session = rotated
        session.data = data
        if not store.save(session) and store.load(self.session_key) is None:
            raise UpdateError
        self._stored = session

    def delete(self, session_key: str | None = None) -> None:
        key = session_key if session_key is not None else self.session_key
        if key is None:
            return
        session_store().revoke(key)
        if key == self.session_key:
            self._stored = None

    def cycle_key(self) -> None:
        """A new key for the same data, the old key dead in every process when this returns
        (one transaction: rotate). Django calls it at every login."""
        data = self._session
        key = self.session_key
        rotated = session_store().rotate(key) if key else None
        if rotated is None:
            self.create()
        else:
            self._session_key, self._stored = rotated
        self._session_cache = data
        self.modified = True

    async def acycle_key(self) -> None:
        await sync_to_async(self.cycle_key)()

    @classmethod
    def clear_expired(cls) -> None:
        """Delete expired rows in bounded batches (``manage.py clearsessions``)."""
        store, engine, _cache = _current()
        purge_expired(engine, store.tables)
