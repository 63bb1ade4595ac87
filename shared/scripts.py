"""Lua scripts: each is one atomic step of the message lifecycle.

All keys a script touches belong to one session (same hash tag), so each stays a single-slot
operation under Redis Cluster. Scripts answer errors with stable prefixes that
``shared/stores/messages.py`` turns into exceptions: ``FENCED``, ``TERMINAL``, ``NOREC``.
"""

# The session's turn (issue 20): the session hash's ``turn`` names the one message that may run;
# later messages wait in the session's pending list, in acceptance order. Whoever ends the holder
# (worker, cancel, reaper, interrupt) hands the turn to the next live waiter in the same script,
# and enqueues it right after (the reaper enqueues it if that caller dies in between).
_HAND_OVER = r"""
local function hand_over(ses, pending, prefix, now)
  while true do
    local nxt = redis.call('LPOP', pending)
    if not nxt then
      redis.call('HDEL', ses, 'turn')
      return ''
    end
    local st = redis.call('HMGET', prefix .. nxt, 'status', 'terminal_type')
    if st[1] and not st[2] then
      redis.call('HSET', ses, 'turn', nxt)
      redis.call('HSET', prefix .. nxt, 'turn_ms', now)
      return nxt
    end
  end
end
"""

# APPEND: fenced append of a batch of events, with the terminal bookkeeping in the same step.
# A ``session_name`` event names the session (HSETNX), only while the session exists.
# A batch is what a message produced while its previous append was in flight (group commit):
# each event is its own entry; the batch is one live PUBLISH (entries joined by newlines, which
# JSON payloads never contain raw; the hub splits them).
# KEYS: 1 message record, 2 event stream, 3 session record, 4 session log, 5 session pending list
# ARGV: 1 attempt ("*" = take over: bump the attempt first; cancel and reaper use it)
#       2 stream MAXLEN ~   3 stream TTL s after terminal   4 record TTL s after terminal
#       5 live channel      6 status if the batch ends the message   7 now ms
#       8 n events   9 n session-log entries   10 n stat increments
#       then n events as (type, payload), n log entries as (type, payload),
#       n stats as (field, amount); amounts with a "." use HINCRBYFLOAT;
#       then, optionally, a batch token: a client that retries a batch after a failover or a
#       slot move (the write went through, the reply was lost) gets the first run's reply
#       instead of a second copy. Only clients that retry (Cluster, Sentinel) send one.
# Returns {ids of the appended entries, id of the message handed the session's turn or ''}.
APPEND = _HAND_OVER + r"""
local rec, stream, ses, log, pending = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local token = ARGV[11 + 2 * (tonumber(ARGV[8]) + tonumber(ARGV[9]) + tonumber(ARGV[10]))]
if token then
  local prior = redis.call('HMGET', rec, 'batch', 'batch_ids', 'batch_handed')
  if prior[1] == token then
    local again = {}
    for id in string.gmatch(prior[2] or '', '[^,]+') do again[#again + 1] = id end
    return {again, prior[3] or ''}
  end
end
local cur = redis.call('HGET', rec, 'attempt')
if not cur then return redis.error_reply('NOREC message record missing') end
if redis.call('HEXISTS', rec, 'terminal_type') == 1 then
  return redis.error_reply('TERMINAL message already ended')
end
if ARGV[1] == '*' then
  redis.call('HINCRBY', rec, 'attempt', 1)
elseif cur ~= ARGV[1] then
  return redis.error_reply('FENCED attempt ' .. ARGV[1] .. ' superseded by ' .. cur)
end
local n_ev, n_log, n_stat = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local ids = {}
local pub = {}
local ended = false
local name = nil  -- a session_name event names the session (below, only if it still exists)
local i = 11
for _ = 1, n_ev do
  local t, d = ARGV[i], ARGV[i + 1]
  i = i + 2
  local id = redis.call('XADD', stream, 'MAXLEN', '~', ARGV[2], '*', 't', t, 'd', d)
  pub[#pub + 1] = id .. '\n' .. t .. '\n' .. d
  ids[#ids + 1] = id
  if t == 'message' then
    redis.call('HSET', rec, 'final_id', id, 'final_payload', d)
  elseif t == 'session_name' then
    name = cjson.decode(d)['session_name']
  elseif t == 'confirmation_required' then
    redis.call('HSET', rec, 'status', 'awaiting_confirmation')
  elseif t == 'done' or t == 'error' then
    redis.call('HSET', rec, 'terminal_id', id, 'terminal_type', t, 'terminal_payload', d,
               'status', ARGV[6], 'finished_at_ms', ARGV[7])
    ended = true
    break
  end
end
if #ids > 0 then
  redis.call('HSET', rec, 'last_id', ids[#ids])
  redis.call('HINCRBY', rec, 'count', #ids)
  redis.call('PUBLISH', ARGV[5], table.concat(pub, '\n'))
end
local handed = ''
if ended then
  local me = redis.call('HGET', rec, 'message_id') or ''
  if me ~= '' and redis.call('HGET', ses, 'turn') == me then
    handed = hand_over(ses, pending, string.sub(rec, 1, #rec - #me), ARGV[7])
  elseif me ~= '' then
    redis.call('LREM', pending, 0, me)
  end
end
if ended then
  redis.call('EXPIRE', stream, ARGV[3])
  redis.call('EXPIRE', rec, ARGV[4])
  if redis.call('EXISTS', ses) == 1 then
    for _ = 1, n_log do
      redis.call('XADD', log, '*', 't', ARGV[i], 'd', ARGV[i + 1])
      i = i + 2
    end
    for _ = 1, n_stat do
      local f, amount = ARGV[i], ARGV[i + 1]
      if string.find(amount, '.', 1, true) then
        redis.call('HINCRBYFLOAT', ses, f, amount)
      else
        redis.call('HINCRBY', ses, f, amount)
      end
      i = i + 2
    end
    redis.call('HSET', ses, 'last_activity_ms', ARGV[7], 'updated_ms', ARGV[7])
  end
end
if name and redis.call('EXISTS', ses) == 1 then
  redis.call('HSETNX', ses, 'session_name', name)
end
if token then redis.call('HSET', rec, 'batch', token, 'batch_ids', table.concat(ids, ','), 'batch_handed', handed) end
return {ids, handed}
"""

