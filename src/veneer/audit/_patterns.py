"""Fold key names into patterns (``user:123:cart`` -> ``user:*:cart``) to report per prefix.

A pattern is a valid Redis glob that matches every key folded into it: the
parts that look like ids become ``*`` and literal glob characters are escaped.
The folding is pure and deterministic; ``coarsen`` keeps the number of patterns
bounded when a keyspace has many distinct non-id words.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import TypeVar

__all__ = ["OTHER", "coarsen", "fold_key", "split_pattern"]

# Deeper structure rarely names a new kind of data; it is usually payload.
MAX_DEPTH = 4
# A segment this long is data (a URL, a JSON blob), not a name.
MAX_SEGMENT = 40
# The label for keys merged when even one-segment patterns are too many. It
# contains "(" so no folded key can produce it.
OTHER = "(other)"

_SPLIT = re.compile(r"([:/|.#])")
_UUID = re.compile(
    r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
)
_HEX = re.compile(r"[0-9a-fA-F]+")
_TOKEN = re.compile(r"[A-Za-z0-9_\-=+~]+")
_DIGITS = re.compile(r"\d+")
_ONLY_WILD = re.compile(r"[*\-_+~,;@ ]*\*[*\-_+~,;@ ]*")
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def _looks_like_id(seg: str) -> bool:
    if _UUID.fullmatch(seg):
        return True
    has_digit = any(c.isdigit() for c in seg)
    if _HEX.fullmatch(seg) and (len(seg) >= 16 or (len(seg) >= 8 and has_digit)):
        return True
    if len(seg) >= 16 and _TOKEN.fullmatch(seg):
        # Random tokens (base64, ULIDs, session ids) mix letter cases and digits;
        # long snake_case names do not.
        classes = sum(
            (
                any(c.islower() for c in seg),
                any(c.isupper() for c in seg),
                has_digit,
            )
        )
        if classes >= 2 and has_digit:
            return True
        # One base64 token in a few hundred has no digit (express-session's 32-character
        # ids: 0.4%); it still mixes cases throughout. A long CamelCase name folds too,
        # which only groups names that a snake_case or dotted key would keep apart.
        upper = sum(c.isupper() for c in seg)
        lower = sum(c.islower() for c in seg)
        return len(seg) >= 20 and upper >= 3 and lower >= 3
    return False


def _fold_segment(seg: str) -> str:
    if not seg:
        return seg
    if (
        len(seg) > MAX_SEGMENT
        or not seg.isprintable()
        or "\\x" in seg  # an undecodable byte, shown as \xNN: binary data
        or "@" in seg  # an e-mail address is an id
        or _looks_like_id(seg)
    ):
        return "*"
    escaped = _GLOB_SPECIAL.sub(r"\\\1", seg)
    # Digit runs are ids or versions (page2, 2024-01-01); the letters around them
    # still name the data, so only the digits become a wildcard.
    folded = _DIGITS.sub("*", escaped)
    if _ONLY_WILD.fullmatch(folded):
        return "*"
    return folded


def fold_key(key: bytes | str) -> str:
    """The pattern a key belongs to: separators kept, ids replaced by ``*``."""
    text = key if isinstance(key, str) else key.decode("utf-8", "backslashreplace")
    parts = _SPLIT.split(text)
    # parts alternates segment, separator, segment, ...
    out: list[str] = []
    for depth, i in enumerate(range(0, len(parts), 2), start=1):
        if depth > MAX_DEPTH:
            out.append("*")
            break
        out.append(_fold_segment(parts[i]))
        if i + 1 < len(parts):
            out.append(parts[i + 1])
    return "".join(out)


def split_pattern(pattern: str) -> list[str]:
    """Segments and separators of a pattern, alternating (segment first)."""
    # Escaped separators cannot occur: separators are never glob-special.
    return _SPLIT.split(pattern)


def _depth(pattern: str) -> int:
    """Named levels of a pattern: ``user:*`` is the node ``user`` (depth 1)."""
    parts = split_pattern(pattern)
    depth = (len(parts) + 1) // 2
    return depth - 1 if parts[-1] == "*" else depth


def _parent(pattern: str, depth: int) -> str:
    """The first ``depth - 1`` segments followed by a wildcard segment."""
    parts = split_pattern(pattern)
    return "".join([*parts[: 2 * (depth - 1)], "*"])


T = TypeVar("T")


def coarsen(
    table: Mapping[str, T],
    limit: int,
    merge: Callable[[T, T], T],
    weight: Callable[[T], float],
) -> dict[str, T]:
    """Merge patterns until at most ``limit`` remain, keeping the shallow distinctions.

    At the deepest level, sibling patterns (same parent) are merged into
    ``parent:*``, the merges that remove most patterns first; when a whole level
    is not enough the next level up is tried. At one level the lightest
    patterns (by ``weight``) go into ``(other)``.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    current = dict(table)
    while len(current) > limit:
        depths = {p: _depth(p) for p in current}
        deepest = max(depths.values())
        if deepest <= 1:
            return _merge_lightest(current, limit, merge, weight)
        groups: dict[str, list[str]] = defaultdict(list)
        for p, d in depths.items():
            if d == deepest:
                groups[_parent(p, deepest)].append(p)

        def removed(item: tuple[str, list[str]]) -> int:
            target, members = item
            return len(members) - (0 if target in current else 1)

        # Ties broken by name so the result is deterministic. Every pattern of
        # this level ends up merged, so the next pass looks one level up.
        for target, members in sorted(groups.items(), key=lambda kv: (-removed(kv), kv[0])):
            if len(current) <= limit:
                break
            _merge_into(current, target, members, merge)
    return current


def _merge_into(
    current: dict[str, T], target: str, members: list[str], merge: Callable[[T, T], T]
) -> None:
    acc: T | None = current.pop(target, None)
    for m in members:
        value = current.pop(m)
        acc = value if acc is None else merge(acc, value)
    assert acc is not None
    current[target] = acc


def _merge_lightest(
    current: dict[str, T], limit: int, merge: Callable[[T, T], T], weight: Callable[[T], float]
) -> dict[str, T]:
    ranked = sorted(current.items(), key=lambda kv: (-weight(kv[1]), kv[0]))
    kept = dict(ranked[: limit - 1])
    rest = [v for _, v in ranked[limit - 1 :]]
    acc = rest[0]
    for v in rest[1:]:
        acc = merge(acc, v)
    kept[OTHER] = acc
    return kept
