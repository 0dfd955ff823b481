"""ORM invalidation after commit (real PostgreSQL, a private Redis, and a uvicorn server as
the other process): nothing is sent inside a transaction, everything after its commit,
nothing after a rollback, and no stale set survives a forced race."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
import redis
from django.db import connection, transaction

from integrations.conftest import eventually
from servers import RedisServer
from veneer._sync._invalidations import decode_message
from veneer.integrations.django.orm import (
    cached_get,
    invalidate_after_commit,
    invalidate_model,
    model_tag,
    row_key,
)

from .conftest import DjangoServer
from .shop.models import Item, Tag

pytestmark = pytest.mark.usefixtures("shop_tables")


class Boom(Exception):
    pass


class Heard:
    """Every invalidation published in the namespace, as (kind, name), in order."""

    def __init__(self, url: str, namespace: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.pubsub = self.client.pubsub()
        self.pubsub.subscribe("veneer:inv:{" + namespace + "}")
        self.pubsub.get_message(timeout=1.0)  # the subscription's confirmation

    def drain(self, wait: float = 0.2) -> list[tuple[str, str]]:
        heard = []
        while (message := self.pubsub.get_message(timeout=wait)) is not None:
            decoded = decode_message(message["data"])
            if decoded is not None:
                heard.append((decoded[1], decoded[2]))
        return heard

    def close(self) -> None:
        self.pubsub.close()
        self.client.close()


@pytest.fixture
def heard(redis_server: RedisServer, namespace: str) -> Iterator[Heard]:
    listener = Heard(redis_server.url, namespace)
    yield listener
    listener.close()


@pytest.fixture
def server(
    django_cache: Any, redis_server: RedisServer, make_server: Callable[..., DjangoServer]
) -> DjangoServer:
    return make_server(redis_server.url)


def _name_seen(server: DjangoServer, pk: int) -> str:
    response = server.get(f"/item/{pk}/")
    assert response.status_code == 200, response.text
    return str(response.json()["name"])


def test_cached_get_reads_through_the_cache_and_rebuilds_the_instance(django_cache: Any) -> None:
    """The row is read once, then served from the cache as a real model instance (Decimal
    and aware datetime intact); a missing row is cached and raises DoesNotExist."""
    item = Item.objects.create(name="lamp", price=Decimal("12.50"))
    loads = django_cache.veneer.stats().source_loads
    first = cached_get(Item, pk=item.pk)
    second = cached_get(Item, pk=str(item.pk))
    assert django_cache.veneer.stats().source_loads == loads + 1
    assert (second.pk, second.name, second.price, second.created) == (
        item.pk, "lamp", Decimal("12.50"), item.created,
    )  # fmt: skip
    assert first._state.adding is False and first._state.db == "default"
    second.name = "changed"
    second.save()
    assert cached_get(Item, pk=item.pk).name == "changed"
    for _ in range(2):
        with pytest.raises(Item.DoesNotExist):
            cached_get(Item, pk=10**9)
    assert django_cache.veneer.stats().source_loads == loads + 3


def test_inside_atomic_nothing_is_sent_and_others_see_the_old_value(
    server: DjangoServer, heard: Heard
) -> None:
    """Before the commit the other process serves the old row and no invalidation has been
    published; after it, the row's key and the model's tag are, and nobody serves the old
    row; the transaction itself reads its own write."""
    item = Item.objects.create(name="old")
    heard.drain()
    assert _name_seen(server, item.pk) == "old"
    with transaction.atomic():
        item.name = "new"
        item.save()
        assert cached_get(Item, pk=item.pk).name == "new"  # its own write, from the database
        assert _name_seen(server, item.pk) == "old"
        assert heard.drain() == []
    assert set(heard.drain()) == {("k", row_key(Item, item.pk)), ("t", model_tag(Item))}
    # The other process drops its L1 copy when the broadcast arrives (milliseconds).
    eventually(lambda: _name_seen(server, item.pk) == "new", timeout=2.0)
    assert all(_name_seen(server, item.pk) == "new" for _ in range(20))


def test_a_rollback_invalidates_nothing(server: DjangoServer, heard: Heard) -> None:
    """A transaction that rolls back sends nothing, and the cached row stays served."""
    item = Item.objects.create(name="kept")
    pk = item.pk
    assert _name_seen(server, pk) == "kept"
    heard.drain()
    with pytest.raises(Boom), transaction.atomic():
        item.name = "lost"
        item.save()
        item.delete()
        raise Boom
    assert heard.drain() == []
    assert _name_seen(server, pk) == "kept"
    assert Item.objects.get(pk=pk).name == "kept"


def test_nested_atomic_sends_only_what_committed(heard: Heard, django_cache: Any) -> None:
    """A savepoint that rolls back drops its invalidations; the ones of the outer block and
    of a released savepoint are sent after the outermost commit (a row saved twice, once)."""
    kept, dropped, inner = (Item.objects.create(name=n) for n in ("a", "b", "c"))
    heard.drain()
    with transaction.atomic():
        kept.name = "a2"
        kept.save()
        try:
            with transaction.atomic():
                dropped.name = "b2"
                dropped.save()
                raise Boom
        except Boom:
            pass
        with transaction.atomic():
            inner.name = "c2"
            inner.save()
            inner.save()
        assert heard.drain(wait=0.05) == []
    got = heard.drain()
    assert set(got) == {
        ("k", row_key(Item, kept.pk)),
        ("k", row_key(Item, inner.pk)),
        ("t", model_tag(Item)),
    }
    assert ("k", row_key(Item, dropped.pk)) not in got


def test_m2m_changes_and_explicit_invalidations_after_commit(
    heard: Heard, django_cache: Any
) -> None:
    """m2m_changed invalidates both models' tags and the rows involved; invalidate_model
    and invalidate_after_commit wait for the commit too."""
    item = Item.objects.create(name="i")
    tag = Tag.objects.create(name="t")
    heard.drain()
    with transaction.atomic():
        item.tags.add(tag)
        Item.objects.filter(pk=item.pk).update(name="bulk")  # no signal: say it
        invalidate_model(Item)
        invalidate_after_commit(keys=["report"], tags=["reports"])
        assert heard.drain(wait=0.05) == []
    got = set(heard.drain())
    assert {
        ("k", row_key(Item, item.pk)),
        ("k", row_key(Tag, tag.pk)),
        ("t", model_tag(Item)),
        ("t", model_tag(Tag)),
        ("t", model_tag(Item.tags.through)),
        ("t", "~orm:shop.item:rows"),
        ("k", "report"),
        ("t", "reports"),
    } <= got
    assert cached_get(Item, pk=item.pk).name == "bulk"


def test_atomic_requests_commit_after_the_view_and_a_failed_view_sends_nothing(
    server: DjangoServer, heard: Heard
) -> None:
    """With ATOMIC_REQUESTS the view reads its own write, the invalidation follows the
    request's commit, and a view that fails (rolled back) invalidates nothing."""
    item = Item.objects.create(name="v1")
    assert _name_seen(server, item.pk) == "v1"
    heard.drain()
    response = server.get(f"/item/{item.pk}/rename/?name=v2")
    assert response.json() == {"read_in_transaction": "v2"}
    assert ("k", row_key(Item, item.pk)) in heard.drain()
    eventually(lambda: _name_seen(server, item.pk) == "v2", timeout=2.0)
    failed = server.get(f"/item/{item.pk}/rename/?name=v3&fail=1")
    assert failed.status_code == 500
    assert heard.drain() == []
    assert _name_seen(server, item.pk) == "v2"


