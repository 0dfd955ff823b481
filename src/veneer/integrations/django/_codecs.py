"""The codecs of the Django cache backend: what a Django value becomes in the cache.

Every Django backend returns a fresh copy on each read (they unpickle), and Django
code mutates what it reads. veneer's L1 keeps decoded objects shared by callers,
so the backend hands the cache *stored forms* instead:

- an immutable scalar (``str``, ``bytes``, ``int``, ``float``, ``bool``, ``None``)
  as itself: shared safely, and an L1 hit costs no decoding;
- anything else as a :class:`Stored`, its encoded bytes: each read decodes its own
  copy, as with Django's own backends.

The default codec is msgpack (msgspec), safe for bytes written by anyone. Types
msgpack has no place for travel as msgpack extension types so they come back as
they went: tuples, sets, ``Decimal``, ``UUID``, dates and times, ``SafeString``
and ``HttpResponse`` (for ``cache_page``). What has no safe form (functions,
classes, model instances, dataclasses) is refused with :class:`UncacheableValue`.

The pickle codec is an explicit opt-in: whoever can write to the Redis can run
code in every process that reads it. Scalars stay msgpack there too.
"""

from __future__ import annotations

import datetime
import decimal
import pickle
import uuid
from collections.abc import Callable
from typing import Any, Final

import msgspec

from ..._errors import UnencodableValue

__all__ = ["DjangoCodec", "Stored", "UncacheableValue", "codec_named"]

SCALARS: Final = frozenset({str, bytes, int, float, bool, type(None)})

_RESPONSE, _SAFE, _TUPLE, _SET, _FROZENSET, _DECIMAL, _UUID = 1, 2, 3, 4, 5, 6, 7
_DATE, _DATETIME, _TIME, _TIMEDELTA = 8, 9, 10, 11

# First bytes of msgpack maps, arrays and extension types: a container, kept encoded.
_CONTAINER_HEADS = bytes(
    [*range(0x80, 0xA0), 0xC7, 0xC8, 0xC9, *range(0xD4, 0xD9), *range(0xDC, 0xE0)]
)
_PICKLE_HEAD = 0x80  # pickle protocol >= 2; never the first byte of a msgpack scalar


class UncacheableValue(UnencodableValue, pickle.PicklingError):
    """A value the cache's codec cannot store. It is also a ``pickle.PicklingError``,
    which is what code written for Django's pickling backends catches."""


_COPY: Any = object()
_UNSET: Any = object()


class Stored:
    """A value kept encoded in the cache: every :meth:`load` decodes a fresh copy.

    ``shared`` (the backend's ``copy_on_read=False``): the first load is kept and
    handed to every later reader, who must not change it. A response is still
    rebuilt for each reader: a cookie set on one copy must never reach the next.
    """

    __slots__ = ("_loads", "_value", "data")

    def __init__(self, data: bytes, loads: Callable[[bytes], Any], *, shared: bool = False) -> None:
        self.data = data
        self._loads = loads
        self._value = _UNSET if shared else _COPY

    def load(self) -> Any:
        value = self._value
        if value is _COPY:
            return self._loads(self.data)
        if value is _UNSET:
            value = self._loads(self.data)
            if not _is_response(value):
                self._value = value
        return value


def _enc_hook(value: Any) -> Any:
    """msgpack extension types for what msgspec does not encode itself."""
    from django.http import HttpResponseBase
    from django.utils.safestring import SafeString

    if isinstance(value, SafeString):
        return msgspec.msgpack.Ext(_SAFE, str.encode(value, "utf-8", "surrogatepass"))
    if isinstance(value, HttpResponseBase):
        return msgspec.msgpack.Ext(_RESPONSE, _encoder.encode(_response_fields(value)))
    raise TypeError(f"{value.__class__.__name__} objects have no safe msgpack form")


_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)


def _response_fields(response: Any) -> list[Any]:
    from django.http import HttpResponse

    if not isinstance(response, HttpResponse):  # streaming and file responses
        raise TypeError(f"{response.__class__.__name__} has no content to cache")
    cookies = [
        [name, morsel.value, {k: v for k, v in morsel.items() if v}]
        for name, morsel in response.cookies.items()
    ]
    return [
        response.status_code,
        response.reason_phrase,
        response.charset,
        list(response.items()),
        response.content,
        cookies,
    ]


def _response(fields: list[Any]) -> Any:
    from django.http import HttpResponse

    status, reason, charset, headers, content, cookies = fields
    response = HttpResponse(content, status=status, reason=reason, charset=charset)
    for name, value in headers:
        response.headers[name] = value
    for name, value, attributes in cookies:
        response.cookies[name] = value
        response.cookies[name].update(attributes)
    return response


