"""The HTTP decision core without servers, in virtual time (``now`` is a parameter)."""

from __future__ import annotations

import calendar
import email.utils

import pytest
from hypothesis import given
from hypothesis import strategies as st

from veneer.http._answers import conditional_status, merge_304
from veneer.http._fields import byte_range, first_age, http_date, parse_directives
from veneer.http._policy import (
    NO_CACHE,
    NO_STALE,
    Policy,
    Request,
    StoredResponse,
    Verdict,
    build_entry,
    current_age,
    judge,
    normalize_field,
    stale_on_error,
    usable,
)

T0 = 1_800_000_000.0  # a request time; every clock below is virtual
POLICY = Policy()


def imf(t: float) -> str:
    return email.utils.formatdate(t, usegmt=True)


def request(*headers: tuple[str, str], method: str = "GET") -> Request:
    return Request.from_headers(method, [(n.encode(), v.encode()) for n, v in headers])


def store(
    *headers: tuple[str, str],
    status: int = 200,
    req: Request | None = None,
    delay: float = 0.0,
    policy: Policy = POLICY,
) -> StoredResponse:
    entry = build_entry(
        req or request(),
        status,
        [(n.lower().encode(), v.encode()) for n, v in headers],
        b"body",
        request_time=T0,
        response_time=T0 + delay,
        policy=policy,
    )
    assert entry.stored is not None, entry.reason
    return entry.stored


def refused(*headers: tuple[str, str], status: int = 200, req: Request | None = None) -> str:
    entry = build_entry(
        req or request(),
        status,
        [(n.lower().encode(), v.encode()) for n, v in headers],
        b"",
        request_time=T0,
        response_time=T0,
        policy=POLICY,
    )
    assert entry.stored is None
    return entry.reason


# ---------------------------------------------------------------- field parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Sun, 06 Nov 1994 08:49:37 GMT", (1994, 11, 6, 8, 49, 37)),
        ("sunday, 06-Nov-94 08:49:37 GMT", (1994, 11, 6, 8, 49, 37)),
        ("Sun Nov  6 08:49:37 1994", (1994, 11, 6, 8, 49, 37)),
        ("THU, 18 AUG 2050 02:01:18 gmt", (2050, 8, 18, 2, 1, 18)),
    ],
)
def test_http_dates_in_their_three_forms_parse(text: str, expected: tuple[int, ...]) -> None:
    """IMF-fixdate, RFC 850 and asctime dates parse (names case-insensitively)."""
    assert http_date(text) == calendar.timegm((*expected, 0, 0, 0))


@pytest.mark.parametrize(
    "text",
    [
        "0",
        "Thu, 18 Aug 2050 02:01:18 UTC",
        "Thu, 18 Aug 50 02:01:18 GMT",
        "Thu 18 Aug 2050 02:01:18 GMT",
        "Thu, 18  Aug  2050 02:01:18 GMT",
        "Thu, 18-Aug-2050 02:01:18 GMT",
        "Thu, 18 Aug 2050 2:01:18 GMT",
        "Thu, 18 Aug 2050 02.01.18 GMT",
        "",
        "Thu, 31 Feb 2050 25:00:00 GMT",
    ],
)
def test_malformed_dates_are_rejected(text: str) -> None:
    """Anything but the three date forms is no date (and an Expires of it means expired)."""
    assert http_date(text) is None


def test_rfc850_two_digit_years_more_than_50_years_ahead_are_in_the_past() -> None:
    """RFC 9110 5.6.7: the two-digit year is the most recent one with those digits."""
    now = calendar.timegm((2026, 6, 1, 0, 0, 0, 0, 0, 0))
    assert http_date("Thursday, 18-Aug-50 02:01:18 GMT", now=now) == calendar.timegm(
        (2050, 8, 18, 2, 1, 18, 0, 0, 0)
    )
    assert http_date("Monday, 18-Aug-80 02:01:18 GMT", now=now) == calendar.timegm(
        (1980, 8, 18, 2, 1, 18, 0, 0, 0)
    )