# On a Redis Cluster (>= 7) live entries go out by sharded pub/sub, to the subscribers of the
# session's own shard only (PUBLISH would be broadcast to every node of the cluster).
APPEND_SHARDED = APPEND.replace("redis.call('PUBLISH', ", "redis.call('SPUBLISH', ")
assert APPEND_SHARDED != APPEND

# CLAIM: a worker starts an attempt. KEYS: 1 record, 2 session.
# ARGV: 1 worker id, 2 lease ms, 3 now ms, 4 message id
# Returns {attempt, status} or {0, 'terminal'} / {0, 'missing'} / {0, 'waiting'} (another message
# of the session holds the turn: a job that ran early, e.g. re-enqueued by a reaper, starts nothing).
CLAIM = r"""
local rec = KEYS[1]
if redis.call('EXISTS', rec) == 0 then return {0, 'missing'} end
if redis.call('HEXISTS', rec, 'terminal_type') == 1 then return {0, 'terminal'} end
local turn = redis.call('HGET', KEYS[2], 'turn')
if turn and turn ~= ARGV[4] and redis.call('HGET', rec, 'status') == 'queued' then return {0, 'waiting'} end
local attempt = redis.call('HINCRBY', rec, 'attempt', 1)
local prev = redis.call('HGET', rec, 'status')
local status = prev
if prev == 'queued' then status = 'running' end
redis.call('HSET', rec, 'status', status, 'worker', ARGV[1],
           'lease_until_ms', tonumber(ARGV[3]) + tonumber(ARGV[2]))
redis.call('HSETNX', rec, 'started_at_ms', ARGV[3])
return {attempt, status}
"""

# RENEW: extend the lease while this attempt is current. KEYS: 1 record.
# ARGV: 1 attempt, 2 lease ms, 3 now ms. Returns 1, or 0 when fenced or ended.
RENEW = r"""
local rec = KEYS[1]
if redis.call('HGET', rec, 'attempt') ~= ARGV[1] then return 0 end
if redis.call('HEXISTS', rec, 'terminal_type') == 1 then return 0 end
redis.call('HSET', rec, 'lease_until_ms', tonumber(ARGV[3]) + tonumber(ARGV[2]))
return 1
"""

