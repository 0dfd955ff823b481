"""Redis key layout: namespaces, per-key guards and tag stamps, all cluster-safe.

A value key and every key that guards it (its lease) share one hash tag, so a
script that touches both stays inside one slot on Redis Cluster::

    {ns:user:42}          value envelope
    {ns:user:42}:lease    fill lease token (issue: leases)
    ns:tag:{ns:catalog}   version stamp of tag "catalog" (its own slot)
    ns:epoch:{ns}         namespace epoch (invalidate_all)
    ns:registry:{ns}      sorted set of recently filled keys, bounded (veneer verify)
    veneer:inv:{ns}       pub/sub channel that carries invalidations to every L1
    ns:published:{ns}     count of invalidations published (a reconnecting L1 sees a gap)

The hash tag is the first ``{...}`` of a key. Namespaces may not contain braces,
so the tag always starts at the ``{`` veneer put there and ends at the first
``}`` after it, the same for the value and its guards, whatever the user key holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

__all__ = [
    "MAX_KEY_BYTES",
    "MAX_TAGS",
    "MAX_TAG_BYTES",
    "KeyLayout",
    "check_key",
    "check_tag",
    "check_tags",
    "validate_namespace",
]

_NAMESPACE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_KEY_BYTES: Final = 4096
"""Longest user key, in UTF-8 bytes (a longer one is a ValueError: hash it instead)."""
MAX_TAGS: Final = 64
"""Most tags on one entry (the envelope refuses more, also when decoding)."""
MAX_TAG_BYTES: Final = 1024
"""Longest tag name, in UTF-8 bytes."""


def _shown(text: object) -> str:
    if not isinstance(text, str):
        return repr(text)
    return repr(text) if len(text) <= 60 else repr(text[:40]) + f"... ({len(text)} characters)"


def _utf8(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise TypeError(f"a cache {what} must be a str, got {text.__class__.__name__}: {text!r}")
    try:
        return text.encode()
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{what} {_shown(text)} holds a lone surrogate at position {exc.start}: it cannot "
            f"be stored or broadcast as UTF-8; pass valid Unicode text (decode bytes with "
            f"errors='replace', or hash the {what})"
        ) from None


def check_key(key: object) -> str:
    """``key`` if veneer can store it: a str that encodes as UTF-8 in at most MAX_KEY_BYTES.

    Checked before any work, so an operation is refused whole, never half-applied.
    """
    size = len(_utf8(key, "key"))
    if size > MAX_KEY_BYTES:
        raise ValueError(
            f"key {_shown(key)} is {size} bytes in UTF-8, above the limit of {MAX_KEY_BYTES}; "
            "use a shorter key (for example a hash of the long one)"
        )
    return key  # type: ignore[return-value]  # _utf8 checked it is a str


def check_tag(tag: object) -> str:
    size = len(_utf8(tag, "tag"))
    if size > MAX_TAG_BYTES or size == 0:
        raise ValueError(
            f"tag {_shown(tag)} is {size} bytes in UTF-8: a tag must be 1 to {MAX_TAG_BYTES} bytes"
        )
    return tag  # type: ignore[return-value]


def check_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """The distinct tags, in order, after checking each and their number (MAX_TAGS)."""
    if isinstance(tags, str):
        raise TypeError(f"tags must be a list of names, not the str {_shown(tags)}")
    unique = tuple(dict.fromkeys(tags))
    if len(unique) > MAX_TAGS:
        raise ValueError(
            f"{len(unique)} tags on one entry, above the limit of {MAX_TAGS}; tag by a "
            "coarser group, or invalidate keys one by one"
        )
    for tag in unique:
        check_tag(tag)
    return unique


def validate_namespace(namespace: object) -> str:
    if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
        raise ValueError(
            f"namespace={namespace!r} is not valid: use 1-64 characters from letters, digits "
            "and '_.-' (no ':' so namespaces cannot overlap, no braces: they are the hash tag)"
        )
    return namespace


class KeyLayout:
    """Builds every Redis key veneer uses for one namespace."""

    __slots__ = (
        "_tag_prefix",
        "_value_prefix",
        "channel",
        "epoch_key",
        "namespace",
        "published_key",
        "registry_key",
    )

    def __init__(self, namespace: str) -> None:
        self.namespace = validate_namespace(namespace)
        self._value_prefix = "{" + namespace + ":"
        self._tag_prefix = namespace + ":tag:{" + namespace + ":"
        self.epoch_key = namespace + ":epoch:{" + namespace + "}"
        self.channel = "veneer:inv:{" + namespace + "}"
        self.published_key = namespace + ":published:{" + namespace + "}"
        self.registry_key = namespace + ":registry:{" + namespace + "}"

    def value(self, key: str) -> str:
        return self._value_prefix + key + "}"

    def encoded_values(self, keys: list[str]) -> list[bytes]:
        """Value keys as bytes for a batch (the batched read path: kept tight); raises
        like :func:`check_key` for a key that cannot be stored, before any I/O."""
        prefix = self._value_prefix
        try:
            encoded = [f"{prefix}{key}}}".encode() for key in keys]
        except (UnicodeEncodeError, TypeError):
            for key in keys:
                check_key(key)
            raise
        if encoded and max(map(len, encoded)) > len(prefix) + 1 + MAX_KEY_BYTES:
            for key in keys:
                check_key(key)
        return encoded

    def lease(self, key: str) -> str:
        return self._value_prefix + key + "}:lease"

    def tag(self, tag: str) -> str:
        return self._tag_prefix + tag + "}"
