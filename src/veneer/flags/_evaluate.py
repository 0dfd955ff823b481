"""Evaluation: checked documents compiled once per snapshot, answered with no I/O.

A snapshot is immutable: a new one is built aside and swapped in with one
assignment, so an evaluation sees the old or the new flags, never a mixture.
Everything a flag can answer is built when it is compiled (one :class:`Variant`
per outcome), so an evaluation allocates nothing, and a flag whose answer does
not depend on the subject (switched off, or on for everyone) is a constant.

Percentage rollouts use :func:`bucket`: the first 8 bytes of
``SHA-256(salt ":" subject)`` (UTF-8) as a big-endian unsigned integer, modulo
100,000. The salt is the flag's name unless set. The same subject lands in the
same bucket in every process, language and release; Python's ``hash()`` is
salted per process and is never used.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from hashlib import sha256
from struct import Struct
from types import MappingProxyType
from typing import Any

from ._errors import InvalidFlag
from ._model import check_flag

__all__ = [
    "BUCKETS",
    "DOCUMENT_FORMAT",
    "CompiledFlag",
    "Snapshot",
    "Variant",
    "bucket",
    "compile_flag",
    "compile_snapshot",
    "constant_flag",
    "frozen",
]

BUCKETS = 100_000
DOCUMENT_FORMAT = 1
_EMPTY: Mapping[str, Any] = MappingProxyType({})


_FIRST_8 = Struct(">Q").unpack_from


def bucket(salt: str, subject: str) -> int:
    """The subject's rollout bucket for this salt, 0 to 99,999 (0.001% each)."""
    return _bucket((salt + ":").encode("utf-8", "surrogatepass"), subject)


def _bucket(prefix: bytes, subject: str) -> int:
    digest = sha256(prefix + subject.encode("utf-8", "surrogatepass")).digest()
    return int(_FIRST_8(digest)[0]) % BUCKETS


@dataclass(frozen=True, slots=True)
class Variant:
    """What a flag served: the variant's name, its value (read-only: dicts are mapping
    proxies, lists are tuples), why (``reason``), and whether it is not the flag's off
    variant (``enabled``). ``rule`` is the index of the rule that decided, if one did.

    Reasons: ``disabled`` (the flag is off), ``denied`` / ``allowed`` (the lists),
    ``rule``, ``split`` (a rollout), ``fallthrough``, ``no_subject`` (a rollout without
    a subject), ``unknown`` (no such flag in the snapshot) and ``error``.
    """

    key: str
    value: Any
    reason: str
    enabled: bool
    rule: int | None = None


