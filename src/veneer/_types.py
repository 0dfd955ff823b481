"""What type a cached value comes back as: one rule for every tier (no I/O here).

With ``type=``, the loader's value is converted to that type before it is
returned or cached, so a miss, an L1 hit and a Redis hit in another process all
return the same type (Redis hits decode with msgspec's typed decoders). Without
``type=``, a value comes back from Redis as what the codec round-trips (a tuple
as a list, a dataclass as a dict, ...); :class:`TypeDrift` notices that on the
first fills of each call site and warns once, naming the fix.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable
from typing import Any, Final

import msgspec

__all__ = ["TypeDrift", "conform", "first_difference", "loader_site"]

log = logging.getLogger("veneer")

CHECKS_PER_SITE: Final = 16
"""Fills checked per call site before it is trusted (the check decodes what it encoded)."""
_MAX_SITES: Final = 10_000
_MAX_DEPTH: Final = 32


def _type_name(type: Any) -> str:
    return getattr(type, "__name__", None) or repr(type)


def conform(value: Any, type: Any, key: str) -> Any:
    """``value`` as an instance of ``type`` (``None``, a negative entry, stays ``None``).

    Raises TypeError when it does not convert: returning it unconverted would give
    the caller another type than a Redis hit gives, and caching it could never be
    read back as ``type``.
    """
    if value is None or (isinstance(type, builtins.type) and builtins.type(value) is type):
        return value
    try:
        return msgspec.convert(value, type, from_attributes=True)
    except (msgspec.ValidationError, TypeError) as exc:
        raise TypeError(
            f"the loader of key {key!r} returned a {value.__class__.__name__} that does not "
            f"convert to {_type_name(type)} ({exc}); return a {_type_name(type)} (or a "
            "mapping or object with its fields), or drop type="
        ) from None


def first_difference(sent: Any, received: Any, path: str = "value", depth: int = 0) -> str | None:
    """Where ``received`` (a decoded copy of ``sent``) has another type than ``sent``."""
    if builtins.type(sent) is not builtins.type(received):
        sent_type, received_type = sent.__class__.__name__, received.__class__.__name__
        return f"{path} is a {sent_type} but comes back as a {received_type}"
    if depth >= _MAX_DEPTH:
        return None
    if isinstance(sent, dict):
        for (k1, v1), (k2, v2) in zip(sent.items(), received.items(), strict=False):
            found = first_difference(k1, k2, f"{path} key {k1!r}", depth + 1)
            found = found or first_difference(v1, v2, f"{path}[{k1!r}]", depth + 1)
            if found:
                return found
    elif isinstance(sent, list | tuple):
        for i, (a, b) in enumerate(zip(sent, received, strict=False)):
            found = first_difference(a, b, f"{path}[{i}]", depth + 1)
            if found:
                return found
    return None


def loader_site(loader: Callable[..., Any]) -> Any:
    """What identifies a call site: the loader's code (a lambda's is per source line)."""
    fn = getattr(loader, "func", loader)  # functools.partial, as @cached builds
    return getattr(fn, "__code__", None) or builtins.type(fn)


class TypeDrift:
    """Warns once per call site when values come back from Redis as another type."""

    def __init__(self, encode: Callable[[Any], bytes], decode: Callable[[bytes], Any]) -> None:
        self._encode = encode
        self._decode = decode
        self._checked: dict[Any, int] = {}

    def watching(self, site: Any) -> bool:
        return self._checked.get(site, 0) < CHECKS_PER_SITE

    def check(self, site: Any, key: str, value: Any, namespace: str) -> None:
        """Round-trip ``value`` through the codec and warn if its type changes."""
        checked = self._checked
        if len(checked) >= _MAX_SITES and site not in checked:
            return
        try:
            back = self._decode(self._encode(value))
        except Exception:
            return  # not encodable: the fill reports that itself
        found = first_difference(value, back)
        if found is None:
            checked[site] = checked.get(site, 0) + 1
            return
        checked[site] = CHECKS_PER_SITE  # warned: once per site is enough
        where = getattr(site, "co_filename", None)
        origin = f" (loader at {where}:{site.co_firstlineno})" if where else ""
        log.warning(
            "veneer[%s]: key %r%s: %s from Redis; pass type= to get_or_load/cached to keep "
            "the type, or cache a plain dict/list (see docs/types.md)",
            namespace,
            key,
            origin,
            found,
        )
