"""Invalidation for writes that bypass the application: a PostgreSQL trigger names the
changed keys over ``pg_notify``, and :class:`PgInvalidationListener` invalidates them.

NOTIFY is transactional: a notification is delivered when the writing transaction
commits and never when it rolls back, so the trigger gives after-commit
invalidation for any writer (psql, another service, a migration). It is not
durable: notifications sent while no listener is connected are lost, so a
listener can bump whole namespaces whenever it (re)connects (``resync_namespaces``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import string
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from .._errors import ConfigurationError
from .._keys import validate_namespace
from .._random import rng
from ._caches import CachesByNamespace, CacheSource
from ._worker import ThreadedWorker

__all__ = [
    "DEFAULT_CHANNEL",
    "PgInvalidationListener",
    "drop_trigger_sql",
    "install_trigger",
    "libpq_dsn",
    "trigger_sql",
    "trigger_statements",
]

log = logging.getLogger("veneer")

DEFAULT_CHANNEL = "veneer_invalidate"

# pg_notify refuses payloads of 8000 bytes or more.
_MAX_PAYLOAD = 8000
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_MAX_IDENT = 63


# ----------------------------------------------------------------- SQL helpers


def _ident(name: str) -> str:
    if not name or "\x00" in name:
        raise ValueError(f"invalid SQL identifier {name!r}")
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    # With standard_conforming_strings (on by default since PostgreSQL 9.1)
    # only the quote needs doubling.
    if "\x00" in text:
        raise ValueError("SQL text cannot hold NUL")
    return "'" + text.replace("'", "''") + "'"


def _qualified(name: str, schema: str | None) -> str:
    return f"{_ident(schema)}.{_ident(name)}" if schema else _ident(name)


def _short(name: str) -> str:
    """``name``, or a hashed shortening when longer than an identifier (63 bytes)."""
    if len(name.encode()) <= _MAX_IDENT:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return name.encode()[: _MAX_IDENT - 9].decode(errors="ignore") + "_" + digest


def _template_sql(template: str, row: str) -> str:
    """``"user:{id}"`` as SQL over ``row`` (OLD or NEW): ``'user:' || (NEW."id")::text``.

    A NULL column makes the whole key NULL, and NULL keys are dropped.
    """
    parts: list[str] = []
    for literal, field, spec, conversion in string.Formatter().parse(template):
        if literal:
            parts.append(_literal(literal))
        if field is None:
            continue
        if spec or conversion or not _IDENT.fullmatch(field):
            raise ValueError(
                f"key template {template!r}: {{{field}}} must name a column, like {{id}}; "
                "use key_sql= for expressions"
            )
        parts.append(f"({row}.{_ident(field)})::text")
    if not parts:
        raise ValueError("empty key template")
    return " || ".join(parts)


def _row_exprs(templates: Sequence[str], raw: Sequence[str], row: str) -> list[str]:
    exprs = [_template_sql(t, row) for t in templates]
    exprs += [f"({expr.replace('{row}', row)})::text" for expr in raw]
    return exprs


def trigger_statements(
    table: str,
    *,
    namespace: str,
    keys: Sequence[str] = (),
    tags: Sequence[str] = (),
    key_sql: Sequence[str] = (),
    tag_sql: Sequence[str] = (),
    channel: str = DEFAULT_CHANNEL,
    schema: str | None = None,
    name: str | None = None,
    truncate: bool = True,
) -> list[str]:
    """The statements of :func:`trigger_sql`, one per item (for drivers that run one at a time)."""
    try:
        validate_namespace(namespace)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    if not (keys or tags or key_sql or tag_sql):
        raise ValueError("name at least one key or tag (keys=, tags=, key_sql= or tag_sql=)")
    if not channel or len(channel.encode()) > _MAX_IDENT:
        raise ValueError(f"channel {channel!r} must be 1 to {_MAX_IDENT} bytes")
    base = name or _short(f"veneer_notify_{table}")
    function = _qualified(base, schema)
    target = _qualified(table, schema)
    ns, chan = _literal(namespace), _literal(channel)

    def collect(row: str) -> str:
        lines = []
        key_exprs = _row_exprs(keys, key_sql, row)
        tag_exprs = _row_exprs(tags, tag_sql, row)
        if key_exprs:
            lines.append(f"    v_keys := v_keys || ARRAY[{', '.join(key_exprs)}]::text[];")
        if tag_exprs:
            lines.append(f"    v_tags := v_tags || ARRAY[{', '.join(tag_exprs)}]::text[];")
        return "\n".join(lines)

    def notify(keys_expr: str, tags_expr: str) -> str:
        return (
            f"json_build_object('namespace', {ns}, 'keys', {keys_expr}, 'tags', {tags_expr})::text"
        )

    everything = f"json_build_object('namespace', {ns}, 'all', true)::text"
    body = f"""CREATE OR REPLACE FUNCTION {function}() RETURNS trigger
