"""The envelope and codecs: round trips, and corrupt bytes that are misses, never crashes."""

from __future__ import annotations

import struct
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veneer._codec import (
    HEADER_SIZE,
    CorruptEntry,
    EnvelopeCodec,
    JsonCodec,
    MsgpackCodec,
    PickleCodec,
    codec_from_option,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)  # JSON has no infinity
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
tags = st.lists(
    st.tuples(st.text(min_size=1, max_size=20), st.integers(min_value=0, max_value=2**64 - 1)),
    max_size=4,
    unique_by=lambda t: t[0],
)


def envelopes(codec: Any = None, **kwargs: Any) -> EnvelopeCodec:
    options = {"compression": "zstd", "compress_above": 64, **kwargs}
    return EnvelopeCodec(codec or MsgpackCodec(), **options)


@pytest.mark.parametrize("compression", ["zstd", "lz4", "none"])
@pytest.mark.parametrize("codec", [MsgpackCodec, JsonCodec])
@given(value=json_values, tag_list=tags, fresh=st.floats(0, 2e9), epoch=st.integers(0, 2**64 - 1))
@settings(max_examples=60, deadline=None)
def test_round_trip(
    codec: Any,
    compression: str,
    value: Any,
    tag_list: list[tuple[str, int]],
    fresh: float,
    epoch: int,
) -> None:
    """Whatever goes in comes back out, with its metadata."""
    env = envelopes(codec(), compression=compression)
    data = env.encode(value, fresh_until=fresh, load_seconds=0.25, ns_epoch=epoch, tags=tag_list)
    back = env.decode(data)
    assert back.value == value
    assert back.negative is (value is None)
    assert back.fresh_until == fresh
    assert back.load_seconds == 0.25
    assert back.ns_epoch == epoch
    assert dict(back.tags) == dict(tag_list)


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_never_raise_anything_but_corrupt_entry(data: bytes) -> None:
    """Random bytes in Redis decode to a value or CorruptEntry; no other exception escapes."""
    try:
        envelopes().decode(data)
    except CorruptEntry:
        pass


@given(value=json_values, cut=st.integers(min_value=0, max_value=200))
@settings(max_examples=200, deadline=None)
def test_truncated_entries_are_corrupt(value: Any, cut: int) -> None:
    """A truncated envelope is never silently read as a different value."""
    env = envelopes()
    data = env.encode(value, fresh_until=1.0, load_seconds=0.0, ns_epoch=1, tags=[("t", 5)])
    if cut >= len(data):
        return
    try:
        back = env.decode(data[:cut])
    except CorruptEntry:
        return
    # Cutting only trailing bytes of a msgpack payload can still be valid msgpack
    # for a few shapes; it then has to be the same header at least.
    assert back.ns_epoch == 1


def test_unknown_format_version_is_corrupt() -> None:
    env = envelopes()
    data = bytearray(env.encode(1, fresh_until=1.0, load_seconds=0.0, ns_epoch=0))
    data[0] = 99
    with pytest.raises(CorruptEntry, match="version 99"):
        env.decode(bytes(data))


def test_other_codec_id_is_corrupt() -> None:
    """An entry written by a cache with another codec is a miss, not a wrong decode."""
    data = envelopes(JsonCodec()).encode([1], fresh_until=1.0, load_seconds=0.0, ns_epoch=0)
    with pytest.raises(CorruptEntry, match="codec id 2"):
        envelopes(MsgpackCodec()).decode(data)


def test_compression_only_when_it_helps_and_above_the_threshold() -> None:
    env = envelopes(compress_above=100)
    small = env.encode("a" * 50, fresh_until=1.0, load_seconds=0.0, ns_epoch=0)
    big = env.encode("a" * 10_000, fresh_until=1.0, load_seconds=0.0, ns_epoch=0)
    assert len(small) == HEADER_SIZE + len(msgspec.msgpack.encode("a" * 50))
    assert len(big) < 200
    assert env.decode(big).value == "a" * 10_000


def test_typed_decoding_rejects_the_wrong_shape() -> None:
    class Row(msgspec.Struct):
        id: int

    env = envelopes()
    data = env.encode({"id": "x"}, fresh_until=1.0, load_seconds=0.0, ns_epoch=0)
    with pytest.raises(CorruptEntry):
        env.decode(data, type=Row)
    good = env.encode({"id": 3}, fresh_until=1.0, load_seconds=0.0, ns_epoch=0)
    assert env.decode(good, type=Row).value == Row(3)


def test_pickle_is_opt_in_only() -> None:
    """The default codec is msgpack; pickle must be named."""
    assert isinstance(codec_from_option("msgpack"), MsgpackCodec)
    assert isinstance(codec_from_option("pickle"), PickleCodec)
    with pytest.raises(ValueError, match="not known"):
        codec_from_option("marshal")


def test_header_layout_is_stable() -> None:
    """The envelope header is part of the on-Redis format: changing it needs a new version."""
    data = envelopes().encode(None, fresh_until=2.5, load_seconds=0.5, ns_epoch=7)
    assert struct.unpack_from("<BBdfQH", data) == (1, 0b0010_0001, 2.5, 0.5, 7, 0)
