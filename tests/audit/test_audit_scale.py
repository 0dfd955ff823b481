"""Promise 7 at scale: a million keys are audited in bounded time by sampling, with error bars."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from servers import RedisServer
from veneer.audit import AuditOptions, run_audit

USERS = 700_000  # no TTL
SESSIONS = 300_000  # with TTL
SAMPLE = 20_000

# Seeding only (the audit never runs Lua): SET in server-side loops is the fastest
# portable way to write a million keys (DEBUG POPULATE is disabled by default on 7.x).
_FILL = """
local ttl = tonumber(ARGV[4])
for i = tonumber(ARGV[2]), tonumber(ARGV[3]) do
  if ttl > 0 then
    redis.call('SET', ARGV[1] .. i, 'v', 'EX', ttl)
  else
    redis.call('SET', ARGV[1] .. i, 'v')
  end
end
return 1
"""


@pytest.fixture(scope="module")
def million() -> Iterator[RedisServer]:
    server = RedisServer()
    c = server.client(socket_timeout=60)
    try:
        sha = c.script_load(_FILL)
        for prefix, count, ttl in (("user:", USERS, 0), ("sess:", SESSIONS, 86_400)):
            for start in range(0, count, 100_000):
                end = min(count, start + 100_000) - 1
                c.evalsha(sha, 0, prefix, start, end, ttl)
        assert c.dbsize() == USERS + SESSIONS
    finally:
        c.close()
    yield server
    server.stop()


@pytest.mark.slow
def test_million_keys_sampled_in_bounded_time_with_error_bars(million: RedisServer) -> None:
    """With --sample the audit reads 2% of a million keys, quickly, and states its error."""
    started = time.monotonic()
    report = run_audit(million.url, AuditOptions(sample=SAMPLE, budget=100_000, cpu_window=0.1))
    elapsed = time.monotonic() - started
    assert elapsed < 30, elapsed

    s = report.sampling
    assert not s.complete and s.keys_total == USERS + SESSIONS
    assert abs(s.keys_sampled - SAMPLE) <= 100
    # The overall share of keys without TTL: estimate, interval, and the exact figure.
    assert s.no_ttl_keys_share_exact == pytest.approx(0.7, abs=1e-6)
    assert s.no_ttl_keys_share is not None and s.no_ttl_keys_ci95 is not None
    lo, hi = s.no_ttl_keys_ci95
    half = (hi - lo) / 2
    assert 0.003 < half < 0.02  # ~1.96 * sqrt(0.21 / 20000) = 0.0064
    # 2.5 half-widths is ~5 standard errors: this cannot fail by chance in practice.
    assert abs(s.no_ttl_keys_share - 0.7) < 2.5 * half

    prefixes = {p.pattern: p for p in report.prefixes}
    assert set(prefixes) == {"user:*", "sess:*"}
    users, sessions = prefixes["user:*"], prefixes["sess:*"]
    for p, truth in ((users, USERS), (sessions, SESSIONS)):
        assert 2_000 < p.keys_margin95 < 20_000
        assert abs(p.keys_estimated - truth) < 2.5 * p.keys_margin95
    assert users.no_ttl_keys_share == 1.0
    assert 0.999 < users.no_ttl_keys_ci95[0] < 1.0  # sampled: never "exactly 100%"
    assert sessions.no_ttl_keys_share == 0.0 and 0.0 < sessions.no_ttl_keys_ci95[1] < 0.002
    no_ttl = next(f for f in report.findings if f.id == "source-of-truth-risk")
    assert no_ttl.prefix == "user:*" and "keys_margin95" in no_ttl.evidence