def test_cache_control_parsing_is_strict_about_syntax_and_quotes() -> None:
    """Quoted commas do not split members; ``max-age =5`` is no directive; names are
    case-insensitive; a repeated directive with another value is a conflict."""
    cc = parse_directives(['extension="max-age=3600, x", MaX-AgE=1', 'no-cache="a, b"'])
    assert cc.seconds("max-age") == 1 and cc.field_names("no-cache") == ["a", "b"]
    assert parse_directives(["max-age =3600"]).seconds("max-age") is None
    assert parse_directives(["max-age= 3600"]).seconds("max-age") is None
    assert parse_directives(["max-age='3600'"]).seconds("max-age") == -1
    assert parse_directives(["max-age=003600"]).seconds("max-age") == 3600
    assert parse_directives(['max-age="3600"']).seconds("max-age") == 3600
    assert parse_directives(["max-age=99999999999"]).seconds("max-age") == 2**31
    assert parse_directives(["max-age=1800", "max-age=1"]).seconds("max-age") == -1


def test_age_takes_the_first_member_of_the_first_line() -> None:
    """``Age``: the first value of the first line; anything not 1*DIGIT counts as 0."""
    assert first_age(["7200, 0"]) == 7200
    assert first_age(["0", "7200"]) == 0
    for bad in (["abc"], ["-7200"], ["7200.0"], []):
        assert first_age(bad) == 0


@given(st.text())
def test_parsers_never_raise_on_any_text(text: str) -> None:
    """Field parsers answer anything a client or an origin may send without raising."""
    parse_directives([text])
    http_date(text)
    first_age([text])
    byte_range(text, 10)
    normalize_field("accept-language", [text])


# -------------------------------------------------------------------- freshness


def test_freshness_comes_from_s_maxage_then_max_age_then_expires() -> None:
    """A shared cache prefers s-maxage over max-age, max-age over Expires."""
    date = imf(T0)
    assert store(("cache-control", "max-age=3600, s-maxage=1")).lifetime == 1
    assert (
        store(("cache-control", "max-age=10"), ("expires", imf(T0 - 99)), ("date", date)).lifetime
        == 10
    )
    assert store(("expires", imf(T0 + 30)), ("date", date)).lifetime == 30
    invalid = store(("expires", "0"), ("etag", '"x"'), ("date", date))
    assert invalid.lifetime == 0
    assert store(("cache-control", "max-age=99999999999")).lifetime == 2**31


def test_age_counts_the_origins_age_the_date_and_the_time_in_the_cache() -> None:
    """current_age = max(apparent age, Age + response delay) + resident time (RFC 9111 4.2.3)."""
    entry = store(("cache-control", "max-age=60"), ("age", "20"), ("date", imf(T0)), delay=2)
    assert current_age(entry, T0 + 2) == pytest.approx(22)
    assert current_age(entry, T0 + 12) == pytest.approx(32)
    slow_date = store(("cache-control", "max-age=60"), ("date", imf(T0 - 100)))
    assert current_age(slow_date, T0) == pytest.approx(100)


def test_a_response_is_fresh_then_stale_in_virtual_time() -> None:
    """max-age=10: fresh for 10 s of age, then it must be revalidated."""
    entry = store(("cache-control", "max-age=10"), ("date", imf(T0)))
    assert judge(entry, request(), T0 + 9.9) is Verdict.FRESH
    assert judge(entry, request(), T0 + 10.1) is Verdict.REVALIDATE


def test_stale_while_revalidate_and_stale_if_error_windows() -> None:
    """Within stale-while-revalidate a stale response is served while revalidating; within
    stale-if-error (or the middleware's default) it answers a failed origin; past them not."""
    entry = store(
        ("cache-control", "max-age=10, stale-while-revalidate=5, stale-if-error=20"),
        ("date", imf(T0)),
    )
    assert judge(entry, request(), T0 + 14) is Verdict.STALE_REVALIDATE
    assert judge(entry, request(), T0 + 16) is Verdict.REVALIDATE
    assert stale_on_error(entry, request(), T0 + 29, default=0)
    assert not stale_on_error(entry, request(), T0 + 31, default=0)
    plain = store(("cache-control", "max-age=10"), ("date", imf(T0)))
    assert stale_on_error(plain, request(), T0 + 69, default=60)
    assert not stale_on_error(plain, request(), T0 + 71, default=60)