# RELEASE: a worker hands its attempt back (graceful shutdown): the lease ends now so the
# next worker takes over at once. The attempt did not crash: ``handed`` counts it out of the
# crash retries (AGENTSTREAM_MAX_TRIES). KEYS: 1 record. ARGV: 1 attempt.
RELEASE = r"""
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return 0 end
if redis.call('HEXISTS', KEYS[1], 'terminal_type') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'lease_until_ms', 0)
redis.call('HINCRBY', KEYS[1], 'handed', 1)
return 1
"""

# RESTART_UNCLAIMED: the reaper clears arq's in-progress key of a job that arq started but no
# worker claimed (the worker died in between), in the same step as the check that the message
# is still unclaimed past the grace (counted from its acceptance, its answered confirmation or
# the moment it was handed its session's turn): a claim that lands meanwhile keeps its key.
# KEYS: 1 message record, 2 arq's in-progress key of the message's job. KEYS[2] is arq's, a
#       global key (no hash tag): used on standalone and Sentinel, where arq's keys share the
#       data Redis; on a cluster the reaper runs UNCLAIMED_PAST_GRACE, then deletes the key.
# ARGV: 1 now ms, 2 grace ms. Returns 1 if it cleared the key, else 0.
_UNCLAIMED_CHECK = r"""
local s = redis.call('HMGET', KEYS[1], 'status', 'created_at_ms', 'queued_ms', 'terminal_type', 'turn_ms')
if s[1] ~= 'queued' or s[4] then return 0 end
local since = math.max(tonumber(s[2] or '0'), tonumber(s[3] or '0'), tonumber(s[5] or '0'))
if tonumber(ARGV[1]) - since <= tonumber(ARGV[2]) then return 0 end
"""
RESTART_UNCLAIMED = _UNCLAIMED_CHECK + "return redis.call('DEL', KEYS[2])\n"

# UNCLAIMED_PAST_GRACE: RESTART_UNCLAIMED's check alone, for a cluster, where arq's key lives on
# the queue Redis and the reaper deletes it in a second step (worker/reaper.py says why that is
# safe). KEYS: 1 message record. ARGV: 1 now ms, 2 grace ms. Returns 1 if still unclaimed.
UNCLAIMED_PAST_GRACE = _UNCLAIMED_CHECK + "return 1\n"

