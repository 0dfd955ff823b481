"""L1: bounded by entries and bytes; SIEVE keeps what is being read; tags index entries."""

from __future__ import annotations

import random

from veneer._l1 import L1Store


def put(store: L1Store, key: str, size: int = 1, tags: tuple[str, ...] = ()) -> None:
    store.put(key, key, expires=1e18, fresh_until=1e18, size=size, tags=tags)


def test_bounded_by_entries() -> None:
    store = L1Store(max_entries=100, max_bytes=10**9)
    for i in range(1000):
        put(store, f"k{i}")
    assert len(store) == 100
    assert store.evictions == 900


def test_bounded_by_bytes() -> None:
    store = L1Store(max_entries=10**6, max_bytes=1000)
    for i in range(100):
        put(store, f"k{i}", size=64)
    assert store.bytes <= 1000
    assert len(store) == 1000 // 64
    put(store, "huge", size=5000)  # larger than the whole tier: not kept
    assert "huge" not in store.map


def test_visited_entries_survive_a_scan() -> None:
    """A one-off scan of new keys does not flush the entries that are being read."""
    store = L1Store(max_entries=100, max_bytes=10**9)
    for i in range(50):
        put(store, f"hot{i}")
    for i in range(1000):
        for j in range(50):
            store.map[f"hot{j}"].visited = True  # what a hit does
        put(store, f"scan{i}")
    assert all(f"hot{i}" in store.map for i in range(50))


def test_discard_tag_and_clear() -> None:
    store = L1Store(max_entries=100, max_bytes=10**9)
    put(store, "a", tags=("t",))
    put(store, "b", tags=("t", "u"))
    put(store, "c")
    assert store.discard_tag("t") == 2
    assert set(store.map) == {"c"}
    store.clear()
    assert len(store) == 0 and store.bytes == 0


def test_expire_all_keeps_entries_as_stale() -> None:
    store = L1Store(max_entries=10, max_bytes=10**9)
    put(store, "a")
    store.expire_all(now=5.0, wall_now=7.0)
    assert store.map["a"].expires == 5.0
    assert store.map["a"].fresh_until == 7.0


def test_linked_list_stays_consistent_under_random_operations() -> None:
    """Random puts, discards and evictions never lose track of an entry or of bytes."""
    rng = random.Random(7)
    store = L1Store(max_entries=50, max_bytes=2000)
    for _ in range(20_000):
        key = f"k{rng.randrange(200)}"
        op = rng.random()
        if op < 0.6:
            put(store, key, size=rng.randrange(1, 100), tags=(f"t{rng.randrange(5)}",))
        elif op < 0.8:
            entry = store.map.get(key)
            if entry is not None:
                entry.visited = True
        elif op < 0.95:
            store.discard(key)
        else:
            store.discard_tag(f"t{rng.randrange(5)}")
        assert len(store) <= 50
        assert store.bytes == sum(e.size for e in store.map.values()) <= 2000
    walked, node = [], store._tail
    while node is not None:
        walked.append(node.key)
        node = node.newer
    assert sorted(walked) == sorted(store.map)
