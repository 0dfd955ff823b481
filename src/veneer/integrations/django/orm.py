"""ORM invalidation after commit, and ``cached_get``.

Every ``post_save``, ``post_delete`` and ``m2m_changed`` of a watched model queues
invalidations on the connection's open transaction (``transaction.on_commit``):
the row's key and the model's tag. They are sent after the outermost commit,
never inside the transaction; a rollback (of the transaction, or of the savepoint
they were queued in) drops them. Outside a transaction the write is already
committed: they are sent at once.

``cached_get(Model, pk=...)`` reads one row through the cache. Its entry is the
row's column values (the safe codec stores them), rebuilt into an instance with
``Model.from_db``, as a queryset would. Inside a transaction that has written
that row (or invalidated its model), it reads the database: a transaction reads
its own writes.

Settings (all optional)::

    VENEER_ORM = {
        "CACHE": "default",      # a CACHES alias whose BACKEND is VeneerCache
        "MODELS": None,          # None: every model; or ["shop.Product", ...]
        "TTL": 300,              # cached_get's default TTL, seconds
    }
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections, router, transaction

from ..._sync._cache import Cache
from .._caches import apply_op
from ._codecs import DjangoCodec, Stored, UncacheableValue

__all__ = [
    "acached_get",
    "cached_get",
    "connect_signals",
    "invalidate_after_commit",
    "invalidate_model",
    "model_tag",
    "row_key",
    "rows_tag",
]

log = logging.getLogger("veneer.django")

M = TypeVar("M")
Op = tuple[str, str]

_PREFIX = "~orm:"
_DEFAULT_TTL = 300.0
_safe = DjangoCodec("msgpack")
_MISSING: Any = object()


# ------------------------------------------------------------------- names


def _label(model: Any) -> str:
    return str(model._meta.concrete_model._meta.label_lower)


def _db_suffix(using: str | None) -> str:
    return "" if using in (None, DEFAULT_DB_ALIAS) else "@" + str(using)


def row_key(model: Any, pk: Any, using: str | None = None) -> str:
    """The cache key of one row (``~orm:app.model:pk``, ``@alias`` for another database)."""
    meta = model._meta.concrete_model._meta
    return f"{_PREFIX}{meta.label_lower}:{meta.pk.to_python(pk)}{_db_suffix(using)}"


def model_tag(model: Any, using: str | None = None) -> str:
    """The tag every write of ``model`` invalidates: tag what you derive from its table
    (lists, counts) with it, through ``caches[alias].veneer``."""
    return f"{_PREFIX}{_label(model)}{_db_suffix(using)}"


def rows_tag(model: Any, using: str | None = None) -> str:
    """The tag of every ``cached_get`` entry of ``model`` (see :func:`invalidate_model`)."""
    return f"{_PREFIX}{_label(model)}:rows{_db_suffix(using)}"


# ----------------------------------------------------------------- settings


def _options() -> dict[str, Any]:
    return dict(getattr(settings, "VENEER_ORM", None) or {})


def _cache() -> Cache:
    from django.core.cache import caches

    from ._backend import VeneerCache

    alias = _options().get("CACHE", "default")
    backend = caches[alias]
    if not isinstance(backend, VeneerCache):
        raise ImproperlyConfigured(
            f"VENEER_ORM['CACHE'] = {alias!r} is a {type(backend).__name__}: ORM invalidation "
            "and cached_get need a cache whose BACKEND is veneer.integrations.django.VeneerCache"
        )
    return backend.veneer


def _watched(model: Any) -> bool:
    names = _options().get("MODELS")
    if names is None:
        return True
    label = model._meta.concrete_model._meta.label
    return label in names or label.lower() in names


# ------------------------------------------------------------ transactions


class _Batch:
    """The invalidations queued in one savepoint level of one transaction: an
    ``on_commit`` callback, so Django drops it with a rollback of that level."""

    __slots__ = ("ops",)

    def __init__(self) -> None:
        self.ops: dict[Op, None] = {}

    def __call__(self) -> None:
        _send(self.ops)


def _registered(connection: Any, batch: _Batch) -> bool:
    return any(entry[1] is batch for entry in connection.run_on_commit)


def _batches(connection: Any) -> dict[tuple[str, ...], _Batch]:
    batches: dict[tuple[str, ...], _Batch] | None = getattr(connection, "_veneer_batches", None)
    if batches is None:
        batches = {}
        connection._veneer_batches = batches
    return batches


def _queue(ops: Iterable[Op], using: str | None = None) -> None:
    """Send ``ops`` after the commit of ``using``'s open transaction (now, outside one)."""
    alias = using or DEFAULT_DB_ALIAS
    connection = connections[alias]
    if not connection.in_atomic_block:
        _send(dict.fromkeys(ops))
        return
    batches = _batches(connection)
    level = tuple(connection.savepoint_ids)
    batch = batches.get(level)
    if batch is None or not _registered(connection, batch):
        batch = batches[level] = _Batch()
        # robust: a failure here must not stop the application's own callbacks.
        transaction.on_commit(batch, using=alias, robust=True)
    batch.ops.update(dict.fromkeys(ops))