def test_a_fill_that_read_the_old_row_never_survives_the_commit(
    server: DjangoServer, django_cache: Any
) -> None:
    """Forced race, 30 times: a cached_get reads the old row and is held right after its
    SELECT; the update commits (and invalidates); then the fill is released. No process
    serves the old row afterwards (its fill is refused). The same interleaving with plain
    cache-aside on Django's RedisCache leaves the old row cached every time."""
    from django.core.cache import caches

    control = caches["control"]
    stale_veneer = stale_naive = 0
    refused = django_cache.veneer.stats().fills_refused
    for round_ in range(30):
        item = Item.objects.create(name=f"old{round_}")

        def veneer_read(pk: int = item.pk) -> Any:
            return cached_get(Item, pk=pk)

        def naive_read(pk: int = item.pk) -> Any:
            found = control.get(f"item:{pk}")
            if found is None:
                found = Item.objects.get(pk=pk).name
                control.set(f"item:{pk}", found, 60)
            return found

        for read, check in (
            (veneer_read, lambda pk=item.pk: _name_seen(server, pk)),
            (naive_read, lambda pk=item.pk: control.get(f"item:{pk}")),
        ):
            Item.objects.filter(pk=item.pk).update(name=f"old{round_}")
            control.delete(f"item:{item.pk}")
            django_cache.veneer.invalidate(row_key(Item, item.pk))
            _race(read, item)
            if check() != f"new{round_}":
                if read is veneer_read:
                    stale_veneer += 1
                else:
                    stale_naive += 1
    assert stale_veneer == 0
    assert stale_naive == 30  # the control shows the interleaving is real
    assert django_cache.veneer.stats().fills_refused - refused == 30


def _race(read: Callable[[], Any], item: Item) -> None:
    """``read`` in a thread, held after its SELECT until the update below has committed."""
    selected, committed = threading.Event(), threading.Event()

    def hold_after_select(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        if sql.lstrip().upper().startswith("SELECT") and not selected.is_set():
            selected.set()
            assert committed.wait(10)
        return result

    def reader() -> None:
        try:
            with connection.execute_wrapper(hold_after_select):
                read()
        finally:
            connection.close()

    thread = threading.Thread(target=reader)
    thread.start()
    assert selected.wait(10)
    with transaction.atomic():
        fresh = Item.objects.get(pk=item.pk)
        fresh.name = fresh.name.replace("old", "new")
        fresh.save()  # the invalidation is sent when this block commits
    committed.set()
    thread.join(10)
