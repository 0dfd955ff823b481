"""veneer draws its jitter, sampling and non-secret tokens from its own generator
(veneer._random): an application's seeded ``random`` sequence is not moved by veneer,
and forked workers do not draw in step."""

from __future__ import annotations

import os
import random
import threading
import warnings

from servers import RedisServer
from veneer import Cache
from veneer._random import rng


def test_cache_work_leaves_the_application_random_sequence(redis_server: RedisServer) -> None:
    """A seeded application sees the same sequence whether or not veneer worked in
    between: a cache built (its sender id), hits judged by XFetch, loads, fills with
    lease tokens and waits behind another caller's lease (backed-off polls), invalidations
    sent and heard."""
    random.seed(1234)
    expected = [random.random() for _ in range(5)]

    random.seed(1234)
    cache = Cache.from_url(
        redis_server.url, namespace="random-seq", ttl=60, l1_size=0, xfetch_beta=1.0
    )
    try:
        assert cache.ready()
        inside, release = threading.Event(), threading.Event()

        def slow() -> str:
            inside.set()
            release.wait(10)
            return "slow"

        leader = threading.Thread(target=cache.get_or_load, args=("held", slow))
        leader.start()
        assert inside.wait(10)
        waiter = threading.Thread(target=cache.get_or_load, args=("held", lambda: "other"))
        waiter.start()  # polls the leader's lease with jittered back-off
        for i in range(50):
            assert cache.get_or_load(f"k{i}", lambda i=i: i) == i
            assert cache.get_or_load(f"k{i}", lambda: -1) == i  # a hit, judged by XFetch
        cache.invalidate("k0")
        release.set()
        leader.join(10)
        waiter.join(10)
        assert cache.get_or_load("held", lambda: "late") == "slow"
    finally:
        cache.close()
    assert [random.random() for _ in range(5)] == expected


def test_forked_workers_draw_differently() -> None:
    """gunicorn --preload forks workers from one parent: each reseeds veneer's generator,
    so their back-off and lease tokens do not repeat the parent's or each other's."""
    rng.seed(99)  # the parent's state, inherited by every child
    draws = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() beside threads
        for _ in range(4):
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    os.write(write, b"%d" % rng.getrandbits(64))
                finally:
                    os._exit(0)
            os.close(write)
            with os.fdopen(read, "rb") as pipe:
                draws.add(int(pipe.read()))
            os.waitpid(pid, 0)
    draws.add(rng.getrandbits(64))
    assert len(draws) == 5
