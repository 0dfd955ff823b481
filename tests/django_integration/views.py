"""Views the integration tests call through a real server (uvicorn on Django's ASGI app)."""

from __future__ import annotations

import time
from typing import Any

from django.contrib.auth import SESSION_KEY
from django.core.cache import caches
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse

from veneer.integrations.django.orm import acached_get, cached_get

from .shop.models import Item


def login(request: HttpRequest, uid: int) -> JsonResponse:
    """What django.contrib.auth.login does to the session: a new key, then the user."""
    request.session.cycle_key()
    request.session[SESSION_KEY] = str(uid)
    request.session["cart"] = [uid]
    return JsonResponse({"ok": True})


def whoami(request: HttpRequest) -> JsonResponse:
    session = request.session
    return JsonResponse({"user": session.get(SESSION_KEY), "cart": session.get("cart")})


@transaction.non_atomic_requests
async def awhoami(request: HttpRequest) -> JsonResponse:
    session = request.session
    return JsonResponse(
        {"user": await session.aget(SESSION_KEY), "cart": await session.aget("cart")}
    )


def cycle(request: HttpRequest) -> JsonResponse:
    request.session.cycle_key()
    return JsonResponse({"ok": True})


def ping(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


def item(request: HttpRequest, pk: int) -> JsonResponse:
    found = cached_get(Item, pk=pk)
    return JsonResponse({"name": found.name, "price": str(found.price)})


def rename(request: HttpRequest, pk: int) -> JsonResponse:
    """Runs in the request's transaction (ATOMIC_REQUESTS): the commit follows the view."""
    found = Item.objects.get(pk=pk)
    found.name = request.GET["name"]
    found.save()
    if request.GET.get("fail"):
        raise RuntimeError("the view failed after the save: the request's transaction rolls back")
    return JsonResponse({"read_in_transaction": cached_get(Item, pk=pk).name})


def _page(n: int) -> dict[str, Any]:
    return {"n": n, "rows": [{"id": i, "label": f"row {i}"} for i in range(20)]}


def page(request: HttpRequest, backend: str, n: int) -> JsonResponse:
    """What a view typically asks of its cache: a computed fragment, a counter, a marker."""
    cache = caches[backend]
    data = cache.get_or_set(f"page:{n}", lambda: _page(n), 60)
    cache.set(f"seen:{n}", time.time(), 60)
    hits = cache.get(f"hits:{n}", 0)
    return JsonResponse({"n": data["n"], "rows": len(data["rows"]), "hits": hits})


@transaction.non_atomic_requests  # Django refuses ATOMIC_REQUESTS on async views
async def apage(request: HttpRequest, backend: str, n: int) -> JsonResponse:
    cache = caches[backend]
    data = await cache.aget_or_set(f"page:{n}", lambda: _page(n), 60)
    await cache.aset(f"seen:{n}", time.time(), 60)
    hits = await cache.aget(f"hits:{n}", 0)
    return JsonResponse({"n": data["n"], "rows": len(data["rows"]), "hits": hits})


@transaction.non_atomic_requests
async def aitem(request: HttpRequest, pk: int) -> JsonResponse:
    found = await acached_get(Item, pk=pk)
    return JsonResponse({"name": found.name})
