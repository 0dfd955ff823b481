"""Serialization: safe codecs, compression, and the envelope every Redis value is wrapped in.

The envelope is a fixed binary header followed by the payload::

    u8  format version (1)
    u8  flags: bits 0-2 codec id, bits 3-4 compression id, bit 5 negative entry
    f64 fresh_until, unix seconds (past it the entry is stale, not gone)
    f32 load duration of the value, seconds (XFetch's delta)
    u64 namespace epoch the value was loaded under
    u16 number of tags, then per tag: u16 name length, name (utf-8), u64 version
    ... payload (codec output, compressed when the flag says so)

Anything that does not parse is a :class:`CorruptEntry`, which every caller
treats as a miss: a bad byte in Redis must never become an exception in the app.

While a value is being loaded, its slot may hold a lease mark instead: ``\\x00L``
and the holder's token (format version 0 does not exist, so a mark is never an
entry). Readers treat a mark as a miss; see ``_redis_io`` for the lease protocol.
"""

from __future__ import annotations

import functools
import struct
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import msgspec
import zstandard

from ._keys import MAX_TAG_BYTES, MAX_TAGS

__all__ = [
    "LEASE_MARK",
    "Codec",
    "CorruptEntry",
    "EntryTooLarge",
    "Envelope",
    "EnvelopeCodec",
    "JsonCodec",
    "MsgpackCodec",
    "Payload",
    "PickleCodec",
    "codec_from_option",
    "is_lease_mark",
    "lease_mark",
]

FORMAT_VERSION: Final = 1
LEASE_MARK: Final = b"\x00L"
LEASE_MARK_SIZE: Final = 18  # the prefix and a 16-byte token


def lease_mark(token: bytes) -> bytes:
    """What a value slot holds while the holder of ``token`` (16 bytes) loads it."""
    return LEASE_MARK + token


def is_lease_mark(raw: bytes) -> bool:
    """Whether bytes read from a value slot are a lease (someone is loading), not an entry."""
    return len(raw) == LEASE_MARK_SIZE and raw[:2] == LEASE_MARK


_HEADER = struct.Struct("<BBdfQH")
_TAG_HEAD = struct.Struct("<H")
_TAG_VERSION = struct.Struct("<Q")
HEADER_SIZE: Final = _HEADER.size

_FLAG_CODEC_MASK: Final = 0b0000_0111
_FLAG_COMPRESSION_SHIFT: Final = 3
_FLAG_COMPRESSION_MASK: Final = 0b0001_1000
_FLAG_NEGATIVE: Final = 0b0010_0000

COMPRESSION_NONE: Final = 0
COMPRESSION_ZSTD: Final = 1
COMPRESSION_LZ4: Final = 2


class CorruptEntry(Exception):
    """An entry read from Redis that cannot be decoded; callers treat it as a miss."""


class Codec(Protocol):
    """Turns a Python value into bytes and back. ``codec_id`` is stored in every envelope."""

    codec_id: int
    name: str

    def encode(self, value: Any, /) -> bytes: ...

    def decode(self, data: bytes, /, type: Any = None) -> Any: ...

    def decoder_for(self, type: Any = None) -> Callable[[Any], Any]:
        """A one-argument decode function for ``type``: the batched read path calls it."""
        ...


class MsgpackCodec:
    """msgspec msgpack: the default. Safe for untrusted bytes, compact, fast."""

    codec_id = 1
    name = "msgpack"

    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder()
        # Typed decoders are built once per type and reused (msgspec perf tip).
        self._typed: dict[Any, msgspec.msgpack.Decoder[Any]] = {}

    def encode(self, value: Any, /) -> bytes:
        return self._encoder.encode(value)

    def decode(self, data: bytes, /, type: Any = None) -> Any:
        return self.decoder_for(type)(data)

    def decoder_for(self, type: Any = None) -> Callable[[Any], Any]:
        if type is None:
            return self._decoder.decode
        decoder = self._typed.get(type)
        if decoder is None:
            decoder = self._typed[type] = msgspec.msgpack.Decoder(type)
        return decoder.decode


