"""Redis layout and Lua of buffered counters (sources only; the door registers them).

One buffer per (counter, shard); every key of a shard shares its hash tag, so each
script runs in one slot on Redis Cluster::

    {ns:counters:views:3}:buf      hash key -> delta acknowledged, not yet flushed
    {ns:counters:views:3}:claimed  the buffer a flush claimed (renamed, so new
                                   increments go to a fresh buffer meanwhile)
    {ns:counters:views:3}:flush    the flush id of the claimed buffer
    {ns:counters:views:3}:lease    the flusher holding this shard (token, PX)
    {ns:counters:views:3}:marks    writer id -> last sequence applied; "~epoch"
    {ns:counters:views:3}:guards   key -> durable total, only for totals near 2^63
    {ns:counters:views:3}:scratch  exact 64-bit arithmetic for the guard check

Exact counters keep one more key per counter key, in its shard's slot::

    {ns:counters:credits:3}:ver:<key>   the read version of ``credits[key]``: the cache
                                        holds its durable total under this version, and
                                        each commit to the key sets a new one

Scripts do O(1) work per key they are given, never loop over stored data, and take
the time from ARGV (they never call TIME).
"""

from __future__ import annotations

from typing import Final

__all__ = ["BUMP", "CLAIM", "FENCE", "FINISH", "INCR", "PARTS", "READ", "VERSIONS"]

PARTS: Final = ("buf", "claimed", "flush", "lease", "marks", "guards", "scratch")

# KEYS: buf, marks, guards, claimed, scratch
# ARGV: writer, seq, ttl_ms, proposed epoch, then groups: a count, then that many
# (key, n, -n) triples. Each group (one caller's increments) is all or nothing.
# Returns {0} refused (the writer is fenced, or the sequence is old: a late duplicate),
# or {1, epoch, outcome per group}: 1 applied, or the key that would overflow.
INCR: Final = """
local m = redis.call('HGET', KEYS[2], ARGV[1])
if m and (string.sub(m, 1, 1) == 'x' or tonumber(m) >= tonumber(ARGV[2])) then
  return {0}
end
local epoch = redis.call('HGET', KEYS[2], '~epoch')
if not epoch then
  epoch = ARGV[4]
  redis.call('HSET', KEYS[2], '~epoch', epoch)
end
local guarded = redis.call('EXISTS', KEYS[3]) == 1
local out = {1, epoch}
local i = 5
while i <= #ARGV do
  local last = i + 3 * tonumber(ARGV[i])
  local first = i + 1
  local done = first
  local failed = nil
  for j = first, last, 3 do
    local r = redis.pcall('HINCRBY', KEYS[1], ARGV[j], ARGV[j + 1])
    if type(r) == 'table' then failed = ARGV[j]; break end
    done = j + 3
    if guarded then
      local g = redis.call('HGET', KEYS[3], ARGV[j])
      if g then
        redis.call('SET', KEYS[5], g, 'PX', 1000)
        local a = redis.pcall('INCRBY', KEYS[5], r)
        local c = redis.call('HGET', KEYS[4], ARGV[j])
        if type(a) ~= 'table' and c then a = redis.pcall('INCRBY', KEYS[5], c) end
        redis.call('DEL', KEYS[5])
        if type(a) == 'table' then failed = ARGV[j]; break end
      end
    end
  end
  if failed then
    for j = first, done - 3, 3 do redis.call('HINCRBY', KEYS[1], ARGV[j], ARGV[j + 2]) end
    out[#out + 1] = failed
  else
    out[#out + 1] = 1
  end
  i = last + 1
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return out
"""

# KEYS: buf, claimed, flush.  ARGV: keys.
# Returns {flush id or false, buffered deltas..., claimed deltas...}.
READ: Final = """
local out = {redis.call('GET', KEYS[3])}
local b = redis.call('HMGET', KEYS[1], unpack(ARGV))
local c = redis.call('HMGET', KEYS[2], unpack(ARGV))
for i = 1, #ARGV do out[#out + 1] = b[i] end
for i = 1, #ARGV do out[#out + 1] = c[i] end
return out
"""

# KEYS: lease, buf, claimed, flush, marks, guards.
# ARGV: token, lease_ms, new flush id, ttl_ms, marks limit.
# Returns {'busy'}, {'empty'}, or {'claimed', flush id, 1 if a replay, 1 if guarded}.
# An unfinished claim (its flusher died) is handed out again under the same id.
CLAIM: Final = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return {'busy'} end
local fid = redis.call('GET', KEYS[4])
local replay = 1
if not fid then
  if redis.call('EXISTS', KEYS[2]) == 0 then return {'empty'} end
  replay = 0
  fid = ARGV[3]
  redis.call('RENAME', KEYS[2], KEYS[3])
  local ttl = redis.call('PTTL', KEYS[3])
  if ttl < 0 then ttl = tonumber(ARGV[4]) end
  redis.call('SET', KEYS[4], fid, 'PX', ttl)
  if redis.call('HLEN', KEYS[5]) > tonumber(ARGV[5]) then
    -- Dropping the marks drops the epoch too: an increment still in doubt then
    -- counts as lost (within the bound), never twice.
    redis.call('UNLINK', KEYS[5])
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {'claimed', fid, replay, redis.call('EXISTS', KEYS[6])}
"""

# KEYS: lease, claimed, flush, guards.
# ARGV: flush id, token, ttl_ms, then (key, total or '') pairs for the guards.
# Deletes the claimed buffer only if it is still the one of this flush id.
FINISH: Final = """
if redis.call('GET', KEYS[3]) == ARGV[1] then
  redis.call('UNLINK', KEYS[2])
  redis.call('DEL', KEYS[3])
end
for i = 4, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[4], ARGV[i])
  else
    redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1])
    redis.call('PEXPIRE', KEYS[4], ARGV[3])
  end
end
if redis.call('GET', KEYS[1]) == ARGV[2] then redis.call('DEL', KEYS[1]) end
return 1
"""

# KEYS: marks.  ARGV: writer, ttl_ms.
# Fences a writer whose last increment got no answer: a late copy is refused from
# now on. Returns {last sequence applied or false, epoch or false}. Idempotent.
FENCE: Final = """
local m = redis.call('HGET', KEYS[1], ARGV[1])
local epoch = redis.call('HGET', KEYS[1], '~epoch')
if m and string.sub(m, 1, 1) == 'x' then
  m = string.sub(m, 2)
  if m == '' then m = false end
  return {m, epoch or false}
end
if epoch then
  redis.call('HSET', KEYS[1], ARGV[1], 'x' .. (m or ''))
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return {m or false, epoch or false}
"""

# KEYS: read versions (one shard).  ARGV: proposed version, ttl_ms.
# Returns each key's read version; a missing one is created with the proposal (or,
# with an empty proposal, returned as false: a look that writes nothing).
VERSIONS: Final = """
local out = {}
for i = 1, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if not v and ARGV[1] ~= '' then
    v = ARGV[1]
    redis.call('SET', KEYS[i], v, 'PX', ARGV[2])
  end
  out[i] = v
end
return out
"""

# KEYS: read versions (one shard).  ARGV: new version, ttl_ms.
# After a commit to these keys: a cached total under an older version is never read again.
BUMP: Final = """
for i = 1, #KEYS do redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2]) end
return #KEYS
"""
