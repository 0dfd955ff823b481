"""What a counter is: its name, its mode, its shards, and the checks on every input.

Pure code, no I/O: the fronts call these before any work, so a bad increment is
refused whole and the stored count is never touched.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from .._errors import VeneerError

__all__ = [
    "GUARD_ABOVE",
    "MAX_COUNT",
    "MAX_KEY_CHARS",
    "MIN_COUNT",
    "CounterOverflow",
    "CounterSpec",
    "CounterStoreError",
    "Mode",
    "UnknownCounter",
    "check_amount",
    "check_counter_key",
    "check_name",
    "read_key",
    "read_tag",
    "shard_of",
    "specs_from",
]

Mode = Literal["exact", "buffered"]

MAX_COUNT: Final = (1 << 63) - 1
"""Largest stored count (a signed 64-bit ``BIGINT``, as in the database and in Redis)."""
MIN_COUNT: Final = -MAX_COUNT
"""Smallest stored count (symmetric, so every increment can be undone by its negation)."""
MAX_KEY_CHARS: Final = 200
"""Longest counter key (the database column is ``VARCHAR(200)``)."""

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class UnknownCounter(VeneerError, LookupError):
    """A counter name that this ``Counters`` was not built with."""

    def __init__(self, name: object, known: Iterable[str]) -> None:
        self.name = name
        listed = ", ".join(sorted(known)) or "none"
        super().__init__(
            f"unknown counter {name!r}: this Counters knows {listed}; declare it in the "
            "counters= mapping with its mode ('exact' or 'buffered')"
        )

    def __str__(self) -> str:  # LookupError would quote the whole message
        return str(self.args[0])


class CounterOverflow(VeneerError, OverflowError):
    """An increment that is, or would make the count, larger than a signed 64-bit integer."""


class CounterStoreError(VeneerError):
    """The database did not take increments that had to be written to it (exact counters,
    or buffered ones while Redis is down): they are not acknowledged. The message says
    what the database answered."""


@dataclass(frozen=True, slots=True)
class CounterSpec:
    """How one counter is kept.

    ``mode="exact"``: every acknowledged increment is in the database (an append-only
    journal, written in group commits). ``mode="buffered"``: acknowledged once Redis
    has it; a flusher moves it to the database. ``shards`` spreads a buffered
    counter's buffer over that many hash slots (and flushes).
    """

    mode: Mode
    shards: int = 16

    def __post_init__(self) -> None:
        if self.mode not in ("exact", "buffered"):
            raise ValueError(f"mode={self.mode!r}: use 'exact' or 'buffered'")
        if not isinstance(self.shards, int) or not 1 <= self.shards <= 1024:
            raise ValueError(f"shards={self.shards!r}: use an int from 1 to 1024")


def check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"counter name {name!r}: use 1-64 letters, digits, '_', '.' or '-' "
            "(it is part of Redis keys and database rows)"
        )
    return name


def specs_from(counters: Mapping[str, Mode | CounterSpec]) -> dict[str, CounterSpec]:
    """``{"views": "buffered", "credits": CounterSpec("exact")}`` as checked specs."""
    specs: dict[str, CounterSpec] = {}
    for name, spec in counters.items():
        check_name(name)
        specs[name] = spec if isinstance(spec, CounterSpec) else CounterSpec(spec)
    if not specs:
        raise ValueError("counters= is empty: declare at least one counter and its mode")
    return specs


def check_counter_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"a counter key must be a str, got {key.__class__.__name__}: {key!r}")
    if not 0 < len(key) <= MAX_KEY_CHARS:
        raise ValueError(
            f"counter key of {len(key)} characters: use 1 to {MAX_KEY_CHARS} (hash a longer one)"
        )
    try:
        key.encode()
    except UnicodeEncodeError:
        raise ValueError(
            f"counter key {key[:40]!r} holds a lone surrogate: pass valid Unicode text"
        ) from None
    return key


def check_amount(n: object) -> int:
    """``n`` if it is an int within the 64-bit range (``bool`` is refused: True is no amount)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(
            f"n={n!r} ({n.__class__.__name__}): an increment is an int; "
            "convert it explicitly (int(x)) if a float or a string is meant"
        )
    if not MIN_COUNT <= n <= MAX_COUNT:
        raise CounterOverflow(
            f"n={n} does not fit in a signed 64-bit count ({MIN_COUNT}..{MAX_COUNT}); "
            "nothing was counted"
        )
    return n


_READ_PREFIX: Final = "veneer.counters:"
GUARD_ABOVE: Final = 1 << 62
"""Totals at least this large (in magnitude) get an overflow guard in Redis."""


def read_tag(name: str) -> str:
    """The cache tag of every cached durable total of counter ``name`` (a flush of the
    counter invalidates it: one command, however many keys)."""
    return _READ_PREFIX + name + ":"


def read_key(name: str, key: str) -> str:
    """The cache key of the durable total of ``name[key]``."""
    return _READ_PREFIX + name + ":" + key


def shard_of(key: str, shards: int) -> int:
    """The buffer shard of ``key``: stable across processes and Python versions."""
    return zlib.crc32(key.encode()) % shards if shards > 1 else 0