class JsonCodec:
    """msgspec JSON: readable in ``redis-cli``, shareable with non-Python readers."""

    codec_id = 2
    name = "json"

    def __init__(self) -> None:
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder()
        self._typed: dict[Any, msgspec.json.Decoder[Any]] = {}

    def encode(self, value: Any, /) -> bytes:
        return self._encoder.encode(value)

    def decode(self, data: bytes, /, type: Any = None) -> Any:
        return self.decoder_for(type)(data)

    def decoder_for(self, type: Any = None) -> Callable[[Any], Any]:
        if type is None:
            return self._decoder.decode
        decoder = self._typed.get(type)
        if decoder is None:
            decoder = self._typed[type] = msgspec.json.Decoder(type)
        return decoder.decode


class PickleCodec:
    """pickle, an explicit opt-in only: whoever can write to Redis can run code in the app.

    Use it only when every writer of the Redis instance is trusted; classes that
    move or change break unpickling (which is then a miss, not an error).
    """

    codec_id = 3
    name = "pickle"

    def encode(self, value: Any, /) -> bytes:
        import pickle  # only for those who opt in (saves its import for everyone else)

        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def decode(self, data: bytes, /, type: Any = None) -> Any:
        import pickle

        value = pickle.loads(data)  # explicit opt-in, see the class docstring
        if type is not None and not isinstance(value, type):
            raise TypeError(f"unpickled {value.__class__.__name__}, expected {type.__name__}")
        return value

    def decoder_for(self, type: Any = None) -> Callable[[Any], Any]:
        return functools.partial(self.decode, type=type)


_CODECS: dict[str, Callable[[], Codec]] = {
    "msgpack": MsgpackCodec,
    "json": JsonCodec,
    "pickle": PickleCodec,
}


def codec_from_option(option: str | Codec) -> Codec:
    if isinstance(option, str):
        factory = _CODECS.get(option)
        if factory is None:
            raise ValueError(
                f"codec={option!r} is not known; use one of {sorted(_CODECS)} or a Codec object"
            )
        return factory()
    if not all(hasattr(option, name) for name in ("encode", "decode", "decoder_for")):
        raise ValueError(
            "codec must be a name or an object with encode(), decode() and decoder_for()"
        )
    if not 1 <= int(getattr(option, "codec_id", 0)) <= _FLAG_CODEC_MASK:
        raise ValueError(f"a custom codec needs an integer codec_id from 1 to {_FLAG_CODEC_MASK}")
    return option


class _Zstd(threading.local):
    """zstandard contexts are not safe to share between threads; one pair per thread."""

    def __init__(self) -> None:
        self.compressor = zstandard.ZstdCompressor(level=1)
        self.decompressor = zstandard.ZstdDecompressor()


def _lz4() -> Any:
    try:
        import lz4.frame
    except ImportError as exc:
        raise ValueError(
            "compression='lz4' needs the lz4 package: pip install 'veneer[lz4]'"
        ) from exc
    return lz4.frame


