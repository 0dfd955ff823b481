"""Flag definitions as written by applications, checked whole before anything is stored.

A flag serves one of its *variants* (named JSON values; a boolean flag has
``on: true`` and ``off: false``). For a subject and its attributes, the first of
these that applies decides:

1. the flag is switched off (``enabled=False``): ``off_variant``;
2. the subject is in ``deny``: ``off_variant``;
3. the subject is in ``allow``: ``on_variant``;
4. the first rule whose conditions all hold: its ``serve`` variant, or its
   ``rollout`` (weights per variant, by a stable hash of flag and subject);
5. the ``fallthrough``: a variant or a rollout; when not given, ``on_variant`` if
   the flag has neither rules nor an allow list, else ``off_variant``.

:func:`check_flag` turns a definition into its *document* (plain JSON-able dicts
and lists, the form stored in the database, in Redis and in the snapshot file)
or raises :class:`InvalidFlag` saying what is wrong. Documents read back are
checked again by the same function, so evaluation only ever sees checked ones.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._errors import InvalidFlag

__all__ = [
    "OPERATORS",
    "Condition",
    "Flag",
    "Rule",
    "check_flag",
    "flag_from_document",
]

OPERATORS = (
    "eq",
    "ne",
    "in",
    "not_in",
    "lt",
    "lte",
    "gt",
    "gte",
    "contains",
    "starts_with",
    "ends_with",
    "matches",
    "exists",
)

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}")
VARIANT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
MAX_VARIANTS = 100
MAX_VARIANT_BYTES = 64 * 1024
MAX_RULES = 1000
MAX_CONDITIONS = 50
MAX_LIST = 100_000
MAX_SUBJECT = 500
MAX_DESCRIPTION = 2000
# Rollout weights are percentages with at most three decimals (buckets of 0.001%).
WEIGHT_STEP = 1000


@dataclass(frozen=True, slots=True)
class Condition:
    """``attributes[attribute] <op> value``. A condition on an attribute the caller did not
    pass is false, except ``exists`` with ``value=False``."""

    attribute: str
    op: str
    value: Any = True


@dataclass(frozen=True, slots=True)
class Rule:
    """Conditions that must all hold (``when``), and what the rule serves: one variant
    (``serve``), a ``rollout`` (variant -> percentage, summing to 100) or a
    ``percentage`` (that share gets ``on_variant``, the rest ``off_variant``)."""

    when: Sequence[Condition | Mapping[str, Any]] = ()
    serve: str | None = None
    rollout: Mapping[str, float] | None = None
    percentage: float | None = None


@dataclass(frozen=True, slots=True)
class Flag:
    """A flag definition; see the module documentation for the order of evaluation."""

    name: str
    enabled: bool = False
    variants: Mapping[str, Any] | None = None
    on_variant: str = "on"
    off_variant: str = "off"
    allow: Sequence[str] = ()
    deny: Sequence[str] = ()
    rules: Sequence[Rule | Mapping[str, Any]] = ()
    fallthrough: str | Mapping[str, float] | None = None
    salt: str | None = None
    description: str = ""

    def document(self) -> dict[str, Any]:
        """This definition checked and normalised (raises :class:`InvalidFlag`)."""
        return check_flag(self)


_FLAG_FIELDS = (
    "name",
    "enabled",
    "variants",
    "on_variant",
    "off_variant",
    "allow",
    "deny",
    "rules",
    "fallthrough",
    "salt",
    "description",
)


def flag_from_document(document: Mapping[str, Any], /) -> Flag:
    """A :class:`Flag` from a document (a dict as stored, or as typed in JSON)."""
    if not isinstance(document, Mapping):
        raise InvalidFlag(f"a flag definition is a JSON object, got {type(document).__name__}")
    unknown = sorted(set(document) - set(_FLAG_FIELDS))
    if unknown:
        raise InvalidFlag(
            f"flag {document.get('name')!r}: unknown field(s) {', '.join(unknown)}; "
            f"known: {', '.join(_FLAG_FIELDS)}"
        )
    if "name" not in document:
        raise InvalidFlag("a flag definition needs a 'name'")
    fields = dict(document)
    if fields.get("description") is None:
        fields["description"] = ""
    for name in ("allow", "deny", "rules"):
        if fields.get(name) is None:
            fields[name] = ()
    return Flag(**fields)


# --------------------------------------------------------------------- checking


class _Problem(Exception):
    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}" if where else message)


def check_flag(flag: Flag | Mapping[str, Any], /) -> dict[str, Any]:
    """The normalised document of ``flag``, or :class:`InvalidFlag` naming the problem."""
    if not isinstance(flag, Flag):
        flag = flag_from_document(flag)
    name = flag.name
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidFlag(
            f"flag name {name!r}: use 1 to 200 letters, digits, '_', '.', ':' or '-', "
            "starting with a letter or digit"
        )
    try:
        return _check(flag)
    except _Problem as problem:
        raise InvalidFlag(f"flag {name!r}: {problem}") from None


def _check(flag: Flag) -> dict[str, Any]:
    if not isinstance(flag.enabled, bool):
        raise _Problem("enabled", f"must be true or false, got {flag.enabled!r}")
    variants = _variants(flag.variants)
    on, off = flag.on_variant, flag.off_variant
    for label, key in (("on_variant", on), ("off_variant", off)):
        if key not in variants:
            raise _Problem(label, f"{key!r} is not a variant (variants: {', '.join(variants)})")
    if on == off:
        raise _Problem("on_variant", f"must differ from off_variant (both {on!r})")
    values = list(variants.values())
    boolean = all(isinstance(v, bool) for v in values)
    # enabled() answers "not the off variant": for a boolean flag that must be its value.
    if boolean and (len(values) != 2 or variants[off] is not False or variants[on] is not True):
        raise _Problem(
            "variants",
            "a boolean flag has exactly two variants, on_variant true and off_variant false",
        )
    allow = _subjects(flag.allow, "allow")
    deny = _subjects(flag.deny, "deny")
    both = sorted(set(allow) & set(deny))
    if both:
        raise _Problem("allow", f"{both[0]!r} is in both allow and deny; keep it in one")
    if isinstance(flag.rules, (str, bytes, Mapping)) or not isinstance(flag.rules, Sequence):
        raise _Problem("rules", "must be a list of rules")
    if len(flag.rules) > MAX_RULES:
        raise _Problem("rules", f"{len(flag.rules)} rules, at most {MAX_RULES}")
    rules = [_rule(rule, f"rules[{i}]", variants, on, off) for i, rule in enumerate(flag.rules)]
    fallthrough: Any = None
    if flag.fallthrough is not None:
        fallthrough = _serving(flag.fallthrough, "fallthrough", variants)
    salt = flag.salt
    if salt is not None and (not isinstance(salt, str) or not 0 < len(salt) <= 200):
        raise _Problem("salt", "must be a string of 1 to 200 characters")
    description = flag.description
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise _Problem("description", f"must be a string of at most {MAX_DESCRIPTION} characters")
    return {
        "name": flag.name,
        "enabled": flag.enabled,
        "variants": variants,
        "on_variant": on,
        "off_variant": off,
        "allow": allow,
        "deny": deny,
        "rules": rules,
        "fallthrough": fallthrough,
        "salt": salt,
        "description": description,
    }


def _variants(variants: Mapping[str, Any] | None) -> dict[str, Any]:
    if variants is None:
        return {"on": True, "off": False}
    if not isinstance(variants, Mapping) or not variants:
        raise _Problem("variants", "must be a non-empty mapping of variant name to JSON value")
    if len(variants) > MAX_VARIANTS:
        raise _Problem("variants", f"{len(variants)} variants, at most {MAX_VARIANTS}")
    out: dict[str, Any] = {}
    for key, value in variants.items():
        if not isinstance(key, str) or not VARIANT_PATTERN.fullmatch(key):
            raise _Problem(
                "variants",
                f"variant name {key!r}: use 1 to 100 letters, digits, '_', '.' or '-'",
            )
        try:
            text = json.dumps(value, allow_nan=False, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise _Problem(f"variants[{key!r}]", f"not a JSON value ({exc})") from None
        if len(text.encode()) > MAX_VARIANT_BYTES:
            raise _Problem(f"variants[{key!r}]", f"above {MAX_VARIANT_BYTES} bytes as JSON")
        out[key] = json.loads(text)  # a copy in plain JSON types (tuples become lists)
    return out


def _subjects(items: Any, where: str) -> list[str]:
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise _Problem(where, "must be a list of subject strings")
    if len(items) > MAX_LIST:
        raise _Problem(where, f"{len(items)} subjects, at most {MAX_LIST}")
    for item in items:
        if not isinstance(item, str) or not 0 < len(item) <= MAX_SUBJECT:
            raise _Problem(where, f"subject {item!r}: a string of 1 to {MAX_SUBJECT} characters")
    return sorted(set(items))


def _rule(
    rule: Rule | Mapping[str, Any], where: str, variants: dict[str, Any], on: str, off: str
) -> dict[str, Any]:
    if isinstance(rule, Mapping):
        unknown = sorted(set(rule) - {"when", "serve", "rollout", "percentage"})
        if unknown:
            raise _Problem(where, f"unknown field(s) {', '.join(map(str, unknown))}")
        rule = Rule(
            when=rule.get("when") or (),
            serve=rule.get("serve"),
            rollout=rule.get("rollout"),
            percentage=rule.get("percentage"),
        )
    if not isinstance(rule, Rule):
        raise _Problem(where, f"a rule is a Rule or a mapping, got {type(rule).__name__}")
    given = [n for n in ("serve", "rollout", "percentage") if getattr(rule, n) is not None]
    if len(given) != 1:
        raise _Problem(
            where, "give exactly one of serve, rollout or percentage" + (
                f" (got {', '.join(given)})" if given else ""
            )
        )  # fmt: skip
    when = rule.when
    if isinstance(when, (str, bytes, Mapping)) or not isinstance(when, Sequence):
        raise _Problem(f"{where}.when", "must be a list of conditions")
    if len(when) > MAX_CONDITIONS:
        raise _Problem(f"{where}.when", f"{len(when)} conditions, at most {MAX_CONDITIONS}")
    conditions = [_condition(c, f"{where}.when[{i}]") for i, c in enumerate(when)]
    out: dict[str, Any] = {"when": conditions}
    if rule.percentage is not None:
        share = _weight(rule.percentage, f"{where}.percentage")
        out["rollout"] = {on: share, off: round(100 - share, 3)}
    else:
        served = _serving(rule.serve if rule.serve is not None else rule.rollout, where, variants)
        out["serve" if isinstance(served, str) else "rollout"] = served
    return out


def _serving(target: Any, where: str, variants: dict[str, Any]) -> str | dict[str, float]:
    if isinstance(target, str):
        if target not in variants:
            raise _Problem(where, f"serves {target!r}, not a variant ({', '.join(variants)})")
        return target
    if not isinstance(target, Mapping) or not target:
        raise _Problem(where, "serves a variant name or a rollout {variant: percentage, ...}")
    weights: dict[str, float] = {}
    for key, weight in target.items():
        if key not in variants:
            raise _Problem(f"{where}.rollout", f"{key!r} is not a variant ({', '.join(variants)})")
        weights[key] = _weight(weight, f"{where}.rollout[{key!r}]")
    total = sum(round(w * WEIGHT_STEP) for w in weights.values())
    if total != 100 * WEIGHT_STEP:
        raise _Problem(
            f"{where}.rollout",
            f"weights add up to {total / WEIGHT_STEP:g}, they must add up to 100",
        )
    return weights


def _weight(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _Problem(where, f"must be a number from 0 to 100, got {value!r}")
    if not 0 <= value <= 100:
        raise _Problem(where, f"{value!r} is outside 0 to 100")
    if abs(value * WEIGHT_STEP - round(value * WEIGHT_STEP)) > 1e-6:
        raise _Problem(where, f"{value!r} has more than 3 decimals (buckets are 0.001%)")
    return round(float(value), 3)


def _condition(condition: Condition | Mapping[str, Any], where: str) -> dict[str, Any]:
    if isinstance(condition, Mapping):
        unknown = sorted(set(condition) - {"attribute", "op", "value"})
        if unknown or "attribute" not in condition or "op" not in condition:
            raise _Problem(
                where, "a condition is {attribute, op, value}" + (
                    f" (unknown: {', '.join(map(str, unknown))})" if unknown else ""
                )
            )  # fmt: skip
        condition = Condition(condition["attribute"], condition["op"], condition.get("value", True))
    if not isinstance(condition, Condition):
        raise _Problem(where, f"a condition is a Condition or a mapping, got {condition!r}")
    attribute, op, value = condition.attribute, condition.op, condition.value
    if not isinstance(attribute, str) or not 0 < len(attribute) <= 200:
        raise _Problem(f"{where}.attribute", "must be a name of 1 to 200 characters")
    if op not in OPERATORS:
        raise _Problem(f"{where}.op", f"{op!r} is not one of {', '.join(OPERATORS)}")
    if op in ("eq", "ne"):
        if not _scalar(value):
            raise _Problem(f"{where}.value", f"'{op}' compares with a string, number, bool or null")
    elif op in ("in", "not_in"):
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
            raise _Problem(f"{where}.value", f"'{op}' takes a list of values")
        if len(value) > MAX_LIST or not all(_scalar(v) for v in value):
            raise _Problem(
                f"{where}.value", f"'{op}' takes at most {MAX_LIST} strings, numbers or bools"
            )
        value = list(value)
    elif op in ("lt", "lte", "gt", "gte"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Problem(f"{where}.value", f"'{op}' compares with a number, got {value!r}")
        if not math.isfinite(value):
            raise _Problem(f"{where}.value", f"'{op}' compares with a finite number")
    elif op in ("contains", "starts_with", "ends_with"):
        if not isinstance(value, str):
            raise _Problem(f"{where}.value", f"'{op}' takes a string, got {value!r}")
    elif op == "matches":
        if not isinstance(value, str) or len(value) > 1000:
            raise _Problem(f"{where}.value", "'matches' takes a regular expression string")
        try:
            re.compile(value)
        except re.error as exc:
            raise _Problem(f"{where}.value", f"not a valid regular expression ({exc})") from None
    elif not isinstance(value, bool):  # exists
        raise _Problem(f"{where}.value", "'exists' takes true or false")
    return {"attribute": attribute, "op": op, "value": value}


def _scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, (str, int, bool))
