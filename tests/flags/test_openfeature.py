"""The OpenFeature provider (issue 12): apps written against the OpenFeature API get
veneer's answers, typed as OpenFeature asks, and change events."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from veneer.flags import Condition, Flag, Flags, Rule, create_tables
from veneer.flags.openfeature import VeneerProvider


@pytest.fixture
def flags(sqlite: sa.Engine) -> Iterator[Flags]:
    create_tables(sqlite)
    client = Flags(sqlite, poll_interval=0.05)
    client.set_flag(
        Flag(
            "checkout",
            enabled=True,
            deny=["user:13"],
            rules=[
                Rule(when=[Condition("plan", "eq", "pro")], serve="on"),
                Rule(percentage=50),
            ],
        )
    )
    client.set_flag(Flag("always", enabled=True))
    client.set_flag(Flag("never"))
    client.set_flag(
        Flag(
            "search",
            enabled=True,
            variants={"v2": {"timeout_ms": 250, "hosts": ["a", "b"]}, "v1": {"timeout_ms": 900}},
            on_variant="v2",
            off_variant="v1",
        )
    )
    for name, variants in (
        ("colour", {"blue": "blue", "red": "red"}),
        ("limit", {"high": 100, "low": 10}),
        ("ratio", {"high": 0.75, "low": 1}),
    ):
        client.set_flag(
            Flag(name, enabled=True, variants=variants, on_variant=next(iter(variants)),
                 off_variant=list(variants)[1])
        )  # fmt: skip
    yield client
    client.close()
    api.clear_providers()


def test_openfeature_clients_get_veneers_answers(flags: Flags) -> None:
    """Every OpenFeature type resolves from the snapshot: the targeting key is the subject,
    attributes are attributes, and answers equal veneer's own for 1,000 subjects."""
    provider = VeneerProvider(flags)
    api.set_provider_and_wait(provider, domain="veneer-test")  # initialize() starts it
    assert flags.status().mode == "poll" and flags.status().source == "database"
    client = api.get_client("veneer-test")
    for i in range(1000):
        subject = f"user:{i}"
        context = EvaluationContext(subject, {"plan": "free"})
        assert client.get_boolean_value("checkout", False, context) == flags.enabled(
            "checkout", subject=subject, attributes={"plan": "free"}
        )
    pro = client.get_boolean_details("checkout", False, EvaluationContext("u", {"plan": "pro"}))
    assert (pro.value, pro.reason, pro.variant) == (True, Reason.TARGETING_MATCH, "on")
    denied = client.get_boolean_details("checkout", True, EvaluationContext("user:13"))
    assert (denied.value, denied.reason) == (False, Reason.TARGETING_MATCH)
    split = client.get_boolean_details("checkout", False, EvaluationContext("user:1"))
    assert split.reason == Reason.SPLIT and split.flag_metadata["version"] == 7
    assert client.get_boolean_details("always", False).reason == Reason.STATIC
    assert client.get_boolean_details("never", True).reason == Reason.DISABLED
    assert client.get_string_value("colour", "none") == "blue"
    assert client.get_integer_value("limit", 0) == 100
    assert client.get_float_value("ratio", 0.0) == 0.75
    config = client.get_object_value("search", {})
    assert config == {"timeout_ms": 250, "hosts": ["a", "b"]}
    assert isinstance(config, dict)  # a plain copy the caller may change


def test_unknown_flags_and_wrong_types_answer_the_callers_default(flags: Flags) -> None:
    """An unknown flag gives FLAG_NOT_FOUND (and is counted by veneer); a flag whose value
    is not of the type asked for gives TYPE_MISMATCH; the caller's default either way."""
    api.set_provider_and_wait(VeneerProvider(flags), domain="veneer-test")
    client = api.get_client("veneer-test")
    missing = client.get_boolean_details("missing", True)
    assert (missing.value, missing.error_code) == (True, ErrorCode.FLAG_NOT_FOUND)
    assert flags.status().unknown == {"missing": 1}
    for details in (
        client.get_integer_details("always", 5),  # a bool is not an integer
        client.get_string_details("limit", "x"),
        client.get_boolean_details("colour", False),
        client.get_float_details("colour", 1.5),
        client.get_object_details("limit", {"d": 1}),
    ):
        assert details.error_code == ErrorCode.TYPE_MISMATCH, details
        assert details.reason == Reason.ERROR
    assert client.get_integer_value("always", 5) == 5
    with pytest.raises(TypeError, match="Flags or AsyncFlags"):
        VeneerProvider(object())  # type: ignore[arg-type]


def test_a_new_snapshot_emits_configuration_changed_with_the_flags_that_changed(
    flags: Flags,
) -> None:
    """When a change loads, the provider emits PROVIDER_CONFIGURATION_CHANGED naming the
    flags whose definition changed."""
    heard: list[EventDetails] = []
    got = threading.Event()

    def on_change(details: EventDetails) -> None:
        heard.append(details)
        got.set()

    api.set_provider_and_wait(VeneerProvider(flags), domain="veneer-test")
    client = api.get_client("veneer-test")
    client.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, on_change)
    flags.set_flag("never", enabled=True)
    assert got.wait(10)
    assert heard[-1].flags_changed == ["never"]
    deadline = time.monotonic() + 5
    while not client.get_boolean_value("never", False) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert client.get_boolean_value("never", False)