class EntryTooLarge(ValueError):
    """An entry above the size limit (raised while encoding; the front names the key)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"{size} bytes encoded")
        self.size = size


@dataclass(slots=True)
class Envelope:
    """A decoded entry: the value and what veneer needs to know about it."""

    value: Any
    fresh_until: float
    load_seconds: float
    ns_epoch: int
    tags: Mapping[str, int]
    negative: bool
    size: int = 0  # bytes in Redis, filled in by the reader
    raw: bytes = b""  # the bytes read, filled in by the reader (its header identifies it)


class Payload:
    """A value encoded by the codec and maybe compressed: all the work that can fail,
    done before an envelope (which needs the current stamps) is sealed around it."""

    __slots__ = ("compression", "data", "negative", "raw")

    def __init__(self, data: bytes, compression: int, raw: bytes, negative: bool) -> None:
        self.data = data
        self.compression = compression
        self.raw = raw  # the codec's output, before compression
        self.negative = negative


class EnvelopeCodec:
    """Encodes values into envelopes and back; built once per cache, reused on every call.

    ``max_bytes`` bounds an entry as it would be uncompressed (header, tags and
    payload), when writing and when reading: whoever can write to Redis cannot
    make a read inflate a small entry into a large one (a decompression bomb).
    """

    __slots__ = (
        "_codec",
        "_compress_above",
        "_compression",
        "_lz4",
        "_max_bytes",
        "_zstd",
        "codec",
    )

    def __init__(
        self,
        codec: Codec,
        *,
        compression: str,
        compress_above: int,
        max_bytes: int = 1024 * 1024,
    ) -> None:
        self.codec = codec
        self._codec = {codec.codec_id: codec}
        self._compress_above = compress_above
        self._max_bytes = max_bytes
        self._zstd = _Zstd()
        self._lz4: Any = None
        if compression == "zstd":
            self._compression = COMPRESSION_ZSTD
        elif compression == "lz4":
            self._lz4 = _lz4()
            self._compression = COMPRESSION_LZ4
        elif compression == "none":
            self._compression = COMPRESSION_NONE
        else:
            raise ValueError(f"compression={compression!r}: use 'zstd', 'lz4' or 'none'")

    def encode(
        self,
        value: Any,
        /,
        *,
        fresh_until: float,
        load_seconds: float,
        ns_epoch: int,
        tags: Sequence[tuple[str, int]] = (),
    ) -> bytes:
        return self.seal(
            self.prepare(value),
            fresh_until=fresh_until,
            load_seconds=load_seconds,
            ns_epoch=ns_epoch,
            tags=tags,
        )

    def prepare(self, value: Any, /) -> Payload:
        """Encode (and maybe compress) ``value``; raises what the codec raises, or
        :class:`EntryTooLarge` before compressing a payload that cannot fit."""
        negative = value is None
        raw = b"" if negative else self.codec.encode(value)
        if HEADER_SIZE + len(raw) > self._max_bytes:
            raise EntryTooLarge(HEADER_SIZE + len(raw))
        if self._compression and len(raw) > self._compress_above:
            compressed = self._compress(raw)
            if len(compressed) < len(raw):
                return Payload(compressed, self._compression, raw, negative)
        return Payload(raw, COMPRESSION_NONE, raw, negative)

    def seal(
        self,
        payload: Payload,
        /,
        *,
        fresh_until: float,
        load_seconds: float,
        ns_epoch: int,
        tags: Sequence[tuple[str, int]] = (),
    ) -> bytes:
        """The envelope around a prepared payload; raises ValueError for tags over the
        limits (MAX_TAGS, MAX_TAG_BYTES) and :class:`EntryTooLarge`."""
        if len(tags) > MAX_TAGS:
            raise ValueError(f"{len(tags)} tags on one entry, above the limit of {MAX_TAGS}")
        flags = self.codec.codec_id | (payload.compression << _FLAG_COMPRESSION_SHIFT)
        if payload.negative:
            flags |= _FLAG_NEGATIVE
        head = _HEADER.pack(
            FORMAT_VERSION, flags, fresh_until, load_seconds, ns_epoch & 0xFFFFFFFFFFFFFFFF,
            len(tags),
        )  # fmt: skip
        if not tags:
            return head + payload.data
        parts = [head]
        size = HEADER_SIZE + len(payload.raw)
        for name, version in tags:
            raw = name.encode()
            if not 0 < len(raw) <= MAX_TAG_BYTES:
                raise ValueError(f"tag of {len(raw)} bytes: a tag must be 1 to {MAX_TAG_BYTES}")
            parts.append(_TAG_HEAD.pack(len(raw)))
            parts.append(raw)
            parts.append(_TAG_VERSION.pack(version & 0xFFFFFFFFFFFFFFFF))
            size += 10 + len(raw)
        if size > self._max_bytes:
            raise EntryTooLarge(size)
        parts.append(payload.data)
        return b"".join(parts)

    def decode(self, data: bytes, /, type: Any = None) -> Envelope:
        try:
            version, flags, fresh_until, load_seconds, ns_epoch, ntags = _HEADER.unpack_from(data)
        except (struct.error, TypeError) as exc:
            raise CorruptEntry(f"short or non-bytes entry: {exc}") from None
        if version != FORMAT_VERSION:
            raise CorruptEntry(f"unknown envelope format version {version}")
        if len(data) > self._max_bytes:
            raise CorruptEntry(f"entry of {len(data)} bytes, above max_value_bytes")
        if ntags > MAX_TAGS:
            raise CorruptEntry(f"{ntags} tags, above the limit of {MAX_TAGS}")
        offset = HEADER_SIZE
        tags: dict[str, int] = {}
        try:
            for _ in range(ntags):
                (length,) = _TAG_HEAD.unpack_from(data, offset)
                if length > MAX_TAG_BYTES:
                    raise CorruptEntry(f"tag of {length} bytes, above the limit")
                offset += 2
                name = data[offset : offset + length].decode()
                offset += length
                (tags[name],) = _TAG_VERSION.unpack_from(data, offset)
                offset += 8
        except (struct.error, UnicodeDecodeError) as exc:
            raise CorruptEntry(f"bad tag section: {exc}") from None
        if flags & _FLAG_NEGATIVE:
            return Envelope(None, fresh_until, load_seconds, ns_epoch, tags, True)
        codec = self._codec.get(flags & _FLAG_CODEC_MASK)
        if codec is None:
            raise CorruptEntry(f"entry written with codec id {flags & _FLAG_CODEC_MASK}")
        payload = data[offset:] if offset < len(data) else b""
        try:
            compression = (flags & _FLAG_COMPRESSION_MASK) >> _FLAG_COMPRESSION_SHIFT
            if compression:
                payload = self._decompress(compression, payload, self._max_bytes - offset)
            value = codec.decode(payload, type=type)
        except CorruptEntry:
            raise
        except Exception as exc:  # any decoder failure is a miss, whatever raised it
            raise CorruptEntry(f"{exc.__class__.__name__}: {exc}") from None
        return Envelope(value, fresh_until, load_seconds, ns_epoch, tags, False)

    def decode_plain_many(
        self, raws: list[bytes | None], /, type: Any = None
    ) -> list[tuple[Any, float, int] | None]:
        """``(value, fresh_until, ns_epoch)`` for each common entry, else ``None``.

        The common entry (this codec, no tags, not compressed, not negative) is
        decoded without building an :class:`Envelope`: batched reads spend most of
        their Python time here, so the loop is kept tight. ``None`` (also for a
        missing key) sends the caller to :meth:`decode`, which handles and reports
        everything else.
        """
        unpack = _HEADER.unpack_from
        decode = self.codec.decoder_for(type)
        plain_flags = self.codec.codec_id
        limit = self._max_bytes
        out: list[tuple[Any, float, int] | None] = []
        append = out.append
        for data in raws:
            if data is None or not HEADER_SIZE <= len(data) <= limit:
                append(None)
                continue
            version, flags, fresh_until, _, ns_epoch, ntags = unpack(data)
            if version != FORMAT_VERSION or ntags or flags != plain_flags:
                append(None)
                continue
            try:
                append((decode(memoryview(data)[HEADER_SIZE:]), fresh_until, ns_epoch))
            except Exception:
                append(None)
        return out

    def _compress(self, payload: bytes) -> bytes:
        if self._compression == COMPRESSION_ZSTD:
            return bytes(self._zstd.compressor.compress(payload))
        return bytes(self._lz4.compress(payload))

    def _decompress(self, compression: int, payload: bytes, limit: int) -> bytes:
        """At most ``limit`` bytes out, whatever the frame claims or holds: a claimed size
        above it costs nothing, and a frame without one is inflated in bounded steps."""
        if compression == COMPRESSION_ZSTD:
            claimed = zstandard.frame_content_size(payload)
            if claimed > limit:
                raise CorruptEntry(f"zstd frame claims {claimed} bytes, above {limit}")
            if claimed >= 0:  # zstd checks that the frame holds exactly what it claims
                return bytes(self._zstd.decompressor.decompress(payload))
            reader = self._zstd.decompressor.stream_reader(payload)
            return _bounded(reader.read, limit)
        if compression == COMPRESSION_LZ4:
            decompressor = (self._lz4 or _lz4()).LZ4FrameDecompressor()
            out = bytes(decompressor.decompress(payload, max_length=limit + 1))
            if len(out) > limit or not decompressor.eof:
                raise CorruptEntry(f"lz4 frame inflates above {limit} bytes (or is cut)")
            return out
        raise CorruptEntry(f"unknown compression id {compression}")


def _bounded(read: Callable[[int], bytes], limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = read(min(limit + 1 - total, 1 << 20) or 1)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            raise CorruptEntry(f"compressed payload inflates above {limit} bytes")
        chunks.append(chunk)
