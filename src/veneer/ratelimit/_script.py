"""The Lua the limiter runs: GCRA over up to ``MAX_LIMITS`` keys of one subject, and the
workers' heartbeat. Neither calls TIME (ElastiCache Serverless refuses it in scripts).

Whose clock: Redis's, read through key expiry. A limit's key expires at the
subject's TAT (rounded up to the millisecond; the value holds the microseconds
the rounding added, as a number <= 0), so ``PTTL`` *is* the delay
:func:`veneer.ratelimit._gcra.decide` needs, measured by the server that holds
the key, and an expired key is a full bucket with nothing to store. Every process
uses the same clock whatever its own says; application hosts' skew does not
enter (docs/decisions.md, "Whose clock").
"""

from __future__ import annotations

__all__ = ["GCRA", "HEARTBEAT", "HEARTBEAT_SPAN_MS"]

# KEYS: one per limit, all of one subject (one hash tag, one slot).
# ARGV[1] cost, ARGV[2] '1' to spend (hit) or '0' to look (peek),
# then for each limit i: ARGV[1 + 2i] interval_us, ARGV[2 + 2i] tolerance_us.
# Returns {allowed, delay_1, ..., delay_n}: the delays *before* this hit, so the
# client derives remaining / retry_after with the same decide() the script mirrors.
# The loop is over the call's limits (at most 8), never over data.
GCRA = """
local cost = tonumber(ARGV[1])
local delays = {}
local news = {}
local rems = {}
local allowed = 1
for i = 1, #KEYS do
  local interval = tonumber(ARGV[1 + 2 * i])
  local tolerance = tonumber(ARGV[2 + 2 * i])
  local delay = 0
  local ttl = redis.call('PTTL', KEYS[i])
  rems[i] = 0
  if ttl >= 0 then
    rems[i] = tonumber(redis.call('GET', KEYS[i])) or 0
    delay = ttl * 1000 + rems[i]
  end
  if delay < 0 then delay = 0 end
  local new = delay + cost * interval
  if new > tolerance then allowed = 0 end
  delays[i] = delay
  news[i] = new
end
if allowed == 1 and ARGV[2] == '1' then
  for i = 1, #KEYS do
    local at = false
    if delays[i] > 0 then
      local e = redis.pcall('PEXPIRETIME', KEYS[i])
      if type(e) == 'number' and e > 0 then at = e end
    end
    if at then
      -- The TAT moves by exactly cost * interval from where it was, not from a second
      -- reading of the clock (on Redis < 7.2 each command reads it anew, so a script
      -- interrupted between PTTL and SET would push the TAT further at every crossing).
      local y = rems[i] + cost * tonumber(ARGV[1 + 2 * i])
      local ms = math.ceil(y / 1000)
      redis.call('SET', KEYS[i], y - ms * 1000, 'PXAT', at + ms)
    else
      local ms = math.ceil(news[i] / 1000)
      redis.call('SET', KEYS[i], news[i] - ms * 1000, 'PX', ms)
    end
  end
end
table.insert(delays, 1, allowed)
return delays
"""

HEARTBEAT_SPAN_MS = 30 * 86_400_000
# One sorted set of live limiter instances per limiter name; scores are server
# milliseconds since the set was made, read from the set's own TTL (set once, to
# HEARTBEAT_SPAN_MS), so no process's clock is involved. Members older than
# ARGV[2] ms are dropped (bounded by the number of workers). Returns the count.
# KEYS[1] the set; ARGV[1] this instance's id; ARGV[2] staleness in ms;
# ARGV[3] '1' to leave (close()); ARGV[4] HEARTBEAT_SPAN_MS.
HEARTBEAT = """
local span = tonumber(ARGV[4])
local ttl = redis.call('PTTL', KEYS[1])
if ARGV[3] == '1' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return redis.call('ZCARD', KEYS[1])
end
local fresh = ttl < 0
if fresh then
  redis.call('DEL', KEYS[1])
  ttl = span
end
local now = span - ttl
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
if fresh then redis.call('PEXPIRE', KEYS[1], span) end
return redis.call('ZCARD', KEYS[1])
"""
