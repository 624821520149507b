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
               seq is one XRANGE), fields `e` (epoch), `t` (ms) and `m` (the message).
               An entry some other writer appended (`XADD *`, or any id at or above the
               next seq) would make that XADD fail: the seq then jumps past the foreign
               id (readers skip the foreign entry and send subscribers to resync, as for
               a gap), or, for an id beyond 2^53 - 1, the stream starts a new epoch;
* `P:S:last`   hash from snapshot key to `seq` + "\\n" + message, for snapshots;
* `P:S:lru`    sorted set of the same snapshot keys scored by their last seq: past the most
               keys a stream may keep, the least recently updated ones leave both;
* `P:id:ID`    `stream` + "\\n" + `seq` + "\\n" + `epoch` of an already published message_id,
               expiring after the idempotency window.
"""

from __future__ import annotations

# ARGV: prefix, idempotency window (s), fresh epoch, count, most latest-value keys per
#       stream, then per message: stream, message_id, snapshot key ("" = none), history
#       max length, body.
# Returns per message {duplicate (0|1), stream, seq, epoch} and, for a duplicate whose
# original is still in its stream's log, the original's body as a fifth element (a repeat
# is answered with the original message, not with the repeat).
PUBLISH = """
local prefix = ARGV[1]
local window = tonumber(ARGV[2])
local fresh = ARGV[3]
local count = tonumber(ARGV[4])
local max_keys = tonumber(ARGV[5])
local max_seq = 9007199254740991
local now = redis.call('TIME')
local millis = now[1] * 1000 + math.floor(now[2] / 1000)
local out = {}
local i = 6
-- Keys of a foreign type or value (pcall: WRONGTYPE is an error reply) count as missing.
local function text(key)
  local value = redis.pcall('GET', key)
  if type(value) == 'string' then return value end
  return nil
end
local function counter(value)
  return value and #value <= 16 and string.match(value, '^%d+$')
end
local function start(base, epoch)
  redis.call('SET', base .. ':epoch', epoch)
  redis.call('SET', base .. ':seq', 0)
  redis.call('DEL', base .. ':log', base .. ':last', base .. ':lru')
end
-- Forget the least recently updated latest values past max_keys (the LRU set follows the
-- hash; a foreign value in its place is replaced).
local function remember(base, skey, seq)
  local lru = base .. ':lru'
  if type(redis.pcall('ZADD', lru, seq, skey)) == 'table' then
    redis.call('DEL', lru)
    redis.call('ZADD', lru, seq, skey)
  end
  local over = redis.call('ZCARD', lru) - max_keys
  if over > 0 then
    local gone = redis.call('ZPOPMIN', lru, over)
    for j = 1, #gone, 2 do redis.call('HDEL', base .. ':last', gone[j]) end
  end
end
for _ = 1, count do
  local stream, id, skey, maxlen, body = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  i = i + 5
  local idkey = prefix .. ':id:' .. id
  local seen = text(idkey)
  local s, q, e
  if seen then s, q, e = string.match(seen, '^([^\\n]*)\\n(%d+)\\n(.*)$') end
  if s then
    local original = false
    local found = redis.pcall('XRANGE', prefix .. ':' .. s .. ':log', q .. '-0', q .. '-0')
    local entry = type(found) == 'table' and found[1]
    if entry then
      local fields = {}
      for j = 1, #entry[2], 2 do fields[entry[2][j]] = entry[2][j + 1] end
      if fields['e'] == e then original = fields['m'] end
    end
    out[#out + 1] = {1, s, tonumber(q), e, original}
  else
    local base = prefix .. ':' .. stream
    local logkey = base .. ':log'
    local epoch = text(base .. ':epoch')
    if not epoch or not counter(text(base .. ':seq')) then
      epoch = fresh
      start(base, epoch)
    end
    local seq = redis.call('INCR', base .. ':seq')
    local added = redis.pcall('XADD', logkey, 'MAXLEN', '~', maxlen, string.format('%d-0', seq),
      'e', epoch, 't', millis, 'm', body)
    if type(added) == 'table' and added.err then
      -- A foreign entry holds an id at or above ours: go on after it (readers skip it and
      -- see a gap), or start a new epoch when its id is beyond any seq (or the log is not
      -- a stream at all).
      local info = redis.pcall('XINFO', 'STREAM', logkey)
      local top = nil
      if type(info) == 'table' and not info.err then
        for j = 1, #info, 2 do
          if info[j] == 'last-generated-id' then top = info[j + 1] end
        end
      end
      local after = tonumber(top and string.match(top, '^(%d+)-') or '') or max_seq
      if after < max_seq then
        seq = after + 1
        redis.call('SET', base .. ':seq', string.format('%d', seq))
      else
        epoch = fresh
        start(base, epoch)
        seq = redis.call('INCR', base .. ':seq')
      end
      redis.call('XADD', logkey, 'MAXLEN', '~', maxlen, string.format('%d-0', seq),
        'e', epoch, 't', millis, 'm', body)
    end
    if skey ~= '' then
      local value = string.format('%d', seq) .. '\\n' .. body
      if type(redis.pcall('HSET', base .. ':last', skey, value)) == 'table' then
        redis.call('DEL', base .. ':last')  -- not a hash: foreign, replaced
        redis.call('HSET', base .. ':last', skey, value)
      end
      remember(base, skey, seq)
    end
    redis.call('SET', idkey, stream .. '\\n' .. string.format('%d', seq) .. '\\n' .. epoch,
      'EX', window)
    out[#out + 1] = {0, stream, seq, epoch}
  end
end
return out
"""

# ARGV: prefix, stream, fresh epoch. Returns {epoch, seq}, starting a new epoch when the
# stream's epoch or counter is missing (or not a string / not a number: foreign).
POSITION = """
local base = ARGV[1] .. ':' .. ARGV[2]
local epoch = redis.pcall('GET', base .. ':epoch')
local seq = redis.pcall('GET', base .. ':seq')
if type(epoch) ~= 'string' or type(seq) ~= 'string' or #seq > 16 or not seq:match('^%d+$') then
  epoch = ARGV[3]
  seq = '0'
  redis.call('SET', base .. ':epoch', epoch)
  redis.call('SET', base .. ':seq', 0)
  redis.call('DEL', base .. ':log', base .. ':last', base .. ':lru')
end
return {epoch, seq}
"""
