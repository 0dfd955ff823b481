"""Rate limits: ``"100/minute"``, ``"10 per 2 seconds"``, or ``Limit(rate, per, burst=...)``.

A limit is ``rate`` hits per ``per`` seconds, with a bucket of ``burst`` hits
(default: ``rate``): a subject may spend ``burst`` at once, then earns one hit
back every ``per / rate`` seconds. Over any span of ``t`` seconds a subject gets
at most ``burst + rate * t / per`` hits.

Everything here is validated when it is built, with a message that says what
was wrong and what is accepted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["MAX_LIMITS", "Limit", "LimitsSpec", "parse_limits"]

MAX_LIMITS = 8
"""Limits checked together in one call (one script, one round trip)."""

_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
}  # fmt: skip
_NAMES = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}
_LIMIT = re.compile(
    r"^\s*(?P<rate>\d+)\s*(?:/|\s+per\s+)\s*(?P<count>\d+(?:\.\d+)?)?\s*(?P<unit>[a-z]+)"
    r"(?:\s+burst\s+(?P<burst>\d+))?\s*$",
    re.IGNORECASE,
)
_FORMS = (
    "use '<count>/<unit>' or '<count> per <n> <unit>' (units: second, minute, hour, day), "
    "optionally followed by 'burst <n>', several separated by ';' "
    "(for example '100/minute', '10 per 2 seconds burst 5', '10/second; 1000/hour')"
)
# Delays are integer microseconds inside a Lua double: keep every sum exact.
_MAX_MICROS = 2**52


@dataclass(frozen=True, slots=True)
class Limit:
    """``rate`` hits per ``per`` seconds, spending at most ``burst`` at once (default ``rate``)."""

    rate: int
    per: float = 1.0
    burst: int | None = None
    interval_us: int = field(init=False, repr=False, compare=False)
    """Microseconds that earn back one hit."""
    tolerance_us: int = field(init=False, repr=False, compare=False)
    """How far ahead of now a subject's account may run: ``burst`` intervals."""

    def __post_init__(self) -> None:
        rate, per, burst = self.rate, self.per, self.burst
        if isinstance(rate, bool) or not isinstance(rate, int) or rate < 1:
            raise ValueError(f"Limit rate={rate!r}: give a whole number of hits >= 1 per period")
        if (
            isinstance(per, bool)
            or not isinstance(per, int | float)
            or not math.isfinite(per)
            or per <= 0
        ):
            raise ValueError(f"Limit per={per!r}: give the period as a positive number of seconds")
        if burst is None:
            burst = rate
        elif isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError(
                f"Limit burst={burst!r}: give a whole number >= 1 (how many hits may come at once)"
            )
        interval = round(per * 1_000_000 / rate)
        if interval < 1:
            raise ValueError(
                f"Limit {rate}/{per:g}s is more than 1,000,000 hits per second; "
                "veneer counts time in microseconds"
            )
        if burst * interval >= _MAX_MICROS:
            raise ValueError(
                f"Limit {rate}/{per:g}s burst {burst}: the bucket spans over 100 years"
            )
        object.__setattr__(self, "burst", burst)
        object.__setattr__(self, "per", float(per))
        object.__setattr__(self, "interval_us", interval)
        object.__setattr__(self, "tolerance_us", burst * interval)

    @classmethod
    def parse(cls, text: str, /) -> Limit:
        """One limit from text: ``"100/minute"``, ``"10 per 2 seconds burst 5"``."""
        if not isinstance(text, str):
            raise TypeError(f"a limit is a string like '100/minute', not {type(text).__name__}")
        match = _LIMIT.match(text)
        if match is None:
            raise ValueError(f"malformed rate limit {text!r}: {_FORMS}")
        unit = match["unit"].lower()
        if unit not in _UNITS:
            raise ValueError(f"malformed rate limit {text!r}: unknown unit {unit!r}; {_FORMS}")
        count = float(match["count"]) if match["count"] else 1.0
        if count <= 0:
            raise ValueError(f"malformed rate limit {text!r}: the period must be longer than 0")
        burst = int(match["burst"]) if match["burst"] else None
        return cls(int(match["rate"]), count * _UNITS[unit], burst)

    @property
    def period_text(self) -> str:
        seconds = self.per
        for unit, name in sorted(_NAMES.items(), reverse=True):
            if seconds == unit:
                return name
            if seconds % unit == 0:
                return f"{seconds / unit:g} {name}s"
        return f"{seconds:g} seconds"

    def __str__(self) -> str:
        text = f"{self.rate}/{self.period_text}"
        return text if self.burst == self.rate else f"{text} burst {self.burst}"

    @property
    def part(self) -> str:
        """The Redis key part of this limit: changing the limit starts a fresh account."""
        return f"{self.rate}/{self.per:g}s/{self.burst}"


LimitsSpec = str | Limit | Sequence[str | Limit]
"""One limit or several: a string (``';'``-separated), a :class:`Limit`, or a sequence."""


def parse_limits(spec: LimitsSpec, /) -> tuple[Limit, ...]:
    """Every limit of ``spec``, checked together: at least one, at most ``MAX_LIMITS``."""
    items: list[str | Limit]
    if isinstance(spec, str):
        items = [part for part in re.split(r"[;,]", spec) if part.strip()]
        if not items:
            raise ValueError(f"no rate limit in {spec!r}: {_FORMS}")
    elif isinstance(spec, Limit):
        items = [spec]
    elif isinstance(spec, Sequence):
        items = list(spec)
    else:
        raise TypeError(f"limits={spec!r}: give a string like '100/minute', a Limit, or a list")
    limits: list[Limit] = []
    for item in items:
        if isinstance(item, Limit):
            limits.append(item)
        else:
            limits.extend(parse_limits(item) if ";" in item or "," in item else [Limit.parse(item)])
    if not limits:
        raise ValueError("no rate limit given: pass at least one, like '100/minute'")
    if len(limits) > MAX_LIMITS:
        raise ValueError(
            f"{len(limits)} limits in one call: at most {MAX_LIMITS} are checked at once"
        )
    parts = [limit.part for limit in limits]
    if len(set(parts)) != len(parts):
        raise ValueError(f"the same limit is given twice in {[str(x) for x in limits]}")
    return tuple(limits)
