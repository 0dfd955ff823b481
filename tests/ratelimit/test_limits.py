"""Limits from strings or numbers, and bad input refused with a clear message."""

from __future__ import annotations

import pytest

from veneer import ConfigurationError
from veneer.ratelimit import Limit, parse_limits
from veneer.ratelimit._decision import Plan
from veneer.ratelimit._options import LimiterOptions, check_key


@pytest.mark.parametrize(
    ("text", "rate", "per", "burst"),
    [
        ("100/minute", 100, 60, 100),
        ("10/second", 10, 1, 10),
        ("10/s", 10, 1, 10),
        ("5 per 2 minutes", 5, 120, 5),
        ("1000/hour burst 50", 1000, 3600, 50),
        ("7/1.5 seconds", 7, 1.5, 7),
        ("3 PER DAY", 3, 86400, 3),
    ],
)
def test_limit_strings(text: str, rate: int, per: float, burst: int) -> None:
    """The usual spellings of a limit parse to rate, period and burst (default: the rate)."""
    limit = Limit.parse(text)
    assert (limit.rate, limit.per, limit.burst) == (rate, per, burst)
    assert Limit.parse(str(limit)) == limit  # the text form reads back


def test_explicit_rate_and_burst() -> None:
    """A limit can be given as numbers: rate per period plus a burst."""
    limit = Limit(100, burst=10)
    assert (limit.interval_us, limit.tolerance_us) == (10_000, 100_000)
    assert str(limit) == "100/second burst 10"
    assert Limit(100, per=60) == Limit.parse("100/minute")


def test_several_limits_in_one_spec() -> None:
    """Several limits are given with ';' or as a list, and the same limit twice is refused."""
    assert parse_limits("10/second; 1000/hour") == (Limit(10), Limit(1000, 3600))
    assert parse_limits(["10/second", Limit(5, 60)]) == (Limit(10), Limit(5, 60))
    with pytest.raises(ValueError, match="twice"):
        parse_limits("10/second; 10/s")
    with pytest.raises(ValueError, match="at most 8"):
        parse_limits([Limit(i + 1) for i in range(9)])


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("100", "malformed rate limit '100'"),
        ("100/fortnight", "unknown unit 'fortnight'"),
        ("ten/second", "malformed"),
        ("0/second", "rate=0"),
        ("5/0 seconds", "longer than 0"),
        ("10/second burst 0", "burst=0"),
        ("", "no rate limit"),
        ("2000000/second", "1,000,000"),
    ],
)
def test_a_malformed_limit_is_a_clear_value_error(text: str, names: str) -> None:
    """A malformed limit string raises ValueError naming the problem and the accepted forms."""
    with pytest.raises(ValueError, match=names):
        parse_limits(text)


def test_bad_cost_and_key_are_clear_value_errors() -> None:
    """cost <= 0, a cost above the burst and an empty key each raise a ValueError naming them."""
    plan = Plan(parse_limits("10/second burst 5"))
    for cost in (0, -1):
        with pytest.raises(ValueError, match=r"cost <= 0"):
            plan.check_cost(cost)
    with pytest.raises(ValueError, match="whole number"):
        plan.check_cost(1.5)
    with pytest.raises(ValueError, match="above the burst"):
        plan.check_cost(6)
    assert plan.check_cost(5) == 5
    with pytest.raises(ValueError, match="empty"):
        check_key("")
    with pytest.raises(TypeError, match="string"):
        check_key(42)


@pytest.mark.parametrize(
    ("options", "names"),
    [
        ({"on_unavailable": "open"}, "on_unavailable"),
        ({"workers": 0}, "workers"),
        ({"name": "a:b"}, "name"),
        ({"heartbeat": 0}, "heartbeat"),
        ({"refusal_cache": -1}, "refusal_cache"),
    ],
)
def test_bad_options_are_configuration_errors(options: dict[str, object], names: str) -> None:
    """A bad limiter option fails when the limiter is built, naming the option."""
    with pytest.raises(ConfigurationError, match=names):
        LimiterOptions(**options)  # type: ignore[arg-type]