LANGUAGE plpgsql AS $veneer$
DECLARE
  v_keys text[] := ARRAY[]::text[];
  v_tags text[] := ARRAY[]::text[];
  v_payload text;
  v_item text;
BEGIN
  -- Generated by veneer: tells `veneer listen` which cache keys this change made stale.
  IF TG_OP = 'TRUNCATE' THEN
    PERFORM pg_notify({chan}, {everything});
    RETURN NULL;
  END IF;
  IF TG_OP <> 'INSERT' THEN
{collect("OLD")}
  END IF;
  IF TG_OP <> 'DELETE' THEN
{collect("NEW")}
  END IF;
  v_keys := ARRAY(SELECT DISTINCT k FROM unnest(v_keys) AS k WHERE k IS NOT NULL);
  v_tags := ARRAY(SELECT DISTINCT t FROM unnest(v_tags) AS t WHERE t IS NOT NULL);
  IF cardinality(v_keys) = 0 AND cardinality(v_tags) = 0 THEN
    RETURN NULL;
  END IF;
  v_payload := {notify("v_keys", "v_tags")};
  IF octet_length(v_payload) < {_MAX_PAYLOAD} THEN
    PERFORM pg_notify({chan}, v_payload);
    RETURN NULL;
  END IF;
  -- Too long for one notification: one per name; a name too long alone, the namespace.
  FOREACH v_item IN ARRAY v_keys LOOP
    v_payload := {notify("ARRAY[v_item]", "ARRAY[]::text[]")};
    IF octet_length(v_payload) >= {_MAX_PAYLOAD} THEN
      v_payload := {everything};
    END IF;
    PERFORM pg_notify({chan}, v_payload);
  END LOOP;
  FOREACH v_item IN ARRAY v_tags LOOP
    v_payload := {notify("ARRAY[]::text[]", "ARRAY[v_item]")};
    IF octet_length(v_payload) >= {_MAX_PAYLOAD} THEN
      v_payload := {everything};
    END IF;
    PERFORM pg_notify({chan}, v_payload);
  END LOOP;
  RETURN NULL;