# ACCEPT: record a new user message, with the session's checks and its place in the session's
# turn order (issue 20), in one step.
# KEYS: 1 session, 2 session log, 3 message record, 4 idempotency key (or "" placeholder),
#       5 session rate window counter, 6 session pending list, 7 the message's event stream
# ARGV: 1 message id, 2 user-log payload, 3 now ms, 4 idempotency body hash ("" = none),
#       5 idempotency ttl s, 6 record ttl s, 7 content, 8 namespace id,
#       9 multitask strategy (enqueue|reject|interrupt|rollback), 10 stream MAXLEN ~, 11 live channel
# Returns {'existing', msg_id} or {'new', msg_id, 'run'|'wait', holder, holder status, revived}:
# 'run' = this message holds the turn (enqueue it); 'wait' = it waits behind ``holder`` (a
# ``thinking`` step on its stream says so). ``revived`` names a waiter that was handed a turn
# its dead holder never passed on (enqueue it too), or ''.
# Errors: NOSESSION, TERMINATED, IDEMPOTENCY_MISMATCH, QUOTA <code>, RATE <retry_after_s>,
# BUSY <holder> <status> (strategy reject; nothing is recorded).
ACCEPT = _HAND_OVER + r"""
local ses, log, rec, idem, ratek, pending, stream = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local now = tonumber(ARGV[3])
-- Another namespace's session answers exactly like a missing one (the gateway no longer loads
-- the session before accepting: this is the check).
if redis.call('HGET', ses, 'namespace_id') ~= ARGV[8] then return redis.error_reply('NOSESSION') end
if ARGV[4] ~= '' then
  local prior = redis.call('HMGET', idem, 'message_id', 'body_hash')
  if prior[1] then
    if prior[2] ~= ARGV[4] then return redis.error_reply('IDEMPOTENCY_MISMATCH') end
    return {'existing', prior[1]}
  end
end
local s = redis.call('HMGET', ses, 'status', 'quota_max_messages', 'user_messages',
                     'quota_rate_per_minute', 'expires_ms', 'quota_max_tokens', 'total_tokens',
                     'quota_max_tool_calls', 'total_tool_calls', 'quota_deadline_ms', 'turn')
if s[1] == 'terminated' then return redis.error_reply('TERMINATED') end
if s[5] and tonumber(s[5]) <= now then return redis.error_reply('QUOTA session_expired') end
if s[10] and tonumber(s[10]) <= now then return redis.error_reply('QUOTA max_session_duration') end
if s[2] and tonumber(s[3] or '0') >= tonumber(s[2]) then
  return redis.error_reply('QUOTA max_messages')
end
if s[6] and tonumber(s[7] or '0') >= tonumber(s[6]) then
  return redis.error_reply('QUOTA max_tokens_total')
end
if s[8] and tonumber(s[9] or '0') >= tonumber(s[8]) then
  return redis.error_reply('QUOTA max_tool_calls')
end
local prefix = string.sub(rec, 1, #rec - #ARGV[1])
local holder, hstatus, revived = s[11], '', ''
if holder then
  local h = redis.call('HMGET', prefix .. holder, 'status', 'terminal_type')
  if not h[1] or h[2] then
    -- The holder is over (or its record expired) yet never passed the turn on: pass it now.
    holder = hand_over(ses, pending, prefix, ARGV[3])
    revived = holder
    if holder == '' then holder = false else h = redis.call('HMGET', prefix .. holder, 'status') end
  end
  if holder then hstatus = h[1] or 'queued' end
end
if holder and ARGV[9] == 'reject' then
  return redis.error_reply('BUSY ' .. holder .. ' ' .. hstatus)
end
if s[4] then
  local used = redis.call('INCR', ratek)
  if used == 1 then redis.call('EXPIRE', ratek, 60) end
  if used > tonumber(s[4]) then
    return redis.error_reply('RATE ' .. math.max(1, redis.call('TTL', ratek)))
  end
end
local first = '0'
if tonumber(s[3] or '0') == 0 then first = '1' end
redis.call('HSET', rec, 'message_id', ARGV[1], 'session_id', string.match(ses, '{(.-)}'),
           'namespace_id', ARGV[8], 'status', 'queued', 'attempt', 0, 'count', 0,
           'created_at_ms', ARGV[3], 'content', ARGV[7], 'first', first, 'job', ARGV[1])
redis.call('EXPIRE', rec, ARGV[6])
redis.call('XADD', log, '*', 't', 'user', 'd', ARGV[2])
if s[5] then redis.call('PEXPIREAT', log, tonumber(s[5]) + 60000) end
redis.call('HINCRBY', ses, 'user_messages', 1)
redis.call('HSET', ses, 'last_activity_ms', ARGV[3], 'updated_ms', ARGV[3])
if ARGV[4] ~= '' then
  redis.call('HSET', idem, 'message_id', ARGV[1], 'body_hash', ARGV[4])
  redis.call('EXPIRE', idem, ARGV[5])
end
if not holder then
  redis.call('HSET', ses, 'turn', ARGV[1])
  redis.call('HSET', rec, 'turn_ms', ARGV[3])
  return {'new', ARGV[1], 'run', '', '', revived}
end
local ahead = redis.call('RPUSH', pending, ARGV[1])
if s[5] then redis.call('PEXPIREAT', pending, tonumber(s[5]) + 60000) end
redis.call('HSET', rec, 'behind', holder)
local text
if hstatus == 'awaiting_confirmation' then
  text = 'Queued behind ' .. holder .. ', which awaits a confirmation: answer it, or send with ' ..
         'X-Agentstream-Multitask: interrupt (or rollback) to end it'
else
  text = 'Queued behind ' .. holder .. ' (' .. ahead .. ' message(s) ahead): this message starts when they end'
end
local d = '{"step":"queued","message":"' .. text .. '"}'
local id = redis.call('XADD', stream, 'MAXLEN', '~', ARGV[10], '*', 't', 'thinking', 'd', d)
redis.call('PUBLISH', ARGV[11], id .. '\n' .. 'thinking' .. '\n' .. d)
redis.call('HSET', rec, 'last_id', id, 'count', 1)
redis.call('EXPIRE', stream, ARGV[6])
return {'new', ARGV[1], 'wait', holder, hstatus, revived}
"""

