"""Evaluation and checking of flag definitions: pure code, no server (issue 12, rules and
bad input)."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from types import MappingProxyType
from typing import Any

import pytest

from veneer.flags import Condition, Flag, InvalidFlag, Rule, Snapshot, Variant, bucket
from veneer.flags._evaluate import compile_flag, compile_snapshot
from veneer.flags._model import check_flag
from veneer.flags._reader import FlagReader


def reader(*flags: Flag, defaults: dict[str, Any] | None = None) -> FlagReader:
    """A reader whose snapshot holds ``flags`` (as a loaded snapshot would)."""
    r = FlagReader(defaults)
    document = {
        "format": 1,
        "version": 7,
        "token": "t7",
        "changed_at": None,
        "flags": [check_flag(f) for f in flags],
    }
    r._swap(compile_snapshot(document, source="database", loaded_at=0.0))
    r._mode = "push"
    return r


def test_on_off_and_the_kill_switch() -> None:
    """A flag switched on serves everyone; switched off serves no one, whatever its rules."""
    r = reader(
        Flag("on", enabled=True),
        Flag("off", enabled=False, allow=["u1"], rules=[Rule(serve="on")]),
    )
    assert r.enabled("on") and r.enabled("on", subject="anyone")
    assert not r.enabled("off") and not r.enabled("off", subject="u1")
    assert r.variant("off", subject="u1").reason == "disabled"


def test_allow_and_deny_lists_come_before_rules() -> None:
    """The deny list beats the allow list and the rules; the allow list beats the rules."""
    r = reader(
        Flag("f", enabled=True, allow=["vip"], deny=["banned"], rules=[Rule(serve="on")]),
        Flag("g", enabled=True, allow=["vip"]),
    )
    assert not r.enabled("f", subject="banned")
    assert r.variant("f", subject="banned").reason == "denied"
    assert r.variant("f", subject="vip").reason == "allowed"
    assert r.variant("f", subject="other").reason == "rule"
    # An allow list alone means "only these": the automatic fallthrough is off.
    assert r.enabled("g", subject="vip") and not r.enabled("g", subject="other")
    assert not r.enabled("g")
    with pytest.raises(InvalidFlag, match="in both allow and deny"):
        check_flag(Flag("h", allow=["x"], deny=["x"]))


def test_attribute_conditions() -> None:
    """Each operator matches what it says, a missing attribute matches nothing (except
    exists=false), and a value of the wrong type never matches nor raises."""
    cases: list[tuple[Condition, dict[str, Any], bool]] = [
        (Condition("country", "eq", "FR"), {"country": "FR"}, True),
        (Condition("country", "eq", "FR"), {"country": "DE"}, False),
        (Condition("country", "ne", "FR"), {"country": "DE"}, True),
        (Condition("country", "ne", "FR"), {}, False),
        (Condition("country", "in", ["FR", "DE"]), {"country": "DE"}, True),
        (Condition("country", "not_in", ["FR", "DE"]), {"country": "US"}, True),
        (Condition("beta", "in", [True]), {"beta": 1}, False),  # 1 is not True
        (Condition("level", "in", [1]), {"level": True}, False),
        (Condition("level", "in", [1, 2]), {"level": 2.0}, True),
        (Condition("tags", "in", ["a"]), {"tags": ["a"]}, False),  # unhashable: no match
        (Condition("age", "gte", 18), {"age": 18}, True),
        (Condition("age", "gt", 18), {"age": 18}, False),
        (Condition("age", "lt", 18), {"age": "17"}, False),  # a string is not a number
        (Condition("age", "lte", 18), {"age": True}, False),  # nor is a bool
        (Condition("age", "lt", 18), {"age": math.nan}, False),
        (Condition("email", "ends_with", "@corp.example"), {"email": "a@corp.example"}, True),
        (Condition("email", "starts_with", "admin"), {"email": 42}, False),
        (Condition("ua", "contains", "Mobile"), {"ua": "x Mobile y"}, True),
        (Condition("roles", "contains", "admin"), {"roles": ["user", "admin"]}, True),
        (Condition("path", "matches", r"^/api/v\d+/"), {"path": "/api/v2/x"}, True),
        (Condition("path", "matches", r"^/api/v\d+/"), {"path": None}, False),
        (Condition("plan", "exists", True), {"plan": "pro"}, True),
        (Condition("plan", "exists", False), {}, True),
        (Condition("plan", "exists", False), {"plan": "pro"}, False),
    ]
    for i, (condition, attributes, expected) in enumerate(cases):
        r = reader(Flag("f", enabled=True, rules=[Rule(when=[condition], serve="on")]))
        assert r.enabled("f", subject="s", attributes=attributes) is expected, (i, condition)
    assert r.status().errors == 0


def test_all_conditions_of_a_rule_must_hold_and_the_first_matching_rule_wins() -> None:
    """Conditions of a rule are ANDed; rules are tried in order."""
    flag = Flag(
        "f",
        enabled=True,
        variants={"a": "A", "b": "B", "c": "C", "off": None},
        on_variant="a",
        rules=[
            Rule(when=[Condition("x", "eq", 1), Condition("y", "eq", 2)], serve="a"),
            Rule(when=[Condition("x", "eq", 1)], serve="b"),
        ],
        fallthrough="c",
    )
    r = reader(flag)
    assert r.value("f", attributes={"x": 1, "y": 2}) == "A"
    assert r.value("f", attributes={"x": 1}) == "B"
    assert r.value("f", attributes={}) == "C"
    assert r.variant("f", attributes={"x": 1}).rule == 1


def test_multi_variant_values_are_runtime_configuration_and_read_only() -> None:
    """A variant's value is any JSON value; what callers get is read-only, so no caller
    can change what the others are served."""
    config = {"timeout_ms": 250, "backends": ["a", "b"], "nested": {"retries": 2}}
    r = reader(
        Flag(
            "search",
            enabled=True,
            variants={"v2": config, "v1": {"timeout_ms": 1000}},
            on_variant="v2",
            off_variant="v1",
        )
    )
    value = r.value("search")
    assert value["timeout_ms"] == 250 and value["nested"]["retries"] == 2
    assert isinstance(value, MappingProxyType) and value["backends"] == ("a", "b")
    with pytest.raises(TypeError):
        value["timeout_ms"] = 1  # type: ignore[index]
    assert r.value("search")["timeout_ms"] == 250
    assert r.enabled("search")  # not the off variant
    assert json.dumps(config)  # the caller's own dict was copied, not frozen in place


def test_the_bucket_is_pinned_so_answers_survive_restarts_and_releases() -> None:
    """The rollout bucket is SHA-256 based and pinned by known answers: a change of the
    function would move subjects between variants after an upgrade."""
    assert bucket("new-checkout", "user:42") == 5658
    assert bucket("new-checkout", "user:43") == 13067
    assert bucket("other", "user:42") == 33625
    # The documented formula, written out (another language can reproduce it).
    digest = hashlib.sha256(b"new-checkout:user:42").hexdigest()
    assert int(digest[:16], 16) % 100_000 == 5658
    assert bucket("new-checkout", "ü") == bucket("new-checkout", "\u00fc")


def test_percentages_land_within_one_point_and_grow_monotonically() -> None:
    """100,000 subjects at 25% land within 1 point of the target; raising the rollout to
    40% keeps every subject that was already in."""
    at_25 = reader(Flag("f", enabled=True, rules=[Rule(percentage=25)]))
    at_40 = reader(Flag("f", enabled=True, rules=[Rule(percentage=40)]))
    subjects = [f"user:{i}" for i in range(100_000)]
    first = [at_25.enabled("f", subject=s) for s in subjects]
    second = [at_40.enabled("f", subject=s) for s in subjects]
    assert abs(sum(first) / len(subjects) - 0.25) < 0.01
    assert abs(sum(second) / len(subjects) - 0.40) < 0.01
    assert all(b for a, b in zip(first, second, strict=True) if a)


def test_a_rollout_splits_variants_by_weight_and_needs_a_subject() -> None:
    """A rollout over three variants serves each at its weight; without a subject a
    rollout rule is skipped and a rollout fallthrough serves the off variant."""
    flag = Flag(
        "f",
        enabled=True,
        variants={"a": 1, "b": 2, "c": 3, "off": 0},
        on_variant="a",
        rules=[Rule(when=[Condition("beta", "eq", True)], rollout={"a": 20, "b": 30, "c": 50})],
        fallthrough={"a": 50, "off": 50},
    )
    r = reader(flag)
    counts = {1: 0, 2: 0, 3: 0}
    for i in range(30_000):
        counts[r.value("f", subject=f"s{i}", attributes={"beta": True})] += 1
    assert abs(counts[1] / 30_000 - 0.2) < 0.015
    assert abs(counts[2] / 30_000 - 0.3) < 0.015
    assert abs(counts[3] / 30_000 - 0.5) < 0.015
    assert r.variant("f", attributes={"beta": True}).reason == "no_subject"
    assert r.variant("f", subject="s1", attributes={"beta": True}).reason == "split"


def test_an_unknown_flag_returns_the_declared_default_and_is_counted() -> None:
    """An unknown name answers the call's default, else the default declared in code,
    else False / None; every such evaluation is counted per name."""
    r = reader(
        Flag("known", enabled=True),
        defaults={"declared": True, "config": {"limit": 5}, "rolled": Flag("rolled", enabled=True)},
    )
    assert r.enabled("missing") is False
    assert r.enabled("missing", default=True) is True
    assert r.enabled("declared") is True
    assert r.enabled("declared", default=False) is False  # the call's default wins
    assert r.value("config")["limit"] == 5
    assert r.enabled("rolled", subject="x")
    assert r.variant("missing").reason == "unknown"
    assert r.status().unknown == {"missing": 3, "declared": 2, "config": 1, "rolled": 1}


def test_unknown_names_cannot_grow_memory_without_bound() -> None:
    """Counting made-up names stops at 1,000 distinct ones; the rest count as <other>."""
    r = reader()
    for i in range(1500):
        r.enabled(f"made-up-{i}")
    unknown = r.status().unknown
    assert len(unknown) == 1001 and unknown["<other>"] == 500


def test_evaluation_never_raises_on_bad_arguments(caplog: pytest.LogCaptureFixture) -> None:
    """Attributes that are not a mapping, a subject that is not a string, an exotic
    attribute value: the flag answers (the default when it cannot evaluate) and counts."""
    r = reader(
        Flag(
            "f",
            enabled=True,
            allow=["42"],
            rules=[Rule(when=[Condition("a", "in", ["x"])], serve="on")],
        )
    )
    assert r.enabled("f", subject=42)  # type: ignore[arg-type]  # str(42) is in allow
    with caplog.at_level(logging.ERROR, logger="veneer"):
        assert r.enabled("f", subject="s", attributes=5, default=True)  # type: ignore[arg-type]
        assert r.variant("f", subject="s", attributes=["a"]).reason == "error"  # type: ignore[arg-type]
    assert r.enabled("f", subject="s", attributes={"a": object()}) is False
    assert r.status().errors == 2


def test_malformed_rules_are_refused_with_a_clear_message() -> None:
    """Every malformed definition raises InvalidFlag naming the flag, the place and what
    is accepted."""
    bad: list[tuple[Any, str]] = [
        (Flag("bad name"), "flag name 'bad name'"),
        (Flag("f", rules=[Rule(percentage=150)]), r"rules\[0\].percentage: 150 is outside"),
        (Flag("f", rules=[Rule(percentage=12.3456)]), "more than 3 decimals"),
        (Flag("f", rules=[Rule(serve="on", percentage=5)]), "exactly one of serve"),
        (Flag("f", rules=[Rule()]), "exactly one of serve"),
        (Flag("f", rules=[Rule(serve="maybe")]), "'maybe', not a variant"),
        (Flag("f", rules=[{"rollout": {"on": 50, "off": 40}}]), "add up to 90"),
        (Flag("f", rules=[{"rollout": {"on": 50, "nope": 50}}]), "'nope' is not a variant"),
        (Flag("f", rules=[Rule(when=[Condition("a", "betwen", 1)], serve="on")]), "'betwen'"),
        (Flag("f", rules=[Rule(when=[Condition("a", "gt", "x")], serve="on")]), "a number"),
        (Flag("f", rules=[Rule(when=[Condition("a", "in", "abc")], serve="on")]), "a list"),
        (Flag("f", rules=[Rule(when=[Condition("a", "matches", "(")], serve="on")]), "regular"),
        (Flag("f", rules=[Rule(when=[{"attr": "a"}], serve="on")]), "attribute, op, value"),
        (Flag("f", rules=[{"serve": "on", "weight": 1}]), "unknown field"),
        (Flag("f", rules="on"), "must be a list of rules"),  # type: ignore[arg-type]
        (Flag("f", variants={}), "non-empty mapping"),
        (Flag("f", variants={"on": True, "off": False, "maybe": True}), "boolean flag"),
        (Flag("f", variants={"on": False, "off": True}), "boolean flag"),
        (Flag("f", variants={"x": object(), "off": 1}, on_variant="x"), "not a JSON value"),
        (Flag("f", variants={"a": math.inf, "off": 1}, on_variant="a"), "not a JSON value"),
        (Flag("f", on_variant="yes"), "on_variant: 'yes' is not a variant"),
        (Flag("f", enabled="yes"), "enabled: must be true or false"),  # type: ignore[arg-type]
        (Flag("f", allow=["ok", 3]), "allow: subject 3"),  # type: ignore[list-item]
        (Flag("f", fallthrough={"on": 101, "off": -1}), "outside 0 to 100"),
        ({"name": "f", "enabled": True, "colour": "red"}, "unknown field"),
    ]
    for definition, message in bad:
        with pytest.raises(InvalidFlag, match=message):
            check_flag(definition)


def test_a_stored_flag_that_fails_the_check_is_left_out_not_raised() -> None:
    """A snapshot whose stored flag is malformed (edited by hand) loads without it: its
    callers get their defaults, and the snapshot names it as invalid."""
    good = check_flag(Flag("good", enabled=True))
    broken = dict(check_flag(Flag("broken", enabled=True)))
    broken["rules"] = [{"when": [{"attribute": "a", "op": "??", "value": 1}], "serve": "on"}]
    snap = compile_snapshot(
        {"format": 1, "version": 3, "token": "t", "changed_at": None, "flags": [good, broken, 7]},
        source="database",
        loaded_at=0.0,
    )
    assert isinstance(snap, Snapshot) and set(snap.flags) == {"good"}
    assert snap.invalid == ("broken", "None")
    r = FlagReader({"broken": True})
    r._swap(snap)
    assert r.enabled("broken") is True and r.enabled("good")
    with pytest.raises(ValueError, match="format 1"):
        compile_snapshot({"version": 1}, source="cache", loaded_at=0.0)


def test_a_constant_flag_is_compiled_to_its_answer() -> None:
    """A flag whose answer does not depend on the subject is one precomputed Variant."""
    on = Variant("on", True, "fallthrough", True)
    assert compile_flag(Flag("a", enabled=True)).constant == on
    assert compile_flag(Flag("b")).constant == Variant("off", False, "disabled", False)
    assert compile_flag(Flag("c", enabled=True, rules=[Rule(percentage=5)])).constant is None
