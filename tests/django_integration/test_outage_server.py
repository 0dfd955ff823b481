"""Redis killed under a Django view load served by uvicorn: VeneerCache views answer
every request (slower, never a 5xx); the same views on Django's RedisCache, served by
the same process in the same run, fail."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import httpx

from servers import RedisServer

from .conftest import DjangoServer

CLIENTS = 4


def _load(server: DjangoServer, paths: list[str], seconds: float) -> Counter[tuple[str, int]]:
    """``CLIENTS`` threads each requesting every path of ``paths``, round after round, for
    at least ``seconds`` and one round; counts (backend, status) pairs. A transport error
    (no response at all) counts as status 0."""
    statuses: Counter[tuple[str, int]] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(offset: int) -> None:
        with httpx.Client(base_url=server.url, timeout=10.0) as http:
            done = 0
            while done < len(paths) or time.monotonic() < deadline:
                path = paths[(offset + done) % len(paths)]
                try:
                    status = http.get(path).status_code
                except httpx.TransportError:
                    status = 0
                with lock:
                    statuses[(path.split("/")[2], status)] += 1
                done += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    return statuses


def test_redis_killed_under_load_costs_no_5xx_while_rediscache_errors(
    namespace: str, make_server: Callable[..., DjangoServer]
) -> None:
    """Sync and async views on VeneerCache: 0 responses >= 500 before and after Redis is
    SIGKILLed; the RedisCache views of the same server answer 500 once Redis is gone."""
    redis_server = RedisServer()
    try:
        server = make_server(redis_server.url)
        paths = [
            f"/{kind}/{backend}/{n}/"
            for n in range(5)
            for kind, backend in (("page", "default"), ("page", "control"), ("apage", "default"))
        ]
        for path in paths:
            assert server.get(path).status_code == 200
        before = _load(server, paths, 0.3)
        redis_server.kill()
        after = _load(server, paths, 1.5)
    finally:
        redis_server.stop()
    for phase in (before, after):
        veneer = {status: n for (backend, status), n in phase.items() if backend == "default"}
        assert veneer, "no VeneerCache request was answered"
        assert set(veneer) == {200}, veneer
    assert {status for (backend, status) in before if backend == "control"} == {200}
    control_after = Counter({s: n for (b, s), n in after.items() if b == "control"})
    assert sum(n for status, n in control_after.items() if status >= 500) > 0, control_after
