"""The Lua step of the Redis broker: sequencing, history, last values and idempotency at once.

Redis runs a script atomically, so for every message the counter increment, the history
append, the last-value update and the idempotency record happen together or not at all;
a batch is one script call, so a publish that fails leaves nothing half-written.

Keys, for prefix P and stream S:
* `P:S:epoch`  the stream's history name; missing means Redis lost the stream: a new epoch
               starts (seq back to 0, history and last values cleared);
* `P:S:seq`    the last seq given out in this epoch; missing (evicted, deleted) while the
               epoch is there also means lost history: counting again from 1 in the same
               epoch would reuse seqs (and XADD would refuse ids below the log's last one);
* `P:S:log`    the history, a Redis stream whose entry ids are `seq-0` (so a replay from a
               seq is one XRANGE), fields `e` (epoch), `t` (ms) and `m` (the message);
* `P:S:last`   hash from snapshot key to `seq` + "\\n" + message, for snapshots;
* `P:id:ID`    `stream` + "\\n" + `seq` + "\\n" + `epoch` of an already published message_id,
               expiring after the idempotency window.
"""

from __future__ import annotations

# ARGV: prefix, idempotency window (s), fresh epoch, count, then per message:
#       stream, message_id, snapshot key ("" = none), history max length, body.
# Returns per message {duplicate (0|1), stream, seq, epoch} and, for a duplicate whose
# original is still in its stream's log, the original's body as a fifth element (a repeat
# is answered with the original message, not with the repeat).
PUBLISH = """
local prefix = ARGV[1]
local window = tonumber(ARGV[2])
local fresh = ARGV[3]
local count = tonumber(ARGV[4])
local now = redis.call('TIME')
local millis = now[1] * 1000 + math.floor(now[2] / 1000)
local out = {}
local i = 5
for _ = 1, count do
  local stream, id, skey, maxlen, body = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  i = i + 5
  local idkey = prefix .. ':id:' .. id
  local seen = redis.call('GET', idkey)
  if seen then
    local s, q, e = string.match(seen, '^([^\\n]*)\\n([^\\n]*)\\n(.*)$')
    local original = false
    local entry = redis.call('XRANGE', prefix .. ':' .. s .. ':log', q .. '-0', q .. '-0')[1]
    if entry then
      local fields = {}
      for j = 1, #entry[2], 2 do fields[entry[2][j]] = entry[2][j + 1] end
      if fields['e'] == e then original = fields['m'] end
    end
    out[#out + 1] = {1, s, tonumber(q), e, original}
  else
    local base = prefix .. ':' .. stream
    local epoch = redis.call('GET', base .. ':epoch')
    if not epoch or redis.call('EXISTS', base .. ':seq') == 0 then
      epoch = fresh
      redis.call('SET', base .. ':epoch', epoch)
      redis.call('SET', base .. ':seq', 0)
      redis.call('DEL', base .. ':log', base .. ':last')
    end
    local seq = redis.call('INCR', base .. ':seq')
    redis.call('XADD', base .. ':log', 'MAXLEN', '~', maxlen, seq .. '-0',
      'e', epoch, 't', millis, 'm', body)
    if skey ~= '' then
      redis.call('HSET', base .. ':last', skey, seq .. '\\n' .. body)
    end
    redis.call('SET', idkey, stream .. '\\n' .. seq .. '\\n' .. epoch, 'EX', window)
    out[#out + 1] = {0, stream, seq, epoch}
  end
end
return out
"""

# ARGV: prefix, stream, fresh epoch. Returns {epoch, seq}, starting a new epoch when the
# stream's epoch or counter is missing.
POSITION = """
local base = ARGV[1] .. ':' .. ARGV[2]
local epoch = redis.call('GET', base .. ':epoch')
if not epoch or redis.call('EXISTS', base .. ':seq') == 0 then
  epoch = ARGV[3]
  redis.call('SET', base .. ':epoch', epoch)
  redis.call('SET', base .. ':seq', 0)
  redis.call('DEL', base .. ':log', base .. ':last')
end
return {epoch, tonumber(redis.call('GET', base .. ':seq') or '0')}
"""
