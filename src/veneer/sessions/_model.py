"""What a session is, the options of a store, and the decisions that need no I/O.

Both fronts (``_async/_store.py`` and the generated ``_sync/_store.py``) only move
rows and cache entries; whether a record is expired, due for a touch, or must
be re-checked in the database is decided here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from .._errors import ConfigurationError
from ._errors import SessionDataTooLarge, UnencodableSessionData

__all__ = [
    "DataCodec",
    "Record",
    "Session",
    "SessionStats",
    "StoreOptions",
    "expiry_of",
    "idle_only",
    "is_expired",
    "touch_due",
]

_HOUR = 3600.0
_DAY = 86_400.0


class Record(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A session row as the cache keeps it (Redis and L1): never the token."""

    user_id: str | None
    generation: int
    data: bytes
    created_at: float
    last_seen: float
    expires_at: float


class Session:
    """One session as a caller sees it: ``data`` is this caller's own copy to change.

    ``id`` is the digest of the token (what the database row is named by), not the
    token: it is safe to log and to show in a device list. Pass the session back to
    :meth:`~veneer.sessions.SessionStore.save` to store changes of ``data``.
    """

    __slots__ = (
        "_encoded",
        "_generation",
        "_user_at_load",
        "created_at",
        "data",
        "expires_at",
        "id",
        "last_seen",
        "user_id",
    )

    def __init__(
        self,
        id: str,
        user_id: str | None,
        data: dict[str, Any],
        *,
        created_at: float,
        last_seen: float,
        expires_at: float,
        generation: int,
        encoded: bytes,
    ) -> None:
        self.id = id
        self.user_id = user_id
        self.data = data
        self.created_at = created_at
        self.last_seen = last_seen
        self.expires_at = expires_at
        self._generation = generation
        self._encoded = encoded
        self._user_at_load = user_id

    @classmethod
    def _from_record(cls, id: str, record: Record, data: dict[str, Any]) -> Session:
        # The hot path of every load: slot stores, no keyword-argument parsing.
        self = cls.__new__(cls)
        self.id = id
        self.user_id = self._user_at_load = record.user_id
        self.data = data
        self.created_at = record.created_at
        self.last_seen = record.last_seen
        self.expires_at = record.expires_at
        self._generation = record.generation
        self._encoded = record.data
        return self

    def __repr__(self) -> str:
        # Data may hold personal details: the repr names the keys, not the values.
        return (
            f"Session(id={self.id[:12]}..., user_id={self.user_id!r}, "
            f"keys={sorted(map(str, self.data))!r})"
        )


@dataclass(slots=True)
class SessionStats:
    """Counters of one store (this process): what it did, not what the cache did."""

    created: int = 0
    loads: int = 0
    loads_refused: int = 0
    """Tokens that named no live session (unknown, revoked or expired)."""
    malformed: int = 0
    """Strings that could not be a token: refused without asking any store."""
    expired: int = 0
    saves: int = 0
    saves_unchanged: int = 0
    """save() calls that wrote nothing because the data had not changed."""
    touches: int = 0
    touch_failures: int = 0
    rotations: int = 0
    revocations: int = 0
    revocation_checks: int = 0
    """Database re-checks made because this process could not hear invalidations."""
    revoked_by_check: int = 0
    checks_shed: int = 0
    """Re-checks skipped because the store's bulkhead was full (the cached copy served)."""
    database_errors: int = 0


def _positive(name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigurationError(f"{name}={value!r} must be a positive number of seconds")
    return float(value)


@dataclass(frozen=True, slots=True)
class StoreOptions:
    idle_timeout: float = 24 * _HOUR
    absolute_timeout: float = 14 * _DAY
    touch_interval: float = 60.0
    revocation_check: float = 2.0
    cache_ttl: float = 300.0
    max_data_bytes: int = 64 * 1024
    data_format: str = "msgpack"
    key_prefix: str = "session:"

    def __post_init__(self) -> None:
        for name in ("idle_timeout", "absolute_timeout", "touch_interval", "revocation_check"):
            _positive(name, getattr(self, name))
        _positive("cache_ttl", self.cache_ttl)
        if self.touch_interval >= self.idle_timeout:
            raise ConfigurationError(
                f"touch_interval={self.touch_interval} must be below idle_timeout="
                f"{self.idle_timeout}: the idle timeout's precision is the touch interval"
            )
        if self.idle_timeout > self.absolute_timeout:
            raise ConfigurationError(
                f"idle_timeout={self.idle_timeout} is above absolute_timeout="
                f"{self.absolute_timeout}; lower it or raise absolute_timeout"
            )
        if isinstance(self.max_data_bytes, bool) or not (
            isinstance(self.max_data_bytes, int) and self.max_data_bytes >= 2
        ):
            raise ConfigurationError(f"max_data_bytes={self.max_data_bytes!r} must be >= 2")
        if self.data_format not in ("json", "msgpack"):
            raise ConfigurationError(
                f"data_format={self.data_format!r}: use 'msgpack' (default) or 'json'"
            )
        if not self.key_prefix or any(c in self.key_prefix for c in "{} \n"):
            raise ConfigurationError(
                f"key_prefix={self.key_prefix!r} must be non-empty, without braces or spaces"
            )


class DataCodec:
    """Session data to bytes and back (msgspec JSON or msgpack), with the size cap."""

    __slots__ = ("_encode", "decode", "limit")

    decode: Callable[[bytes], dict[str, Any]]
    """A new dict (with new lists and dicts inside) from stored bytes: a private copy."""

    def __init__(self, data_format: str, limit: int) -> None:
        module: Any = msgspec.json if data_format == "json" else msgspec.msgpack
        self._encode = module.Encoder().encode
        # The decoder's own method, not a wrapper: one Python frame less on every load.
        self.decode = module.Decoder(dict[str, Any]).decode
        self.limit = limit

    def encode(self, data: object, /) -> bytes:
        if not isinstance(data, dict):
            raise UnencodableSessionData(
                f"session data must be a dict, got {type(data).__name__}; nothing was written"
            )
        try:
            encoded: bytes = self._encode(data)
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
            raise UnencodableSessionData(
                f"session data cannot be encoded ({exc}); store plain values (str, int, "
                "float, bool, None, lists and dicts of them); nothing was written"
            ) from None
        if len(encoded) > self.limit:
            raise SessionDataTooLarge(len(encoded), self.limit)
        return encoded


def expiry_of(created_at: float, last_seen: float, options: StoreOptions) -> float:
    """When a row written now becomes purgeable: the earlier of its two deadlines."""
    return min(created_at + options.absolute_timeout, last_seen + options.idle_timeout)


def is_expired(record: Record, now: float, options: StoreOptions) -> bool:
    """Timeouts from the stored timestamps, with the current options (not Redis TTLs)."""
    return (
        now >= record.expires_at
        or now - record.created_at >= options.absolute_timeout
        or now - record.last_seen >= options.idle_timeout
    )


def idle_only(record: Record, now: float, options: StoreOptions) -> bool:
    """Expired by the idle deadline alone: a touch the cache has not heard of may save it."""
    return (
        now - record.created_at < options.absolute_timeout
        and now - record.last_seen >= options.idle_timeout
    )


def touch_due(last_seen: float, now: float, options: StoreOptions) -> bool:
    return now - last_seen >= options.touch_interval
