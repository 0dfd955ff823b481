"""An RFC 9111 shared HTTP cache as ASGI middleware, stored in veneer, invalidated by commits.

::

    from veneer import AsyncCache
    from veneer.http import HttpCache, tag

    acache = AsyncCache.from_url("redis://127.0.0.1:6379/0", namespace="web")
    app.add_middleware(HttpCache, cache=acache)

    @app.get("/products/{pid}")
    async def product(pid: int):
        tag(f"product:{pid}")            # invalidator.invalidate_tag(session, "product:7")
        return ...                       # with Cache-Control: max-age=300

Needs the ``http`` extra (http-sfv; httpx for :mod:`veneer.http.proxy`). The middleware
is plain ASGI, asyncio only, built on the public API of :class:`~veneer.AsyncCache`.
See ``docs/http.md``.
"""

from __future__ import annotations

from ._middleware import HttpCache
from ._origin import tag
from ._stats import HttpStats

__all__ = ["HttpCache", "HttpStats", "tag"]