@pytest.mark.parametrize(
    "directive", ["must-revalidate", "proxy-revalidate", "s-maxage=10", "no-cache"]
)
def test_directives_that_forbid_serving_stale(directive: str) -> None:
    """must-revalidate, proxy-revalidate, s-maxage and no-cache never let a stale response out."""
    entry = store(
        ("cache-control", f"max-age=10, {directive}, stale-while-revalidate=99"),
        ("etag", '"v"'),
        ("date", imf(T0)),
    )
    assert entry.flags & NO_STALE
    assert judge(entry, request(("cache-control", "max-stale=999")), T0 + 11) is Verdict.REVALIDATE
    assert not stale_on_error(entry, request(), T0 + 11, default=999)


def test_request_directives_tighten_or_loosen_reuse() -> None:
    """max-age, min-fresh and no-cache on the request ask for fresher; max-stale accepts stale."""
    entry = store(("cache-control", "max-age=100"), ("date", imf(T0)))
    now = T0 + 50
    assert judge(entry, request(("cache-control", "max-age=10")), now) is Verdict.REVALIDATE
    assert judge(entry, request(("cache-control", "min-fresh=60")), now) is Verdict.REVALIDATE
    assert judge(entry, request(("cache-control", "no-cache")), now) is Verdict.REVALIDATE
    assert judge(entry, request(("cache-control", "max-stale=10")), T0 + 105) is Verdict.STALE
    assert judge(entry, request(("cache-control", "max-stale")), T0 + 9999) is Verdict.STALE


def test_heuristic_freshness_is_a_tenth_of_the_age_since_last_modified_capped() -> None:
    """Only Last-Modified: fresh for 10% of (Date - Last-Modified), at most heuristic_max;
    not at all for a status that is not cacheable by default, or a request with a cookie."""
    date = imf(T0)
    assert store(("last-modified", imf(T0 - 1000)), ("date", date)).lifetime == pytest.approx(100)
    assert store(("last-modified", imf(T0 - 10**7)), ("date", date)).lifetime == 3600
    assert "status 201" in refused(("last-modified", imf(T0 - 1000)), ("date", date), status=201)
    assert "Cookie" in refused(
        ("last-modified", imf(T0 - 1000)), ("date", date), req=request(("cookie", "session=1"))
    )
    off = Policy(heuristic_fraction=0)
    assert store(("last-modified", imf(T0 - 1000)), ("etag", '"v"'), policy=off).lifetime == 0


# -------------------------------------------------------------------- storing


def test_what_a_shared_cache_must_not_store() -> None:
    """no-store, private, Vary: *, Set-Cookie, an Authorization request without public /
    s-maxage / must-revalidate, and must-understand with an unknown status."""
    assert refused(("cache-control", "max-age=60, no-store")) == "no-store"
    assert refused(("cache-control", "private, max-age=60")) == "private"
    assert refused(("cache-control", "max-age=60"), ("vary", "Foo, *")) == "Vary: *"
    assert refused(("cache-control", "max-age=60"), ("set-cookie", "a=b")) == "Set-Cookie"
    authorized = request(("authorization", "Bearer x"))
    assert "Authorization" in refused(("cache-control", "max-age=60"), req=authorized)
    assert store(("cache-control", "max-age=60, public"), req=authorized)
    assert "must-understand" in refused(
        ("cache-control", "max-age=60, no-store, must-understand"), status=599
    )
    assert store(("cache-control", "max-age=60, no-store, must-understand"), status=200)


