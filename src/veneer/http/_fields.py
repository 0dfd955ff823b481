"""Parsing of the HTTP fields a cache reads: strict, and never raising on bad input.

Every parser here takes the field lines as the server received them and returns
a value or a "nothing usable" answer; a malformed field is the sender's problem
and must never become an exception (or a long freshness lifetime) in the cache.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from http_sfv.dictionary import Dictionary

__all__ = [
    "MAX_DELTA",
    "Directives",
    "ETag",
    "byte_range",
    "cdn_directives",
    "delta_seconds",
    "first_age",
    "http_date",
    "list_items",
    "matches_any",
    "parse_directives",
    "parse_etag",
    "parse_etag_list",
]

MAX_DELTA: Final = 2_147_483_648
"""RFC 9111 1.2.2: a delta-seconds value too large to represent is taken as 2^31."""

_TCHAR: Final = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_DIGITS: Final = re.compile(r"[0-9]+\Z")


@dataclass(slots=True)
class Directives:
    """Cache-Control (or a targeted field's) directives: lower-case name -> argument.

    ``None`` is a directive without argument. ``conflicts`` names directives that
    appeared more than once with different arguments (RFC 9111 4.2.1: such a
    response is best treated as stale).
    """

    values: dict[str, str | None] = field(default_factory=dict)
    conflicts: set[str] = field(default_factory=set)

    def __contains__(self, name: str) -> bool:
        return name in self.values

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def seconds(self, name: str) -> int | None:
        """The delta-seconds argument of ``name``; -1 when present but unusable."""
        if name not in self.values:
            return None
        if name in self.conflicts:
            return -1
        return delta_seconds(self.values[name])

    def field_names(self, name: str) -> list[str]:
        """The field names listed by a qualified directive (``no-cache="a, b"``)."""
        argument = self.values.get(name)
        if not argument:
            return []
        return [item.lower() for item in list_items([argument])]


def delta_seconds(value: str | None) -> int:
    """``1*DIGIT`` (leading zeros allowed, capped at 2^31), or -1 when it is not one."""
    if value is None or not _DIGITS.match(value):
        return -1
    return min(int(value), MAX_DELTA)


def parse_directives(lines: Iterable[str]) -> Directives:
    """Cache-Control lines, joined as one list. A member that is not
    ``token [ "=" ( token / quoted-string ) ]`` is skipped whole (``max-age =5``)."""
    out = Directives()
    for line in lines:
        for name, argument in _members(line):
            previous = out.values.get(name, argument)
            if name in out.values:
                if previous != argument:
                    out.conflicts.add(name)
                continue
            out.values[name] = argument
    return out


def _members(line: str) -> Iterable[tuple[str, str | None]]:
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] in " \t,":
            i += 1
        if i >= n:
            return
        start = i
        while i < n and line[i] in _TCHAR:
            i += 1
        name = line[start:i].lower()
        argument: str | None = None
        valid = bool(name)
        if valid and i < n and line[i] == "=":
            i += 1
            if i < n and line[i] == '"':
                quoted, i = _quoted(line, i)
                valid = quoted is not None
                argument = quoted
            else:
                start = i
                while i < n and line[i] in _TCHAR:
                    i += 1
                argument = line[start:i]
                valid = bool(argument)
        while i < n and line[i] in " \t":
            i += 1
        if i < n and line[i] != ",":
            valid = False
            i = _skip_member(line, i)
        if valid:
            yield name, argument


def _quoted(line: str, i: int) -> tuple[str | None, int]:
    """The content of the quoted-string starting at ``line[i] == '"'``, and the index after."""
    chars: list[str] = []
    i += 1
    n = len(line)
    while i < n:
        ch = line[i]
        if ch == "\\" and i + 1 < n:
            chars.append(line[i + 1])
            i += 2
            continue
        if ch == '"':
            return "".join(chars), i + 1
        chars.append(ch)
        i += 1
    return None, n


def _skip_member(line: str, i: int) -> int:
    """Index of the comma ending the member at ``i`` (commas in quoted strings do not count)."""
    n = len(line)
    while i < n and line[i] != ",":
        if line[i] == '"':
            _, i = _quoted(line, i)
        else:
            i += 1
    return i


def cdn_directives(lines: Sequence[str]) -> Directives | None:
    """A targeted cache-control field (RFC 9213): a Structured Field Dictionary.

    Returns ``None`` when the field is absent or invalid (it is then ignored, as the
    RFC says), including a known directive with an argument of the wrong type.
    """
    if not lines:
        return None
    parsed = Dictionary()
    try:
        parsed.parse(", ".join(lines).encode("latin-1"))
    except (ValueError, UnicodeEncodeError):
        return None
    out = Directives()
    for name, member in parsed.items():
        value = getattr(member, "value", None)
        if name in ("max-age", "s-maxage", "stale-while-revalidate", "stale-if-error"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                return None
            out.values[name] = str(min(value, MAX_DELTA))
        elif value is True:
            out.values[name] = None
        elif isinstance(value, str):
            out.values[name] = value
        else:
            out.values[name] = None
    return out


def list_items(lines: Iterable[str]) -> list[str]:
    """The members of a comma-separated list field (empty members dropped)."""
    items: list[str] = []
    for line in lines:
        items.extend(part.strip() for part in line.split(",") if part.strip())
    return items


def first_age(lines: Sequence[str]) -> int:
    """The ``Age`` in seconds: the first member of the first line, 0 if unusable."""
    if not lines:
        return 0
    first = lines[0].split(",", 1)[0].strip()
    value = delta_seconds(first)
    return max(value, 0)


# ----------------------------------------------------------------------- dates

_DAYS = "mon|tue|wed|thu|fri|sat|sun"
_LONG_DAYS = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
_MONTHS: Final = {
    m: i + 1
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}
_MON = "|".join(_MONTHS)
_TIME = r"([0-9]{2}):([0-9]{2}):([0-9]{2})"
_IMF = re.compile(rf"(?:{_DAYS}), ([0-9]{{2}}) ({_MON}) ([0-9]{{4}}) {_TIME} GMT\Z", re.I)
_RFC850 = re.compile(rf"(?:{_LONG_DAYS}), ([0-9]{{2}})-({_MON})-([0-9]{{2}}) {_TIME} GMT\Z", re.I)
_ASCTIME = re.compile(rf"(?:{_DAYS}) ({_MON}) ([0-9 ][0-9]) {_TIME} ([0-9]{{4}})\Z", re.I)


def http_date(value: str | None, *, now: float | None = None) -> float | None:
    """An HTTP-date (IMF-fixdate, or the obsolete RFC 850 and asctime forms) as unix
    seconds; ``None`` for anything else (``UTC``, two-digit years in IMF form, ...)."""
    if value is None:
        return None
    text = value.strip()
    match = _IMF.match(text)
    if match:
        day, month, year, hh, mm, ss = match.groups()
        return _timestamp(int(year), month, int(day), hh, mm, ss)
    match = _RFC850.match(text)
    if match:
        day, month, yy, hh, mm, ss = match.groups()
        year = _full_year(int(yy), now)
        return _timestamp(year, month, int(day), hh, mm, ss)
    match = _ASCTIME.match(text)
    if match:
        month, day, hh, mm, ss, year = match.groups()
        return _timestamp(int(year), month, int(day.strip()), hh, mm, ss)
    return None


def _full_year(yy: int, now: float | None) -> int:
    """RFC 9110 5.6.7: a two-digit year more than 50 years ahead is in the past century."""
    current = time.gmtime(now).tm_year
    year = current - current % 100 + yy
    if year > current + 50:
        year -= 100
    elif year < current - 49:
        year += 100
    return year


def _timestamp(year: int, month: str, day: int, hh: str, mm: str, ss: str) -> float | None:
    hour, minute, second = int(hh), int(mm), int(ss)
    if not (1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        return None
    try:
        return float(calendar.timegm((year, _MONTHS[month.lower()], day, hour, minute, second)))
    except (ValueError, OverflowError):
        return None


# ----------------------------------------------------------------------- etags


@dataclass(frozen=True, slots=True)
class ETag:
    opaque: str  # with its quotes
    weak: bool


def parse_etag(value: str | None) -> ETag | None:
    if value is None:
        return None
    text = value.strip()
    weak = text[:2] == "W/"
    if weak:
        text = text[2:]
    if len(text) < 2 or text[0] != '"' or text[-1] != '"' or '"' in text[1:-1]:
        return None
    return ETag(text, weak)


def parse_etag_list(lines: Sequence[str]) -> list[ETag] | None:
    """``If-None-Match``: the entity tags listed, or ``None`` for ``*``."""
    tags: list[ETag] = []
    for item in list_items(lines):
        if item == "*":
            return None
        tag = parse_etag(item)
        if tag is not None:
            tags.append(tag)
    return tags


def matches_any(stored: ETag, tags: list[ETag] | None) -> bool:
    """Weak comparison (RFC 9110 8.8.3.2), as If-None-Match uses; ``None`` is ``*``."""
    if tags is None:
        return True
    return any(tag.opaque == stored.opaque for tag in tags)


# ---------------------------------------------------------------------- ranges

_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)\Z", re.I)


def byte_range(value: str, length: int) -> tuple[int, int] | bool | None:
    """One ``bytes=`` range of a representation of ``length`` bytes: ``(first, last)``
    inclusive; ``False`` when unsatisfiable; ``None`` when the cache should not answer
    it (several ranges, another unit, a malformed header)."""
    match = _RANGE.match(value.strip())
    if not match:
        return None
    first_text, last_text = match.groups()
    if not first_text:
        if not last_text:
            return None
        suffix = int(last_text)
        if suffix == 0:
            return False
        return max(0, length - suffix), length - 1
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None
    if first >= length:
        return False
    last = int(last_text) if last_text else length - 1
    return first, min(last, length - 1)
