"""Redis key layout: namespaces, per-key guards and tag stamps, all cluster-safe.

A value key and every key that guards it (its lease) share one hash tag, so a
script that touches both stays inside one slot on Redis Cluster::

    {ns:user:42}          value envelope
    {ns:user:42}:lease    fill lease token (issue: leases)
    ns:tag:{ns:catalog}   version stamp of tag "catalog" (its own slot)
    ns:epoch:{ns}         namespace epoch (invalidate_all)
    ns:registry:{ns}      sorted set of recently filled keys, bounded (veneer verify)
    veneer:inv:{ns}       pub/sub channel that carries invalidations to every L1

The hash tag is the first ``{...}`` of a key. Namespaces may not contain braces,
so the tag always starts at the ``{`` veneer put there and ends at the first
``}`` after it, the same for the value and its guards, whatever the user key holds.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["KeyLayout", "validate_namespace"]

_NAMESPACE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_KEY_BYTES: Final = 4096


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
        "registry_key",
    )

    def __init__(self, namespace: str) -> None:
        self.namespace = validate_namespace(namespace)
        self._value_prefix = "{" + namespace + ":"
        self._tag_prefix = namespace + ":tag:{" + namespace + ":"
        self.epoch_key = namespace + ":epoch:{" + namespace + "}"
        self.channel = "veneer:inv:{" + namespace + "}"
        self.registry_key = namespace + ":registry:{" + namespace + "}"

    def value(self, key: str) -> str:
        return self._value_prefix + key + "}"

    def encoded_values(self, keys: list[str]) -> list[bytes]:
        """Value keys as bytes for a batch (the batched read path: kept tight)."""
        prefix = self._value_prefix
        try:
            return [f"{prefix}{key}}}".encode() for key in keys]
        except UnicodeEncodeError:  # a lone surrogate somewhere: keep it, as value() does
            return [f"{prefix}{key}}}".encode("utf-8", "surrogatepass") for key in keys]

    def lease(self, key: str) -> str:
        return self._value_prefix + key + "}:lease"

    def tag(self, tag: str) -> str:
        return self._tag_prefix + tag + "}"