def test_the_targeted_field_overrides_cache_control_when_valid() -> None:
    """CDN-Cache-Control (RFC 9213), when a valid Dictionary, replaces Cache-Control."""
    assert (
        store(("cache-control", "no-store"), ("cdn-cache-control", "max-age=600")).lifetime == 600
    )
    assert refused(("cache-control", "max-age=600"), ("cdn-cache-control", "private")) == "private"
    assert (
        refused(("cache-control", "no-store"), ("cdn-cache-control", 'max-age="600"')) == "no-store"
    )


def test_hop_by_hop_and_listed_fields_are_not_stored() -> None:
    """Connection-listed, hop-by-hop, proxy and no-cache="..." fields never enter the store."""
    entry = store(
        ("cache-control", 'max-age=60, no-cache="x-secret"'),
        ("connection", "x-hop"),
        ("x-hop", "1"),
        ("keep-alive", "5"),
        ("x-secret", "2"),
        ("x-kept", "3"),
    )
    names = {n for n, _ in entry.headers}
    assert b"x-kept" in names
    assert not names & {b"x-hop", b"keep-alive", b"connection", b"x-secret"}
    assert not entry.flags & NO_CACHE


def test_a_304_updates_the_stored_fields_but_not_content_length() -> None:
    """Fields of a 304 replace the stored ones (RFC 9111 3.2); Content-Length stays."""
    entry = store(
        ("cache-control", "max-age=1"), ("etag", '"v"'), ("content-length", "4"), ("x-a", "old")
    )
    merged = merge_304(
        entry,
        [(b"cache-control", b"max-age=60"), (b"x-a", b"new"), (b"content-length", b"99")],
        request=request(),
        request_time=T0 + 5,
        response_time=T0 + 5,
        policy=POLICY,
    )
    assert merged.stored is not None
    fields = dict(merged.stored.headers)
    assert (fields[b"x-a"], fields[b"content-length"]) == (b"new", b"4")
    assert merged.stored.lifetime == 60 and merged.stored.body == b"body"


def test_vary_matches_normalized_request_fields() -> None:
    """Stored request values are compared after combining lines, dropping list whitespace
    and, for Accept-Language, ignoring order and case."""
    varied = store(
        ("cache-control", "max-age=60"),
        ("vary", "Foo, Accept-Language"),
        req=request(("foo", "1, 2"), ("accept-language", "en, de")),
    )
    assert usable(varied, request(("foo", "1"), ("foo", "2"), ("accept-language", "DE,en")))
    assert not usable(varied, request(("foo", "1"), ("accept-language", "en, de")))
    assert not usable(varied, request(("accept-language", "en, de")))


def test_conditional_requests_are_answered_from_the_stored_validators() -> None:
    """If-None-Match (weak comparison, precedence) and If-Modified-Since against the
    stored Last-Modified (or Date) give 304."""
    entry = store(
        ("cache-control", "max-age=60"),
        ("etag", 'W/"a"'),
        ("last-modified", imf(T0 - 100)),
        ("date", imf(T0)),
    )
    assert conditional_status(entry, request(("if-none-match", '"a"'))) == 304
    assert (
        conditional_status(entry, request(("if-none-match", '"b"'), ("if-modified-since", imf(T0))))
        == 200
    )
    assert conditional_status(entry, request(("if-modified-since", imf(T0 - 50)))) == 304
    assert conditional_status(entry, request(("if-modified-since", imf(T0 - 200)))) == 200


def test_byte_ranges() -> None:
    """One satisfiable range is served, an unsatisfiable one is 416, others are ignored."""
    assert byte_range("bytes=0-1", 10) == (0, 1)
    assert byte_range("bytes=8-", 10) == (8, 9)
    assert byte_range("bytes=-3", 10) == (7, 9)
    assert byte_range("bytes=5-100", 10) == (5, 9)
    assert byte_range("bytes=10-", 10) is False
    assert byte_range("bytes=0-1,4-5", 10) is None
    assert byte_range("items=0-1", 10) is None
