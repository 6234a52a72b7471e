"""The Lua functions several of the Redis store's scripts share (redis_lua.py): announcing a
queue change, telling a job's event to the processes that have to do with the job, taking the
first job of a queue, counting a take, putting a job in a queue (and perhaps taking it for the
writer's idle taker at once), and checking who holds a lease."""

from __future__ import annotations

from .model import TERMINAL

# Shared body: publish `tag .. body` on a channel every process listens to (queue changes),
# unless the only process listening there is the writer itself (it wakes its own waiters when
# the script returns, redis_notify.py). Each process also listens on "<channel><tag>" on the
# same connection, so NUMSUB of that channel says, atomically, whether the writer's own
# subscription is among the channel's: a lone process then publishes nothing, and a writer
# whose subscription dropped still publishes.
ANNOUNCE_FN = """
local function announce(chan, tag, body)
  if tag ~= '' then
    local n = redis.call('PUBSUB', 'NUMSUB', chan, chan .. tag)
    if tonumber(n[2]) - tonumber(n[4]) <= 0 then return end
  end
  redis.call('PUBLISH', chan, tag .. body)
end
"""

# Shared body: has a job in this status ended? (the statuses of model.py TERMINAL)
ENDED_FN = """
local function ended(st)
  return """ + " or ".join(f"st == '{status.value}'" for status in sorted(TERMINAL)) + """
end
"""

# Shared body: who is told of a job's events. The job's record lists, in its `heard` field, the
# processes (their origins, space-separated) that wrote the job, took it, or follow it (HEAR):
# few, whatever the number of processes sharing the store. Each listens on its own channel,
# "<events channel>@<origin> ", and `tell` publishes a job's event there for each of them but
# the writer (which wakes its own followers when the script returns, redis_notify.py). So a
# process hears the events of the jobs it has to do with, not of every job of every process.
# A writer without an origin ('' tag) is listed nowhere and skips nobody.
# `hear` lists the writer and returns the list, for `tell` (one read of it per script).
HEAR_FN = """
local function hear(job, tag)
  local heard = redis.call('HGET', job, 'heard') or ''
  if tag == '' then return heard end
  local me = string.sub(tag, 2, -2)
  if heard == '' then
    heard = me
  elseif heard == me or string.find(' ' .. heard .. ' ', ' ' .. me .. ' ', 1, true) then
    return heard
  else
    heard = heard .. ' ' .. me
  end
  redis.call('HSET', job, 'heard', heard)
  return heard
end

local function tell(chan, heard, tag, body)
  local me = string.sub(tag, 2, -2)
  if heard == me then return end  -- the writer alone: it wakes its own followers
  for origin in string.gmatch(heard, '%S+') do
    if origin ~= me then redis.call('PUBLISH', chan .. '@' .. origin .. ' ', tag .. body) end
  end
end
"""

# Shared body: the first job waiting in a stage's queue enters its stream and is read there at
# once by `consumer`, so that its lease starts in the same step; it leaves the waiting set.
# Entries nobody read come first: only a store written before priorities has them (every job
# then entered the stream as it arrived); served first, as they would have been. Returns the
# entry id and the job id, or nil when nobody waits.
TAKE_FIRST_FN = """
local function take_first(q, qid, wait, group, consumer)
  local got = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', 1, 'STREAMS', q, '>')
  if not got then
    local first = redis.call('ZRANGE', wait, 0, 0)
    if #first == 0 then return nil end
    redis.call('XADD', q, '*', 'job', first[1])
    got = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', 1, 'STREAMS', q, '>')
  end
  local entry = got[1][2][1]
  local jobid = entry[2][2]
  redis.call('HSET', qid, jobid, entry[1])
  redis.call('ZREM', wait, jobid)
  return entry[1], jobid
end

local function count_take(dlv_prefix, jobid, stage, ttl)
  local dlv = dlv_prefix .. jobid
  local n = redis.call('HINCRBY', dlv, stage, 1)
  redis.call('EXPIRE', dlv, ttl)
  return n
end
"""

# Shared body: put a job in a stage's queue, behind every job of its priority or higher,
# unless it is there already (waiting or taken), which makes a stage's hand-over to the next one
# safe to repeat after a crash. KEYS qid, wait, qseq, job; values jobid, stage, queues channel,
# writer's tag. Returns 1 if it joined the queue, else 0.
# `hand` (or nil): {q, group, consumer, delivery counts key prefix, their ttl} when the writing
# process has a taker of the stage idle: if nobody waits in the queue, the job is taken for
# that consumer in this same step (counted as a take) and nobody else is told of it; the writer
# gives it to its taker without the take's round trip. Returns then {1, entry id, job id,
# deliveries, the job's progress field}.
ENQUEUE_FN = ANNOUNCE_FN + TAKE_FIRST_FN + """
local function enqueue(qid, wait, qseq, job, jobid, stage, chan, tag, hand)
  if redis.call('HEXISTS', qid, jobid) == 1 or redis.call('ZSCORE', wait, jobid) then return 0 end
  local prio = tonumber(redis.call('HGET', job, 'prio') or '0') or 0
  local alone = redis.call('ZCARD', wait) == 0
  redis.call('ZADD', wait, redis.call('INCR', qseq) - prio * 1099511627776, jobid)
  if hand and alone then
    local entry, taken = take_first(hand[1], qid, wait, hand[2], hand[3])
    local n = count_take(hand[4], taken, stage, hand[5])
    -- (an unread entry of an old store went first: this job waits, and is announced)
    if taken ~= jobid then announce(chan, tag, stage .. ' +') end
    return {1, entry, taken, n, redis.call('HGET', job, 'progress') or ''}
  end
  announce(chan, tag, stage .. ' +')
  return 1
end
"""

# Is the job's entry in the pending list and owned by this consumer? (shared by the scripts
# below: a process whose lease was taken over must not ack or renew another's lease)
OWNED_FN = """
local function owned(q, qid, group, consumer, jobid)
  local entry = redis.call('HGET', qid, jobid)
  if not entry then return nil end
  local p = redis.call('XPENDING', q, group, entry, entry, 1)
  if #p == 0 or p[1][2] ~= consumer then return nil end
  return entry
end
"""