def _prepared(value: Any) -> Any:
    """``value`` with every type msgpack would change turned into an extension type."""
    kind = type(value)
    if kind in SCALARS:
        return value
    if kind is list:
        return [_prepared(item) for item in value]
    if kind is dict:
        return {_prepared(k): _prepared(v) for k, v in value.items()}
    ext = msgspec.msgpack.Ext
    if isinstance(value, tuple):
        return ext(_TUPLE, _packed([_prepared(item) for item in value]))
    if isinstance(value, frozenset):
        return ext(_FROZENSET, _packed([_prepared(item) for item in value]))
    if isinstance(value, set):
        return ext(_SET, _packed([_prepared(item) for item in value]))
    if isinstance(value, decimal.Decimal):
        return ext(_DECIMAL, str(value).encode())
    if isinstance(value, uuid.UUID):
        return ext(_UUID, value.bytes)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            return value  # msgpack's timestamp (the instant; the zone comes back as UTC)
        return ext(_DATETIME, value.isoformat().encode())
    if isinstance(value, datetime.date):
        return ext(_DATE, value.isoformat().encode())
    if isinstance(value, datetime.time):
        return ext(_TIME, value.isoformat().encode())
    if isinstance(value, datetime.timedelta):
        return ext(_TIMEDELTA, _packed([value.days, value.seconds, value.microseconds]))
    if isinstance(value, dict):
        return {_prepared(k): _prepared(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_prepared(item) for item in value]
    if isinstance(value, str | int | float | bytes | bytearray | memoryview):
        # Subclasses (str and int enums, say) travel as their base value; SafeString
        # goes to the encoder's hook.
        return value
    if _is_response(value):
        return value  # the encoder's hook
    # msgspec would write dataclasses, Structs, enums as plain data, and they would
    # come back as something else: refuse them like any other object.
    raise TypeError(f"{value.__class__.__name__} objects have no safe msgpack form")


def _is_response(value: Any) -> bool:
    from django.http import HttpResponseBase

    return isinstance(value, HttpResponseBase)


def _packed(value: Any) -> bytes:
    return _encoder.encode(value)


def _ext_hook(code: int, data: memoryview) -> Any:
    if code == _SAFE:
        from django.utils.safestring import SafeString

        return SafeString(str(data, "utf-8", "surrogatepass"))
    if code == _TUPLE:
        return tuple(_decoder.decode(data))
    if code == _SET:
        return set(_decoder.decode(data))
    if code == _FROZENSET:
        return frozenset(_decoder.decode(data))
    if code == _DECIMAL:
        return decimal.Decimal(str(data, "ascii"))
    if code == _UUID:
        return uuid.UUID(bytes=bytes(data))
    if code == _DATETIME:
        return datetime.datetime.fromisoformat(str(data, "ascii"))
    if code == _DATE:
        return datetime.date.fromisoformat(str(data, "ascii"))
    if code == _TIME:
        return datetime.time.fromisoformat(str(data, "ascii"))
    if code == _TIMEDELTA:
        days, seconds, micros = _decoder.decode(data)
        return datetime.timedelta(days=days, seconds=seconds, microseconds=micros)
    if code == _RESPONSE:
        return _response(_decoder.decode(data))
    raise ValueError(f"unknown msgpack extension type {code}")


_decoder = msgspec.msgpack.Decoder(ext_hook=_ext_hook)
_decode_scalar = msgspec.msgpack.Decoder().decode


class DjangoCodec:
    """A veneer :class:`~veneer.Codec` whose values are the backend's stored forms.

    ``msgpack`` (codec id 1: the bytes are plain msgpack, readable by any veneer
    cache with the msgpack codec) or ``pickle`` (id 5: msgpack, and pickle for what
    msgpack cannot hold; pickle starts with 0x80, which no msgpack scalar does and
    the backend never writes a msgpack container that way).
    """

    def __init__(self, name: str, *, copy_on_read: bool = True) -> None:
        if name not in ("msgpack", "pickle"):
            raise ValueError(f"codec={name!r}: use 'msgpack' (default) or 'pickle'")
        self.name = "django-" + name
        self.pickle = name == "pickle"
        self.codec_id = 5 if self.pickle else 1
        self._shared = not copy_on_read

    # ------------------------------------------------------------ the backend

    def store(self, value: Any, /) -> Any:
        """The form the cache keeps for ``value``; raises :class:`UncacheableValue`."""
        if type(value) in SCALARS and (type(value) is not int or -(2**63) <= value < 2**64):
            return value
        if self.pickle:
            try:
                data = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
                return Stored(data, pickle.loads, shared=self._shared)
            except pickle.PicklingError:
                raise
            except Exception as exc:
                raise UncacheableValue(f"cannot pickle {value.__class__.__name__}: {exc}") from exc
        return Stored(self._msgpack(value), _decoder.decode, shared=self._shared)

    def _msgpack(self, value: Any) -> bytes:
        try:
            if type(value) is dict or type(value) is list:
                data = _encoder.encode(value)
                # Lossless as plain msgpack (no tuple, Decimal, date... inside): done.
                # A comparison in C costs far less than walking the value in Python.
                if _decoder.decode(data) == value:
                    return data
            return _encoder.encode(_prepared(value))
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise UncacheableValue(
                f"the safe codec cannot store this {value.__class__.__name__} ({exc}); "
                "cache plain data (dicts, lists, str, numbers, dates, Decimal, UUID), or "
                "opt into OPTIONS={'codec': 'pickle'} if every writer of this Redis is trusted"
            ) from None

    # ------------------------------------------------------- the veneer Codec

    def encode(self, value: Any, /) -> bytes:
        if type(value) is Stored:
            return value.data
        return _encoder.encode(value)

    def decode(self, data: bytes, /, type: Any = None) -> Any:
        head = data[0]
        # A pickle is 0x80 and its protocol; alone, 0x80 is msgpack's empty map.
        if self.pickle and head == _PICKLE_HEAD and len(data) > 1:
            return Stored(bytes(data), pickle.loads, shared=self._shared)
        if head in _CONTAINER_HEADS:  # msgpack also with the pickle codec (cached_get rows)
            return Stored(bytes(data), _decoder.decode, shared=self._shared)
        return _decode_scalar(data)

    def decoder_for(self, type: Any = None) -> Callable[[Any], Any]:
        return self.decode


def codec_named(name: str) -> DjangoCodec:
    return DjangoCodec(name)
