"""Hostile bytes in Redis and inputs the cache cannot store: a clear error before any
work, or a cheap miss; never an exception from a read, a stall or unbounded writes."""

from __future__ import annotations

import logging
import struct
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import lz4.frame
import msgspec
import pytest
import redis
import zstandard

from servers import RedisServer
from veneer import Cache, UnencodableValue
from veneer._codec import _HEADER, FORMAT_VERSION

MiB = 1024 * 1024


@pytest.fixture
def make(redis_server: RedisServer, namespace: str) -> Iterator[Any]:
    made: list[Cache] = []

    def build(**options: Any) -> Cache:
        options.setdefault("ttl", 60)
        options.setdefault("broadcast", False)
        cache = Cache.from_url(redis_server.url, namespace=namespace, **options)
        made.append(cache)
        return cache

    yield build
    for cache in made:
        cache.close()


def _entry(payload: bytes, *, compression: int = 0, ntags: int = 0, tags: bytes = b"") -> bytes:
    flags = 1 | (compression << 3)  # msgpack, compression id
    return _HEADER.pack(FORMAT_VERSION, flags, time.time() + 60, 0.0, 0, ntags) + tags + payload


def _zstd_stream(size: int, *, content_size: bool) -> bytes:
    compressor = zstandard.ZstdCompressor(level=19, write_content_size=content_size)
    obj = compressor.compressobj(size=size if content_size else -1)
    chunk = b"\0" * MiB
    return b"".join(obj.compress(chunk) for _ in range(size // MiB)) + obj.flush()


def _zstd_claiming(size: int) -> bytes:
    # Frame header: magic, descriptor (single segment, 8-byte content size), size.
    return struct.pack("<IBQ", 0xFD2FB528, 0xE0, size) + b"\x01\x00\x00"


def _lz4_stream(size: int) -> bytes:
    compressor = lz4.frame.LZ4FrameCompressor(compression_level=12)
    parts = [compressor.begin()]
    parts += [compressor.compress(b"\0" * MiB) for _ in range(size // MiB)]
    return b"".join([*parts, compressor.flush()])


BOMBS = {
    "zstd frame with its size (64 MiB)": lambda: _entry(
        _zstd_stream(64 * MiB, content_size=True), compression=1
    ),
    "zstd frame without a size (64 MiB)": lambda: _entry(
        _zstd_stream(64 * MiB, content_size=False), compression=1
    ),
    "zstd header claiming 64 GiB": lambda: _entry(_zstd_claiming(64 << 30), compression=1),
    "lz4 frame (64 MiB)": lambda: _entry(_lz4_stream(64 * MiB), compression=2),
}


@pytest.mark.parametrize("bomb", list(BOMBS))
def test_a_decompression_bomb_is_a_cheap_counted_miss(
    make: Any, raw: redis.Redis, namespace: str, bomb: str
) -> None:
    """A small compressed entry that inflates far past max_value_bytes costs neither
    memory nor CPU: it is refused within the size limit and counted as corrupt."""
    cache = make(l1_size=0, compression="lz4" if "lz4" in bomb else "zstd")
    data = BOMBS[bomb]()
    assert len(data) < 300_000
    raw.set("{" + namespace + ":k}", data)
    tracemalloc.start()
    try:
        cpu = time.process_time()
        assert cache.get("k", default="miss") == "miss"
        cpu = time.process_time() - cpu
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert cache.stats().corrupt_entries == 1
    assert peak < 4 * MiB, f"{peak / MiB:.0f} MiB allocated by one read"
    assert cpu < 0.25


def test_an_entry_above_max_value_bytes_is_a_miss_on_read(
    make: Any, raw: redis.Redis, namespace: str
) -> None:
    """max_value_bytes bounds reads too: a bigger entry written by someone else is a miss."""
    cache = make(l1_size=0, max_value_bytes=1000, compression="none")
    raw.set("{" + namespace + ":k}", _entry(msgspec.msgpack.encode("x" * 2000)))
    assert cache.get("k", default="miss") == "miss"
    assert cache.stats().corrupt_entries == 1


def test_forged_tags_cost_a_miss_not_seconds_or_stamp_keys(
    make: Any, raw: redis.Redis, namespace: str
) -> None:
    """An entry with 60,000 forged tags is refused when decoded, before any stamp key is
    read or written."""
    cache = make(l1_size=0)
    tags = b"".join(
        struct.pack("<H", 6) + b"t%05d" % i + struct.pack("<Q", 1) for i in range(60_000)
    )
    raw.set("{" + namespace + ":k}", _entry(msgspec.msgpack.encode(1), ntags=60_000, tags=tags))
    started = time.perf_counter()
    assert cache.get("k", default="miss") == "miss"
    assert time.perf_counter() - started < 0.5
    assert cache.stats().corrupt_entries == 1
    assert list(raw.scan_iter(match=f"{namespace}:tag:*", count=1000)) == []


BAD_KEYS = {
    "lone surrogate": "user:\ud800",
    "600 KB": "k" * 600_000,
}


@pytest.mark.parametrize("kind", list(BAD_KEYS))
def test_a_key_that_cannot_be_stored_is_refused_before_any_work(
    make: Any, raw: redis.Redis, namespace: str, kind: str
) -> None:
    """A key with a lone surrogate or above MAX_KEY_BYTES raises a ValueError naming the
    problem from every method, before the loader runs and before Redis is written."""
    key = BAD_KEYS[kind]
    cache = make(registry_every=1)
    listener = make(broadcast=True)
    assert listener.ready(5.0)
    calls: list[int] = []

    def loader() -> int:
        calls.append(1)
        return 1

    expected = "surrogate" if "surrogate" in kind else "limit of 4096"
    for call in (
        lambda: cache.get(key),
        lambda: cache.get_or_load(key, loader),
        lambda: cache.set(key, 1),
        lambda: cache.invalidate(key),
        lambda: cache.get_many(["ok", key]),
        lambda: cache.get_or_load_many(["ok", key], lambda keys: dict.fromkeys(keys, 1)),
    ):
        with pytest.raises(ValueError, match=expected):
            call()
    assert calls == []
    assert list(raw.scan_iter(match="{" + namespace + ":*", count=1000)) == []
    assert listener.stats().invalidations_received == 0
    with pytest.raises(TypeError, match="must be a str"):
        cache.get_or_load(42, loader)  # type: ignore[arg-type]


def test_tags_over_the_limits_are_refused_before_loading(make: Any) -> None:
    """Too many tags, a tag too long or not encodable: a ValueError naming the limit,
    before the loader runs (the codec's u16 fields are never reached)."""
    cache = make()
    calls: list[int] = []

    def loader() -> int:
        calls.append(1)
        return 1

    cases = {
        "above the limit of 64": [f"t{i}" for i in range(65)],
        "1 to 1024 bytes": ["x" * 70_000],
        "surrogate": ["\udc80"],
    }
    for message, tags in cases.items():
        with pytest.raises(ValueError, match=message):
            cache.get_or_load("k", loader, tags=tags)
        with pytest.raises(ValueError, match=message):
            cache.set("k", 1, tags=tags)
    with pytest.raises(ValueError, match="surrogate"):
        cache.invalidate_tag("\udc80")
    assert calls == []
    assert cache.get_or_load("k", loader, tags=[f"t{i}" for i in range(64)]) == 1


def test_a_garbage_stamp_is_replaced_not_raised(
    make: Any, raw: redis.Redis, namespace: str
) -> None:
    """A namespace epoch or tag stamp that holds no version is replaced: the read loads
    and caches, and nothing raises."""
    raw.set(f"{namespace}:epoch:{{{namespace}}}", b"not-a-number")
    raw.set(f"{namespace}:tag:{{{namespace}:t}}", b"-5")
    first, second = make(l1_size=0), make(l1_size=0)
    assert first.get_or_load("k", lambda: "v", tags=["t"]) == "v"
    assert second.get_or_load("k", lambda: "other", tags=["t"]) == "v"
    assert int(raw.get(f"{namespace}:epoch:{{{namespace}}}") or 0) > 0
    assert int(raw.get(f"{namespace}:tag:{{{namespace}:t}}") or 0) > 0


def test_a_lease_that_veneer_did_not_write_does_not_stall_callers(
    make: Any, raw: redis.Redis, namespace: str
) -> None:
    """A lease (a lease key, or a lease mark in the value's slot) without a TTL is taken
    over at once; one that would live longer than a live holder's (lease_heartbeat) is
    cut to it. Either way the value gets cached."""
    cache = make(l1_size=0, lease_ttl=2.0, lease_wait=1.5)
    forged_mark = b"\x00L" + b"f" * 16
    for key, forged in (("k", ("{" + namespace + ":k}:lease", b"forged")),
                        ("k1", ("{" + namespace + ":k1}", forged_mark))):  # fmt: skip
        raw.set(*forged)
        started = time.perf_counter()
        assert cache.get_or_load(key, lambda: "v") == "v"
        assert time.perf_counter() - started < 1.0
        assert cache.get_or_load(key, lambda: "other") == "v"

    raw.set("{" + namespace + ":k2}", forged_mark, ex=7 * 86_400)
    impatient = make(l1_size=0, lease_ttl=2.0, lease_wait=0.05)
    assert impatient.get_or_load("k2", lambda: "v2") == "v2"
    assert 0 < raw.pttl("{" + namespace + ":k2}") <= 500


def _nested(depth: int) -> list[Any]:
    outer: list[Any] = []
    current = outer
    for _ in range(depth):
        inner: list[Any] = []
        current.append(inner)
        current = inner
    return outer


@pytest.mark.parametrize("kind", ["int above 64 bits", "nested 5000 deep"])
def test_values_the_encoder_cannot_handle(
    make: Any, raw: redis.Redis, namespace: str, kind: str
) -> None:
    """A loaded value the codec cannot encode is returned and not cached (counted); an
    explicit set raises UnencodableValue, and writes nothing."""
    value = 2**70 if kind.startswith("int") else _nested(5000)
    cache = make(l1_size=0)
    assert cache.get_or_load("k", lambda: value) is value
    assert cache.stats().not_cached_unencodable == 1
    with pytest.raises(UnencodableValue, match="cannot be encoded"):
        cache.set("k2", value)
    assert list(raw.scan_iter(match="{" + namespace + ":*", count=1000)) == []


class UserOut(msgspec.Struct):
    id: int
    name: str


def test_type_gives_one_type_on_every_tier(make: Any) -> None:
    """With type=, a miss, an L1 hit and another process's Redis hit return that type,
    even when the loader returns a dict; a value that does not convert is a TypeError."""
    here, there = make(broadcast=True), make(broadcast=True)
    assert here.ready(5.0) and there.ready(5.0)
    row = {"id": 1, "name": "ada"}
    miss = here.get_or_load("u", lambda: dict(row), type=UserOut)
    l1_hit = here.get_or_load("u", lambda: dict(row), type=UserOut)
    l2_hit = there.get_or_load("u", lambda: dict(row), type=UserOut)
    assert [type(v) for v in (miss, l1_hit, l2_hit)] == [UserOut] * 3
    assert here.stats().l1_hits == 1 and there.stats().l2_hits == 1
    with pytest.raises(TypeError, match="does not convert to UserOut"):
        here.get_or_load("bad", lambda: {"id": "one"}, type=UserOut)
    assert here.get_or_load("none", lambda: None, type=UserOut) is None


def test_a_value_that_changes_type_warns_once_per_call_site(
    make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Without type=, a loader whose values come back as another type (a tuple as a
    list) gets one warning naming the fix, not one per fill."""
    cache = make()
    with caplog.at_level(logging.WARNING, logger="veneer"):
        for i in range(3):
            cache.get_or_load(f"k{i}", lambda: {"pair": (1, 2)})
        cache.get_or_load("plain", lambda: {"pair": [1, 2]})
    warnings = [r.getMessage() for r in caplog.records if "comes back as" in r.getMessage()]
    assert len(warnings) == 1
    assert "tuple but comes back as a list" in warnings[0] and "type=" in warnings[0]
