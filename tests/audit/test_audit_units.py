"""The audit's pure parts, without servers: key folding, estimates, throttle, URLs, slow log."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from veneer import ConfigurationError
from veneer.audit import Severity, fold_key, mask_url
from veneer.audit._estimate import KeySample, PrefixAccumulator, Stratum, wilson
from veneer.audit._patterns import OTHER, coarsen
from veneer.audit._slowlog import classify, digest, gaps
from veneer.audit._snapshot import SlowEntry
from veneer.audit._target import parse_target
from veneer.audit._throttle import Throttle


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Redis glob semantics for what fold_key emits: ``*`` and backslash escapes."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "*" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)


@pytest.mark.parametrize(
    ("key", "pattern"),
    [
        ("user:123", "user:*"),
        ("user:123:cart", "user:*:cart"),
        ("session:9f8e7d6c-1234-4abc-9def-0123456789ab", "session:*"),
        ("{user:42}:profile", "{user:*}:profile"),
        ("obj:5f2b3c4d5e6f7a8b9c0d1e2f", "obj:*"),
        ("tok:AbCdEf1234567890xyz", "tok:*"),
        ("sess:kQvTRwBxYzaPLmNoHgFeDcsAjUiWyEtR", "sess:*"),  # base64 with no digit
        ("sess:Ab-_CdEfGhIjKlMnOpQrStUvWx", "sess:*"),
        ("cfg:very_long_snake_case_setting_name", "cfg:very_long_snake_case_setting_name"),
        ("page2", "page*"),
        ("counter", "counter"),
        ("a:b:c:d:e:f", "a:b:c:d:*"),
        ("user:bob@example.com", "user:*.com"),
        ("x*y", "x\\*y"),
        (b"bin:\xff\xfe", "bin:*"),
    ],
)
def test_fold_key_examples(key: str | bytes, pattern: str) -> None:
    """Ids, uuids, hashes and tokens become ``*``; names and separators stay."""
    assert fold_key(key) == pattern


@given(st.text(max_size=60))
def test_folded_pattern_matches_its_key(key: str) -> None:
    """Every pattern is a Redis glob that matches the key folded into it."""
    pattern = fold_key(key)
    if "\\x" not in pattern:  # undecodable bytes are shown, not matched
        assert _glob_regex(pattern).fullmatch(key), (key, pattern)


def test_random_session_tokens_share_one_pattern() -> None:
    """express-session's 32-character base64url ids, digits or not, fold to one pattern
    (a token without a digit, one in a few hundred, once stood as its own prefix)."""
    import random
    import secrets
    import string

    rng = random.Random(7)
    letters = string.ascii_letters + "-_"
    no_digit = ["".join(rng.choice(letters) for _ in range(32)) for _ in range(2_000)]
    tokens = no_digit + [secrets.token_urlsafe(24) for _ in range(2_000)]
    assert {fold_key(f"sess:{t}") for t in tokens} == {"sess:*"}


@given(st.lists(st.integers(min_value=0, max_value=10**12), min_size=2, max_size=20))
def test_keys_differing_only_by_id_share_a_pattern(ids: list[int]) -> None:
    """Numeric ids never split a prefix into many patterns."""
    assert len({fold_key(f"order:{i}:items") for i in ids}) == 1


@given(st.dictionaries(st.text(alphabet="abc:", max_size=12), st.integers(1, 5), max_size=60))
def test_coarsen_bounds_patterns_and_keeps_totals(table: dict[str, int]) -> None:
    """Coarsening merges down to the limit and loses no weight."""
    limit = 7
    out = coarsen(table, limit, lambda a, b: a + b, float)
    assert len(out) <= max(limit, 0) or not table
    assert sum(out.values()) == sum(table.values())


def test_coarsen_merges_the_widest_level_first() -> None:
    """Siblings under a crowded parent are merged before unrelated names are."""
    table = {f"cache:page:{w}": 1 for w in ("shoes", "hats", "bags", "belts")}
    table |= {"user:*:profile": 1, "user:*:settings": 1, "counter": 1}
    out = coarsen(table, 4, lambda a, b: a + b, float)
    assert out == {"cache:page:*": 4, "user:*:profile": 1, "user:*:settings": 1, "counter": 1}
    assert OTHER in coarsen({f"w{i}x": 1 for i in "abcdefgh"}, 3, lambda a, b: a + b, float)


def test_wilson_interval() -> None:
    """All-or-nothing samples still get a non-trivial interval; none at all is [0, 1]."""
    lo, hi = wilson(1.0, 1000)
    assert hi == 1.0 and 0.995 < lo < 1.0
    assert wilson(0.5, 0) == (0.0, 1.0)
    assert wilson(0.3, 100, z=0) == (0.3, 0.3)


def _sample(key: str, ttl: int, size: int, node: str = "n1") -> KeySample:
    return KeySample(node, 0, key.encode(), "string", ttl, size, 1, None)


def test_complete_read_reports_exact_figures() -> None:
    """When every key of a stratum was read, estimates are counts and intervals are points."""
    acc = PrefixAccumulator(db=0)
    for i in range(10):
        acc.add(_sample(f"k:{i}", -1 if i < 4 else 5000, 100))
    strata = {("n1", 0): Stratum("n1", 0, population=10, sampled=10)}
    r = acc.report("k:*", strata)
    assert r.keys_estimated == 10 and r.keys_margin95 == 0
    assert r.no_ttl_keys_share == pytest.approx(0.4)
    assert r.no_ttl_keys_ci95 == (pytest.approx(0.4), pytest.approx(0.4))
    assert r.bytes_estimated == 1000 and r.no_ttl_bytes_share == pytest.approx(0.4)
    assert r.avg_ttl_s == 5.0


def test_sampled_read_scales_up_with_error_bars() -> None:
    """A 10% sample is weighted up by 10 and reports a margin and intervals."""
    acc = PrefixAccumulator(db=0)
    for i in range(100):
        acc.add(_sample(f"k:{i}", -1 if i % 2 else 1000, 100 + i))
    strata = {("n1", 0): Stratum("n1", 0, population=2000, sampled=200)}
    r = acc.report("k:*", strata)
    assert r.keys_estimated == 1000
    assert 100 < r.keys_margin95 < 200  # 1.96 * 2000 * sqrt(.25 * .9 / 199) = 132
    lo, hi = r.no_ttl_keys_ci95
    assert lo < 0.5 < hi and hi - lo < 0.25
    assert r.no_ttl_bytes_ci95 is not None and r.no_ttl_bytes_share is not None
    assert r.no_ttl_bytes_ci95[0] < r.no_ttl_bytes_share < r.no_ttl_bytes_ci95[1]


def test_throttle_paces_to_the_budget() -> None:
    """Commands are paced: 1,000 commands at 100/s take ten seconds of (fake) time."""
    now = [0.0]
    t = Throttle(100, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    for _ in range(100):
        t.acquire(10)
    assert t.commands == 1000
    assert now[0] == pytest.approx(9.9)  # the first batch leaves at once


def test_throttle_backs_off_and_recovers() -> None:
    """A slow round trip halves the rate (down to a floor); healthy ones give it back over time."""
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    t = Throttle(1000, clock=lambda: now[0], sleep=sleep)
    assert t.observe_ping(0.0002) is False
    assert t.observe_ping(0.050) is True
    assert t.rate == 500 and t.backoffs == 1 and now[0] == pytest.approx(0.05)
    for _ in range(10):
        t.observe_ping(0.5)
    assert t.rate == 50  # the floor: 5% of the budget
    t.observe_ping(0.0002)
    assert t.rate == 50  # no sooner than one ping interval after the last change
    for _ in range(20):
        sleep(0.25)
        t.observe_ping(0.0002)
    assert t.rate == 1000 and t.min_rate == 50
    assert t.observe_ping(0.004) is False  # a few ms above a 0.2 ms baseline is noise


def test_throttle_judges_pipelines_by_their_size() -> None:
    """A pipeline is slow against the best single round trip plus its per-command cost."""
    t = Throttle(1000, clock=lambda: 0.0, sleep=lambda s: None)
    t.observe_ping(0.0002)
    assert t.observe(0.0012, 101) is False  # 10 us per extra command: the baseline
    assert t.per_command == pytest.approx(0.00001)
    assert t.expected(201) == pytest.approx(0.0022)
    assert t.observe(0.006, 201) is False  # under 4x the expected 2.2 ms
    assert t.observe(0.100, 201) is True  # waited behind a 100 ms command


def test_mask_url_hides_every_password() -> None:
    """Passwords in the userinfo or the query string never survive masking."""
    assert mask_url("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert mask_url("rediss://alice:p@ss/w@rd@h:1") == "rediss://alice:***@h:1"
    assert mask_url("redis+cluster://u:pw@a:1,b:2") == "redis+cluster://u:***@a:1,b:2"
    assert mask_url("redis+sentinel://a:1/svc?sentinel_password=x&db=1") == (
        "redis+sentinel://a:1/svc?sentinel_password=***&db=1"
    )
    assert mask_url("unix://:pw@/tmp/r.sock?db=2") == "unix://:***@/tmp/r.sock?db=2"
    assert mask_url("redis://h:6379") == "redis://h:6379"


def test_parse_target_forms() -> None:
    """Every documented URL form parses into a topology, hosts, TLS flag and credentials."""
    t = parse_target("rediss://u:pw@cache.example:6380/2")
    assert (t.topology, t.tls, t.hosts, t.db, t.username, t.password) == (
        "standalone", True, (("cache.example", 6380),), 2, "u", "pw",
    )  # fmt: skip
    assert not t.loopback_only
    c = parse_target("redis+cluster://127.0.0.1:7000,127.0.0.1:7001,[::1]:7002")
    assert c.topology == "cluster" and c.hosts[2] == ("::1", 7002) and c.loopback_only
    s = parse_target("redis+sentinel://:pw@10.0.0.1,10.0.0.2:26380/mymaster/3")
    assert (s.topology, s.service, s.db, s.hosts[0]) == (
        "sentinel", "mymaster", 3, ("10.0.0.1", 26379),
    )  # fmt: skip
    u = parse_target("unix:///tmp/redis.sock?db=1")
    assert u.unix and u.db == 1 and u.loopback_only
    for bad in ("http://h", "redis+sentinel://h:1", "nourl", "redis+cluster://h:x"):
        with pytest.raises(ConfigurationError):
            parse_target(bad)
    with pytest.raises(ConfigurationError) as err:
        parse_target("ftp://u:topsecret@h")
    assert "topsecret" not in str(err.value)


def _entry(id_: int, *args: str, us: int = 20_000) -> SlowEntry:
    return SlowEntry(id=id_, started_at=0, duration_us=us, args=tuple(a.encode() for a in args))


def test_slowlog_digest_groups_and_classifies() -> None:
    """Entries group by command and key pattern; KEYS, full reads and scripts are classified."""
    entries = [
        ("n1", _entry(5, "HGETALL", "user:1")),
        ("n2", _entry(6, "HGETALL", "user:2")),
        ("n1", _entry(7, "LRANGE", "q:1", "0", "-1")),
        ("n1", _entry(8, "LRANGE", "q:1", "0", "10")),
        ("n1", _entry(9, "EVALSHA", "abc", "1", "lock:9", "arg")),
        ("n1", _entry(10, "KEYS", "user:*")),
        ("n1", _entry(11, "CONFIG", "SET", "x", "y")),
    ]
    groups = {(g.command, g.pattern): g for g in digest(entries)}
    assert groups[("HGETALL", "user:*")].count == 2
    assert groups[("HGETALL", "user:*")].nodes == {"n1", "n2"}
    assert groups[("EVALSHA", "lock:*")].kind == "script"
    assert groups[("KEYS", None)].argument == "user:*"
    assert groups[("CONFIG SET", None)].kind == "other"
    assert classify(_entry(1, "LRANGE", "q", "0", "-1")) == "full-read"
    assert classify(_entry(1, "LRANGE", "q", "0", "10")) == "other"


def test_slowlog_gaps_detect_overflow() -> None:
    """Ids below the oldest entry still held, or holes between ids, are lost entries."""
    held = [_entry(i, "GET", "k") for i in range(100, 228)]
    g = gaps(held, length=128, max_len=128)
    assert g.lost == 100 and g.full
    assert gaps([_entry(0, "GET", "k"), _entry(3, "GET", "k")], 2, 128).lost == 2
    assert gaps([], 0, 128).lost == 0
    # Entries held but not read (the audit reads at most 1,024) are not lost.
    assert gaps([_entry(i, "GET", "k") for i in range(976, 2000)], 2000, 4096).lost == 0


def test_severity_order_and_parse() -> None:
    """Severities order info < low < medium < high < critical and parse case-insensitively."""
    assert [s.rank for s in Severity] == [0, 1, 2, 3, 4]
    assert Severity.parse("HIGH") is Severity.HIGH
    with pytest.raises(ValueError):
        Severity.parse("urgent")