def _pending(using: str, ops: Iterable[Op]) -> bool:
    """Whether ``using``'s open transaction has queued any of ``ops``."""
    connection = connections[using]
    if not connection.in_atomic_block:
        return False
    wanted = list(ops)
    for batch in _batches(connection).values():
        if _registered(connection, batch) and any(op in batch.ops for op in wanted):
            return True
    return False


def _send(ops: dict[Op, None]) -> None:
    if not ops:
        return
    cache = _cache()
    for kind, name in ops:
        # Redis unreachable: the cache queues it and retries until applied.
        apply_op(cache, kind, name)


# ----------------------------------------------------------------- signals


def _row_ops(model: Any, pk: Any, using: str | None) -> list[Op]:
    ops: list[Op] = [("t", model_tag(model, using))]
    if pk is not None:
        ops.append(("k", row_key(model, pk, using)))
    return ops


def _saved_or_deleted(sender: Any, instance: Any, using: str | None = None, **_: Any) -> None:
    if _watched(sender):
        _queue(_row_ops(sender, instance.pk, using), using)


def _m2m_changed(
    sender: Any,
    instance: Any,
    action: str,
    model: Any,
    pk_set: set[Any] | None,
    using: str | None = None,
    **_: Any,
) -> None:
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    ops: list[Op] = []
    if _watched(type(instance)):
        ops += _row_ops(type(instance), instance.pk, using)
    if _watched(model):
        ops.append(("t", model_tag(model, using)))
        ops += [("k", row_key(model, pk, using)) for pk in pk_set or ()]
    if _watched(sender):
        ops.append(("t", model_tag(sender, using)))
    if ops:
        _queue(ops, using)


def connect_signals() -> None:
    """Connect the hooks (the app's ``ready()`` does; idempotent)."""
    from django.db.models import signals

    for signal, receiver in (
        (signals.post_save, _saved_or_deleted),
        (signals.post_delete, _saved_or_deleted),
        (signals.m2m_changed, _m2m_changed),
    ):
        signal.connect(receiver, dispatch_uid=f"veneer.{signal}.{receiver.__name__}")


def invalidate_model(model: Any, using: str | None = None) -> None:
    """Invalidate everything cached of ``model``: its tag and every ``cached_get`` row.

    For writes that send no signals (``QuerySet.update``, ``bulk_create``,
    ``bulk_update``, raw SQL): call it after them, inside the same transaction if
    there is one (it is sent after the commit)."""
    _queue([("t", model_tag(model, using)), ("t", rows_tag(model, using))], using)


def invalidate_after_commit(
    *, keys: Iterable[str] = (), tags: Iterable[str] = (), using: str | None = None
) -> None:
    """Invalidate keys and tags of the ORM cache (``VENEER_ORM['CACHE']``'s veneer
    cache) after ``using``'s open transaction commits; at once outside one."""
    _queue([*(("k", key) for key in keys), *(("t", tag) for tag in tags)], using)


# ---------------------------------------------------------------- cached_get


def _schema(model: Any) -> tuple[list[str], int]:
    names = [field.attname for field in model._meta.concrete_fields]
    return names, zlib.crc32("|".join(names).encode())


def cached_get(
    model: type[M], /, *, pk: Any, ttl: float | None = None, using: str | None = None
) -> M:
    """``model._default_manager.get(pk=pk)`` through the cache; raises ``DoesNotExist``.

    One database read per key across processes on a miss (the cache's lease); a
    missing row is cached too. The entry is invalidated after every committed
    write of the row (or of the model through :func:`invalidate_model`)."""
    meta: Any = model._meta  # type: ignore[attr-defined]
    alias = using or router.db_for_read(model)
    key = row_key(model, pk, alias)
    names, digest = _schema(model)
    seconds = float(_options().get("TTL", _DEFAULT_TTL)) if ttl is None else float(ttl)

    def read() -> Any:
        rows = list(
            model._default_manager.using(alias)  # type: ignore[attr-defined]
            .filter(pk=pk)
            .values_list(*names)[:1]
        )
        return [digest, list(rows[0])] if rows else None

    if _pending(alias, [("k", key), ("t", model_tag(model, alias)), ("t", rows_tag(model, alias))]):
        row = read()  # this transaction changed it: read its own writes, do not cache
    else:
        cache = _cache()
        try:
            stored = cache.get_or_load(
                key,
                lambda: _safe.store(read()),
                ttl=min(seconds, cache.options.max_ttl),
                tags=[rows_tag(model, alias)],
            )
        except UncacheableValue as exc:
            log.warning("veneer: %s rows are not cached: %s", meta.label, exc)
            row = read()
        else:
            row = stored.load() if type(stored) is Stored else stored
            if row is not None and row[0] != digest:
                cache.invalidate(key)  # written by a process with other fields: re-read
                row = read()
    if row is None:
        raise meta.model.DoesNotExist(f"{meta.object_name} matching pk={pk!r} does not exist.")
    instance: M = meta.model.from_db(alias, names, row[1])
    return instance


async def acached_get(
    model: type[M], /, *, pk: Any, ttl: float | None = None, using: str | None = None
) -> M:
    """:func:`cached_get` for async code (the ORM runs where Django runs sync code)."""
    instance: M = await sync_to_async(cached_get, thread_sensitive=True)(
        model, pk=pk, ttl=ttl, using=using
    )
    return instance