END
$veneer$"""
    row_trigger = _ident(_short(f"{base}_row"))
    statements = [
        body,
        f"DROP TRIGGER IF EXISTS {row_trigger} ON {target}",
        f"CREATE TRIGGER {row_trigger} AFTER INSERT OR UPDATE OR DELETE ON {target} "
        f"FOR EACH ROW EXECUTE FUNCTION {function}()",
    ]
    statement_trigger = _ident(_short(f"{base}_truncate"))
    statements.append(f"DROP TRIGGER IF EXISTS {statement_trigger} ON {target}")
    if truncate:
        statements.append(
            f"CREATE TRIGGER {statement_trigger} AFTER TRUNCATE ON {target} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )
    return statements


def trigger_sql(
    table: str,
    *,
    namespace: str,
    keys: Sequence[str] = (),
    tags: Sequence[str] = (),
    key_sql: Sequence[str] = (),
    tag_sql: Sequence[str] = (),
    channel: str = DEFAULT_CHANNEL,
    schema: str | None = None,
    name: str | None = None,
    truncate: bool = True,
) -> str:
    """SQL that creates a trigger function and triggers on ``table`` naming stale keys.

    After every committed INSERT, UPDATE or DELETE of a row, the listener on
    ``channel`` receives ``{"namespace": ..., "keys": [...], "tags": [...]}``
    with the keys and tags computed from the old row (UPDATE, DELETE) and the
    new row (INSERT, UPDATE); after a TRUNCATE, ``{"namespace": ..., "all": true}``.

    ``keys`` / ``tags`` are templates over columns: ``"user:{id}"`` renders as
    ``'user:' || (NEW."id")::text`` (PostgreSQL's text form of the value, so
    match it in the application's keys). ``key_sql`` / ``tag_sql`` are raw SQL
    expressions in which ``{row}`` stands for ``OLD`` or ``NEW``, for example
    ``"'user-email:' || lower({row}.email)"``. Keys that come out NULL are skipped.

    The statements are idempotent (``CREATE OR REPLACE``, ``DROP TRIGGER IF
    EXISTS``): run them in a migration, or with :func:`install_trigger`.
    """
    statements = trigger_statements(
        table,
        namespace=namespace,
        keys=keys,
        tags=tags,
        key_sql=key_sql,
        tag_sql=tag_sql,
        channel=channel,
        schema=schema,
        name=name,
        truncate=truncate,
    )
    return ";\n\n".join(statements) + ";\n"


def drop_trigger_sql(table: str, *, schema: str | None = None, name: str | None = None) -> str:
    """SQL that removes what :func:`trigger_sql` created for ``table``."""
    base = name or _short(f"veneer_notify_{table}")
    target = _qualified(table, schema)
    return (
        f"DROP TRIGGER IF EXISTS {_ident(_short(base + '_row'))} ON {target};\n"
        f"DROP TRIGGER IF EXISTS {_ident(_short(base + '_truncate'))} ON {target};\n"
        f"DROP FUNCTION IF EXISTS {_qualified(base, schema)}();\n"
    )


def install_trigger(bind: Any, table: str, /, **options: Any) -> None:
    """Run :func:`trigger_statements` in one transaction.

    ``bind``: a libpq DSN, a psycopg connection, or a SQLAlchemy engine or connection.
    """
    statements = trigger_statements(table, **options)
    if isinstance(bind, str):
        import psycopg

        with psycopg.connect(libpq_dsn(bind)) as conn:
            for statement in statements:
                conn.execute(statement.encode())
        return
    if hasattr(bind, "exec_driver_sql"):  # SQLAlchemy Connection
        for statement in statements:
            bind.exec_driver_sql(statement)
        return
    if hasattr(bind, "begin") and hasattr(bind, "dialect"):  # SQLAlchemy Engine
        with bind.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
        return
    with bind.transaction():  # psycopg Connection
        for statement in statements:
            bind.execute(statement.encode())


def libpq_dsn(url: str) -> str:
    """A SQLAlchemy URL (``postgresql+psycopg://...``) as the libpq DSN psycopg connects with."""
    match = re.match(r"(postgres(?:ql)?)\+[A-Za-z0-9_]+://", url)
    if match:
        return "postgresql://" + url[match.end() :]
    return url


# ------------------------------------------------------------------- listener


class PgInvalidationListener(ThreadedWorker):
    """Listens on a PostgreSQL channel and invalidates the keys the trigger names.

    ``dsn``: a libpq DSN (or SQLAlchemy URL). ``caches``: a Redis URL (a cache
    per namespace is built), one sync :class:`~veneer.Cache` (its namespace only)
    or a factory ``namespace -> Cache``. If the connection drops, it reconnects
    with exponential backoff (with jitter, capped at ``max_backoff``). Because
    notifications sent while disconnected are lost, every namespace in
    ``resync_namespaces`` is invalidated whole each time LISTEN is (re)established.
    """

    _thread_name = "veneer-pg-listener"

    def __init__(
        self,
        dsn: str,
        caches: CacheSource,
        /,
        *,
        channel: str = DEFAULT_CHANNEL,
        resync_namespaces: Iterable[str] = (),
        poll_interval: float = 0.5,
        keepalive: float = 10.0,
        max_backoff: float = 5.0,
        connect_timeout: float = 5.0,
        cache_options: dict[str, Any] | None = None,
    ) -> None:
        self.dsn = libpq_dsn(dsn)
        self.channel = channel
        self._caches = CachesByNamespace(caches, **(cache_options or {}))
        self.resync_namespaces = tuple(resync_namespaces)
        self.poll_interval = poll_interval
        self.keepalive = keepalive
        self.max_backoff = max_backoff
        self.connect_timeout = connect_timeout
        super().__init__()
        self._listening = threading.Event()
        self.backend_pid: int | None = None
        """The server process of the current LISTEN connection (None while disconnected)."""
        self.connections = 0
        """How many times LISTEN was established."""
        self.received = 0
        self.applied = 0
        """Invalidations Redis applied at once."""
        self.queued = 0
        """Invalidations the cache had to queue (Redis unreachable); it retries them."""
        self.malformed = 0

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    def wait_listening(self, timeout: float = 10.0) -> bool:
        """Wait until LISTEN is established (or ``timeout``)."""
        return self._listening.wait(timeout)

    # -- running

    def run_forever(self) -> None:
        """Listen until :meth:`stop`, reconnecting after any connection failure."""
        import psycopg

        backoff = 0.1
        while not self._stop.is_set():
            try:
                self._listen()
                backoff = 0.1
            except (psycopg.Error, OSError) as exc:
                log.warning(
                    "veneer listen: connection lost (%s); reconnecting in %.1fs", exc, backoff
                )
            except Exception:
                log.exception("veneer listen: unexpected error; reconnecting in %.1fs", backoff)
            finally:
                self._listening.clear()
                self.backend_pid = None
            if self._stop.wait(backoff * rng.uniform(0.8, 1.2)):
                break
            backoff = min(backoff * 2, self.max_backoff)

    def _listen(self) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(
            self.dsn, autocommit=True, connect_timeout=max(1, round(self.connect_timeout))
        ) as conn:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            self.backend_pid = conn.info.backend_pid
            self.connections += 1
            self._resync()
            self._listening.set()
            quiet_since = time.monotonic()
            while not self._stop.is_set():
                for notify in conn.notifies(timeout=self.poll_interval):
                    quiet_since = time.monotonic()
                    self.handle(notify.payload)
                    if self._stop.is_set():
                        return
                if time.monotonic() - quiet_since >= self.keepalive:
                    # A silent channel and a dead connection look alike: ask.
                    conn.execute("SELECT 1")
                    quiet_since = time.monotonic()

    def _resync(self) -> None:
        for namespace in self.resync_namespaces:
            cache = self._caches.get(namespace)
            if cache is not None:
                self._count(cache.invalidate_all())

    def handle(self, payload: str) -> None:
        """Apply one notification's payload (what the trigger sends)."""
        self.received += 1
        try:
            message = json.loads(payload)
            namespace = message["namespace"]
            keys = message.get("keys") or []
            tags = message.get("tags") or []
            everything = bool(message.get("all"))
            if not isinstance(namespace, str) or not all(
                isinstance(n, str) for n in (*keys, *tags)
            ):
                raise TypeError("names must be strings")
            validate_namespace(namespace)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self.malformed += 1
            log.warning("veneer listen: ignored a malformed notification (%s)", exc)
            return
        cache = self._caches.get(namespace)
        if cache is None:
            log.debug("veneer listen: no cache for namespace %r", namespace)
            return
        try:
            if everything:
                self._count(cache.invalidate_all())
                return
            for key in keys:
                self._count(cache.invalidate(key))
            for tag in tags:
                self._count(cache.invalidate_tag(tag))
        except Exception:
            # Redis errors never get here (the cache queues them); anything else must
            # not stop the listener.
            log.exception("veneer listen: applying a notification failed")

    def _count(self, applied: bool) -> None:
        if applied:
            self.applied += 1
        else:
            self.queued += 1

    def close(self, timeout: float = 10.0) -> None:
        """Stop (waiting at most ``timeout`` for the thread), and close the caches this
        listener built."""
        self.stop(timeout)
        self._caches.close()

    def __enter__(self) -> PgInvalidationListener:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