def frozen(value: Any) -> Any:
    """A read-only copy of a JSON value: no caller can change what others are served."""
    if isinstance(value, dict):
        return MappingProxyType({k: frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(frozen(v) for v in value)
    return value


Test = Callable[[Mapping[str, Any]], bool]


class _Rollout:
    __slots__ = ("limits",)

    def __init__(self, limits: tuple[tuple[int, Variant], ...]) -> None:
        self.limits = limits

    def pick(self, slot: int) -> Variant:
        for limit, variant in self.limits:
            if slot < limit:
                return variant
        return self.limits[-1][1]  # unreachable: the weights add up to 100


class CompiledFlag:
    """One flag ready to evaluate. ``constant`` is its answer when it does not depend on
    the subject; otherwise :meth:`evaluate` walks the lists and rules."""

    __slots__ = (
        "allow",
        "allowed",
        "constant",
        "denied",
        "deny",
        "document",
        "fallthrough",
        "name",
        "no_subject",
        "off",
        "prefix",
        "rules",
        "salt",
    )

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.name: str = document["name"]
        self.salt: str = document["salt"] or self.name
        self.prefix = (self.salt + ":").encode("utf-8", "surrogatepass")
        variants = document["variants"]
        on_key, off_key = document["on_variant"], document["off_variant"]
        values = {key: frozen(value) for key, value in variants.items()}

        def make(key: str, reason: str, rule: int | None = None) -> Variant:
            return Variant(key, values[key], reason, key != off_key, rule)

        self.off = make(off_key, "disabled")
        self.denied = make(off_key, "denied")
        self.allowed = make(on_key, "allowed")
        self.no_subject = make(off_key, "no_subject")
        self.deny = frozenset(document["deny"])
        self.allow = frozenset(document["allow"])

        def serving(target: Any, reason: str, index: int | None) -> Variant | _Rollout:
            if isinstance(target, str):
                return make(target, reason, index)
            limits: list[tuple[int, Variant]] = []
            total = 0
            for key, weight in target.items():
                if weight:
                    total += round(weight * 1000)
                    limits.append((total, make(key, "split", index)))
            return _Rollout(tuple(limits))

        self.rules: tuple[tuple[tuple[Test, ...], Variant | _Rollout], ...] = tuple(
            (
                tuple(_test(c) for c in rule["when"]),
                serving(rule.get("serve", rule.get("rollout")), "rule", i),
            )
            for i, rule in enumerate(document["rules"])
        )
        fallthrough = document["fallthrough"]
        if fallthrough is None:
            fallthrough = off_key if (document["rules"] or document["allow"]) else on_key
        self.fallthrough = serving(fallthrough, "fallthrough", None)
        self.constant: Variant | None = None
        if not document["enabled"]:
            self.constant = self.off
        elif not (self.rules or self.allow or self.deny) and isinstance(self.fallthrough, Variant):
            self.constant = self.fallthrough

    def evaluate(self, subject: str | None, attributes: Mapping[str, Any] | None) -> Variant:
        if self.constant is not None:
            return self.constant
        if subject is not None:
            if subject.__class__ is not str:
                subject = str(subject)
            if subject in self.deny:
                return self.denied
            if subject in self.allow:
                return self.allowed
        attrs = _EMPTY if attributes is None else attributes
        slot = -1
        for tests, served in self.rules:
            for test in tests:
                if not test(attrs):
                    break
            else:
                if served.__class__ is Variant:
                    return served
                if subject is None:
                    continue  # a rollout needs a subject: the next rule may not
                if slot < 0:
                    slot = _bucket(self.prefix, subject)
                return served.pick(slot)  # type: ignore[union-attr]
        served = self.fallthrough
        if served.__class__ is Variant:
            return served
        if subject is None:
            return self.no_subject
        return served.pick(_bucket(self.prefix, subject) if slot < 0 else slot)  # type: ignore[union-attr]


def compile_flag(document: Any, /) -> CompiledFlag:
    """Check a flag document (raises :class:`InvalidFlag`) and compile it."""
    return CompiledFlag(check_flag(document))


def constant_flag(name: str, value: Any) -> CompiledFlag:
    """A flag declared in code by its value: a bool is a boolean flag switched on or off;
    any other JSON value is served to everyone as the variant ``default``."""
    if isinstance(value, bool):
        return compile_flag({"name": name, "enabled": value})
    return compile_flag(
        {
            "name": name,
            "enabled": True,
            "variants": {"default": value, "off": None},
            "on_variant": "default",
        }
    )


# ------------------------------------------------------------------- conditions


def _number(value: Any) -> bool:
    return value.__class__ is not bool and isinstance(value, (int, float))


def _test(condition: Mapping[str, Any]) -> Test:
    name: str = condition["attribute"]
    op: str = condition["op"]
    want: Any = condition["value"]
    if op == "exists":
        present: bool = want
        return lambda a: (a.get(name) is not None) is present
    if op in ("eq", "ne"):
        equal = _equality(want)
        if op == "eq":
            return lambda a: name in a and equal(a[name])
        return lambda a: name in a and not equal(a[name])
    if op in ("in", "not_in"):
        bools = frozenset(v for v in want if isinstance(v, bool))
        others = frozenset(v for v in want if not isinstance(v, bool) and v is not None)
        with_null = None in want

        def member(v: Any) -> bool:
            if v is None:
                return with_null
            if v.__class__ is bool:
                return v in bools
            try:
                return v in others
            except TypeError:  # an unhashable attribute (a list, a dict) is in no list
                return False

        if op == "in":
            return lambda a: name in a and member(a[name])
        return lambda a: name in a and not member(a[name])
    if op in ("lt", "lte", "gt", "gte"):
        bound = float(want)
        compare: Callable[[float], bool] = {
            "lt": lambda v: v < bound,
            "lte": lambda v: v <= bound,
            "gt": lambda v: v > bound,
            "gte": lambda v: v >= bound,
        }[op]

        def ordered(a: Mapping[str, Any]) -> bool:
            v: Any = a.get(name)
            return _number(v) and not math.isnan(v) and compare(v)

        return ordered
    if op == "contains":
        part: str = want

        def contains(a: Mapping[str, Any]) -> bool:
            v = a.get(name)
            if isinstance(v, str):
                return part in v
            if isinstance(v, (list, tuple, set, frozenset)):
                return part in v
            return False

        return contains
    if op == "starts_with":
        return lambda a: isinstance(v := a.get(name), str) and v.startswith(want)
    if op == "ends_with":
        return lambda a: isinstance(v := a.get(name), str) and v.endswith(want)
    if op == "matches":
        pattern = re.compile(want)
        return lambda a: isinstance(v := a.get(name), str) and pattern.search(v) is not None
    raise InvalidFlag(f"unknown operator {op!r}")  # pragma: no cover - check_flag refuses it


def _equality(want: Any) -> Callable[[Any], bool]:
    if want is None:
        return lambda v: v is None
    if isinstance(want, bool):
        return lambda v: v is want
    if isinstance(want, (int, float)):
        return lambda v: _number(v) and v == want
    return lambda v: v.__class__ is str and v == want


# -------------------------------------------------------------------- snapshots


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every flag at one database version, as this process loaded it.

    ``source``: ``cache`` (veneer's cache: Redis, or this process's L1), ``database``,
    ``file`` (the last-known-good snapshot file) or ``defaults`` (declared in code).
    ``version`` and ``token`` identify the committed change it reflects (0 and ``""``
    for the defaults). ``invalid`` names stored flags that failed the check and are
    left out (their callers get their defaults).
    """

    version: int
    token: str
    flags: Mapping[str, CompiledFlag]
    source: str
    loaded_at: float
    changed_at: float | None
    invalid: tuple[str, ...]

    def document(self) -> dict[str, Any]:
        """The snapshot as the JSON-able document it was built from."""
        return {
            "format": DOCUMENT_FORMAT,
            "version": self.version,
            "token": self.token,
            "changed_at": self.changed_at,
            "flags": [flag.document for flag in self.flags.values()],
        }


def compile_snapshot(document: Any, /, *, source: str, loaded_at: float) -> Snapshot:
    """A snapshot from its document. A malformed document raises ``ValueError``; a flag
    that fails the check is left out and named in ``invalid``."""
    if not isinstance(document, Mapping) or document.get("format") != DOCUMENT_FORMAT:
        raise ValueError("not a veneer flags snapshot document (format 1)")
    version, token = document.get("version"), document.get("token")
    changed_at = document.get("changed_at")
    flags = document.get("flags")
    if (
        not isinstance(version, int)
        or isinstance(version, bool)
        or not isinstance(token, str)
        or not isinstance(flags, list)
        or not (changed_at is None or isinstance(changed_at, (int, float)))
    ):
        raise ValueError("a snapshot document needs an int version, a str token and a flag list")
    compiled: dict[str, CompiledFlag] = {}
    invalid: list[str] = []
    for flag in flags:
        try:
            built = compile_flag(flag)
        except (InvalidFlag, TypeError, KeyError, AttributeError):
            name = flag.get("name") if isinstance(flag, Mapping) else None
            invalid.append(str(name))
            continue
        compiled[built.name] = built
    return Snapshot(
        version=version,
        token=token,
        flags=compiled,
        source=source,
        loaded_at=loaded_at,
        changed_at=None if changed_at is None else float(changed_at),
        invalid=tuple(invalid),
    )