ACCEPT_SHARDED = ACCEPT.replace("redis.call('PUBLISH', ", "redis.call('SPUBLISH', ")
assert ACCEPT_SHARDED != ACCEPT

# ENQUEUE: put a message's job on arq's queue and wake the workers, in one step. Keeps arq's own
# format (what ``ArqRedis.enqueue_job`` writes: the job under arq:job:<id>, its id in the queue
# zset) and its rule that an existing job or result means "already enqueued".
# KEYS: 1 arq job key, 2 arq result key, 3 queue, 4 inbound stream
# ARGV: 1 job id, 2 serialised job, 3 job expiry ms, 4 score (now ms), 5 inbound MAXLEN ~,
#       6 session id, 7 message id. Returns 1 if the job was created, 0 if it existed.
ENQUEUE = r"""
local created = 0
if redis.call('EXISTS', KEYS[1], KEYS[2]) == 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
  created = 1
end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 's', ARGV[6], 'm', ARGV[7])
return created
"""

# START_JOBS: a worker takes up to ARGV[3] ready jobs from arq's queue in one step, doing for
# each what arq's ``start_jobs`` does with a WATCH/EXISTS/ZSCORE/MULTI round-trip series per
# queued id (running ones included): skip it if another worker has it in progress or it is not
# due, else mark it in progress. One round trip per poll instead of four per queued job, which
# with a thousand jobs in flight and a poll per new message was quadratic.
# KEYS: 1 queue, then one arq in-progress key per candidate. ARGV: 1 now ms, 2 in-progress ttl ms,
# 3 how many to take, then the candidate job ids (same order as their keys).
# Returns {job id, score, job id, score, ...} of the jobs taken.
START_JOBS = r"""
local out = {}
local want = tonumber(ARGV[3])
for i = 4, #ARGV do
  if #out >= 2 * want then break end
  local id = ARGV[i]
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) <= tonumber(ARGV[1]) and redis.call('EXISTS', KEYS[i - 2]) == 0 then
    redis.call('SET', KEYS[i - 2], '1', 'PX', ARGV[2])
    out[#out + 1] = id
    out[#out + 1] = score
  end
end
return out
"""

# COMPACT: replace a finished message's stream by its packed kept events
# (shared/stores/compaction.py) and shrink its record, if the stream is still exactly what the
# caller folded. KEYS: 1 message record, 2 event stream, 3 packed events (same slot)
# ARGV: 1 last id read, 2 length read, 3 folded token runs ("a/b,c/d"; "" = none),
#       4 tokens folded, 5 the packed kept events
# Returns ok | compacted | running | missing | changed.
COMPACT = r"""
local rec, stream, packed = KEYS[1], KEYS[2], KEYS[3]
local h = redis.call('HGETALL', rec)
if #h == 0 then return 'missing' end
local f = {}
for j = 1, #h, 2 do f[h[j]] = h[j + 1] end
if not f['terminal_type'] then return 'running' end
if f['compacted'] then return 'compacted' end
if redis.call('XLEN', stream) ~= tonumber(ARGV[2]) then return 'changed' end
local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
if #last == 0 or last[1][1] ~= ARGV[1] then return 'changed' end
local ttl = redis.call('PTTL', rec)
redis.call('SET', packed, ARGV[5])
redis.call('DEL', stream)
-- The packed events hold the final message and the outcome for as long as the record lives,
-- so the record drops its copies; rewriting the hash lets Redis store it compactly again.
f['final_payload'] = nil
f['terminal_payload'] = nil
-- and what only a running attempt needs
f['worker'] = nil
f['job'] = nil
f['lease_until_ms'] = nil
f['started_at_ms'] = nil
f['compacted'] = '1'
f['folded'] = ARGV[3]
f['folded_count'] = ARGV[4]
redis.call('DEL', rec)
local args = {}
for k, v in pairs(f) do
  args[#args + 1] = k
  args[#args + 1] = v
end
redis.call('HSET', rec, unpack(args))
if ttl > 0 then
  redis.call('PEXPIRE', rec, ttl)
  redis.call('PEXPIRE', packed, ttl)
end
return 'ok'
"""
