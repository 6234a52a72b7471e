"""The Lua scripts of the Redis store. Each runs atomically inside Redis, so a state change and
the event announcing it, or a job leaving a queue and its place in the position index, can
never be seen half done by another process.

Keys (P: RedisKeys.base, the deployment's prefix as one Redis Cluster hash tag, e.g.
"{comfy-gateway}:", so that each script touches one hash slot; redis_keys.py names them all and
says what is left before Cluster):
  P job:<id>      hash  core (JSON of the Job minus its big parts and progress), request,
                        workflow, progress (JSON), st, msg (its status and message, for
                        progress events),
                        v (version, for compare-and-set), seq (last event number),
                        born (a token unique to this creation of the id, for compare-and-set),
                        prio (its priority), owner (the name of the key that sent it),
                        heard (the processes told of its events: HEAR_FN, redis_lua_parts.py)
  P ev:<id>       stream of the job's events; entry id "<seq>-0", fields seq, type, status,
                        message, time, progress
  P wait:<stage>  sorted set of the WAITING job ids: the stage's queue and the one source of its
                  order. Score -priority * 2^40 + P qseq: higher priorities first, first come
                  first served within one; positions and sizes are ZRANK and ZCARD, the same in
                  every process.
  P q:<stage>     stream, one consumer group "workers": the leases. A take moves the first job
                  of P wait:<stage> into the stream and reads it in the same script, so the
                  entry sits in the group's pending list (the lease) until acked, and a dead
                  taker's lease is claimed by another process (XPENDING IDLE + XCLAIM).
  P qid:<stage>   hash  job id -> its entry id in P q:<stage>, while the job is taken
  P qseq          counter giving queue order
  P ended         sorted set  "<status>|<job id>" -> finished_at, for expire()
  P created       sorted set  job id -> created_at (recent jobs, newest first)
  P counts        hash  status -> jobs kept in it (the metrics gauge)
  P active        hash  key name -> its jobs that have not ended (max_queued)
  P created:<key> sorted set  job id -> created_at, the jobs of one key name (/jobs)
  P usage         stream  one entry per ended job: key, status, seconds, bytes (/usage);
                  trimmed to USAGE_TTL
  P dlv:<id>      hash  stage -> times the stage took the job (redis_facts.py)
  P sched:<name>  sorted set  job id -> when it is due (redis_facts.py; "deadlines" here too)
  P preview:<id>  the latest preview of a job (pipeline/preview_relay.py)
Channels: P events@<origin> (payload: job id), one per process, wakes the waiters of a job in
the processes its record lists as `heard` (`tell`, redis_lua_parts.py); P queues (payload:
"<stage> +" when a job became available to takers, "<stage> -" when one left the waiting line),
which every process hears, wakes streams showing positions, and, on "+" only, idle takers of
that stage. Each payload starts with the writer's tag ("@<origin> "): the writing process has
already woken its own waiters when the script returned (redis_notify.py), so it is never told
a job's events, and skips its own echo of a queue change; when no other process listens to the
queues, nothing is published there at all (`announce`). A progress event's job id is marked
"~<job id>" and the event that ends a job "!<job id>", so that followers waiting for a change of
state, or for the end, sleep through the others.
"""

from __future__ import annotations

from .redis_lua_parts import ANNOUNCE_FN, ENDED_FN, ENQUEUE_FN, HEAR_FN, OWNED_FN, TAKE_FIRST_FN

# KEYS: job, ev, q:preprocess, qid:preprocess, wait:preprocess, wait:generation,
#       wait:postprocess, qseq, qid:generation, counts, created, active, created:<owner>,
#       sched:deadlines, then q, qid, wait of the stage the job joins
# ARGV: id, core, request, max_waiting (-1: none), type, status, message, time,
#       events channel, queues channel, born (a token unique to this creation of the job),
#       owner (key name), max_queued of the owner (-1: none), priority, created_at, writer's tag,
#       deadline ('' = none: its time limit, in the same step, so no job exists without one),
#       group, consumer, delivery counts key prefix, their ttl, hand ('1' when a taker of the
#       writer waits idle for that stage: enqueue's `hand`; '2' the same, but the record holds
#       a claim that is true only if that taker gets the job: store.Claim), the stage the job joins, its
#       workflow ('' = none yet), then the events written before its own, three values each
#       (type, status, message): the states a job prepared on arrival passed through
#       (store.Prepared), its own event and record being those of the state it is created in.
# Returns {'ok', what enqueue returned}, or {'exists'}, {'full', n}, {'owner_full', n}, or
# {'busy'} when hand is '2' and somebody waits in the queue (nothing is written).
CREATE = ENQUEUE_FN + HEAR_FN + """
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists'} end
if ARGV[22] == '2' and redis.call('ZCARD', KEYS[17]) > 0 then return {'busy'} end
local limit = tonumber(ARGV[4])
if limit >= 0 then
  -- Waiting jobs, plus those a preprocess worker holds that have not reached the generation
  -- queue yet: they are about to wait there (this keeps the limit exact while a job is between
  -- two queues). The pending list is short: at most one entry per preprocess worker.
  local waiting = redis.call('ZCARD', KEYS[5]) + redis.call('ZCARD', KEYS[6]) + redis.call('ZCARD', KEYS[7])
  for _, p in ipairs(redis.call('XPENDING', KEYS[3], 'workers', '-', '+', 10000)) do
    local e = redis.call('XRANGE', KEYS[3], p[1], p[1])
    if #e > 0 and redis.call('HEXISTS', KEYS[9], e[1][2][2]) == 0
       and not redis.call('ZSCORE', KEYS[6], e[1][2][2]) then waiting = waiting + 1 end
  end
  if waiting >= limit then return {'full', waiting} end
end
if ARGV[12] ~= '' then
  local owned = tonumber(redis.call('HGET', KEYS[12], ARGV[12]) or '0')
  if tonumber(ARGV[13]) >= 0 and owned >= tonumber(ARGV[13]) then return {'owner_full', owned} end
  redis.call('HINCRBY', KEYS[12], ARGV[12], 1)
  redis.call('ZADD', KEYS[13], ARGV[15], ARGV[1])
end
local seq = 0
for i = 25, #ARGV, 3 do
  seq = seq + 1
  redis.call('XADD', KEYS[2], seq .. '-0', 'seq', seq, 'type', ARGV[i], 'status', ARGV[i + 1],
             'message', ARGV[i + 2], 'time', ARGV[8])
end
seq = seq + 1
redis.call('XADD', KEYS[2], seq .. '-0', 'seq', seq, 'type', ARGV[5], 'status', ARGV[6],
           'message', ARGV[7], 'time', ARGV[8])
redis.call('HSET', KEYS[1], 'core', ARGV[2], 'request', ARGV[3], 'v', 1, 'seq', seq, 'born', ARGV[11],
           'prio', ARGV[14], 'owner', ARGV[12], 'st', ARGV[6], 'msg', ARGV[7])
if ARGV[24] ~= '' then redis.call('HSET', KEYS[1], 'workflow', ARGV[24]) end
local heard = hear(KEYS[1], ARGV[16])
redis.call('HINCRBY', KEYS[10], ARGV[6], 1)
redis.call('ZADD', KEYS[11], ARGV[15], ARGV[1])
if ARGV[17] ~= '' then redis.call('ZADD', KEYS[14], 'NX', ARGV[17], ARGV[1]) end
local hand = nil
if ARGV[22] ~= '' then hand = {KEYS[15], ARGV[18], ARGV[19], ARGV[20], ARGV[21]} end
local queued = enqueue(KEYS[16], KEYS[17], KEYS[8], KEYS[1], ARGV[1], ARGV[23], ARGV[10], ARGV[16], hand)
tell(ARGV[9], heard, ARGV[16], ARGV[1])
return {'ok', queued}
"""

# Compare-and-set of the job record plus its event. The new record was computed in Python from
# version v; if another process wrote in between, nothing is written and Python retries.
# KEYS: job, ev, ended, counts, active, usage, sched:deadlines (a job that ends leaves it), then
#       the stage's qid, wait, qseq, q when the job joins a queue (ARGV stage not ''), then
#       q, qid of a stage whose lease this process holds and acks in the same step
# ARGV: expected v, core, workflow ('' = unchanged), has_event (0/1), type, status, message,
#       time, progress ('' = none), terminal (0/1), ttl seconds, finished_at, id, events channel,
#       previous status, born ('' = not checked), owner, usage record (JSON, '' unless
#       terminal), usage kept (ms), writer's tag, progress (JSON, '' = unchanged),
#       request (JSON, '' = unchanged)
# The writer may have computed the change from a copy it kept of version v rather than from a
# fresh read: v and born (unique per creation of a job id) then both match only if nothing was
# written since, not even by an expiry and a new job under the same id.
# Optionally (more KEYS: qid, wait, qseq, q of a stage; ARGV stage, queues channel, else '', '')
# the job is then put in that stage's queue unless this change ended it: a stage's last change
# and its hand-over to the next one in one step; and given at once to an idle taker of this
# consumer if nobody else waits there (ARGV hand = '1', see enqueue).
# And optionally (more KEYS: q, qid of a stage) that stage's lease is acked, if this consumer
# holds it: the stage handing the job over, or the one holding it when the change ends it (a
# job that ended needs no lease), so that a stage's last act costs one script call instead of
# two.
# More ARGV, always: group, consumer, delivery counts key prefix, their ttl, hand ('1' or '');
# then the events written before the change's own, four values each (type, status, message,
# progress): progress frames that waited for the job's writer, each as PROGRESS writes it
# (redis_progress.py holds frames back a moment, so that a short job's frames go with its next
# change instead of costing calls of their own), and a state the job passed through on its way
# to this change (store.Passing) with its status and message.
# Returns {the seq of the last event written (0: none), what enqueue returned (0 if it did not
# run), 1 if the lease was acked else 0}, or -1 if the job is gone, -2 on a conflict.
UPDATE = ENQUEUE_FN + OWNED_FN + HEAR_FN + """
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return -1 end
if v ~= ARGV[1] then return -2 end
if ARGV[16] ~= '' and redis.call('HGET', KEYS[1], 'born') ~= ARGV[16] then return -2 end
local seq = 0
if #ARGV > 29 then
  -- Events before this change's own, four values each: type, status, message, progress. A
  -- progress frame that waited for the job's writer has no status: it is sent under the job's
  -- as it stands (as PROGRESS writes it); a state the job passed through has its own.
  local st, msg = unpack(redis.call('HMGET', KEYS[1], 'st', 'msg'))
  st, msg = st or ARGV[15], msg or ''
  local frame = nil
  for i = 30, #ARGV, 4 do
    if ARGV[i + 1] ~= '' then st, msg = ARGV[i + 1], ARGV[i + 2] end
    seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
    local fields = {'seq', seq, 'type', ARGV[i], 'status', st, 'message', msg, 'time', ARGV[8]}
    if ARGV[i + 3] ~= '' then
      fields[#fields + 1] = 'progress'
      fields[#fields + 1] = ARGV[i + 3]
      if ARGV[i] == 'progress' then frame = ARGV[i + 3] end
    end
    redis.call('XADD', KEYS[2], seq .. '-0', unpack(fields))
  end
  if frame then redis.call('HSET', KEYS[1], 'progress', frame) end
end
redis.call('HSET', KEYS[1], 'core', ARGV[2], 'v', tonumber(v) + 1, 'st', ARGV[6], 'msg', ARGV[7])
local heard = hear(KEYS[1], ARGV[20])
if ARGV[21] ~= '' then redis.call('HSET', KEYS[1], 'progress', ARGV[21]) end
if ARGV[22] ~= '' then redis.call('HSET', KEYS[1], 'request', ARGV[22]) end
if ARGV[15] ~= ARGV[6] then
  redis.call('HINCRBY', KEYS[4], ARGV[15], -1)
  redis.call('HINCRBY', KEYS[4], ARGV[6], 1)
end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'workflow', ARGV[3]) end
if ARGV[4] == '1' then
  seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
  local fields = {'seq', seq, 'type', ARGV[5], 'status', ARGV[6], 'message', ARGV[7], 'time', ARGV[8]}
  if ARGV[9] ~= '' then
    fields[#fields + 1] = 'progress'
    fields[#fields + 1] = ARGV[9]
  end
  redis.call('XADD', KEYS[2], seq .. '-0', unpack(fields))
end
if ARGV[10] == '1' then
  redis.call('EXPIRE', KEYS[1], ARGV[11])
  redis.call('EXPIRE', KEYS[2], ARGV[11])
  redis.call('ZADD', KEYS[3], ARGV[12], ARGV[6] .. '|' .. ARGV[13])
  redis.call('ZREM', KEYS[7], ARGV[13])
  if ARGV[17] ~= '' and tonumber(redis.call('HINCRBY', KEYS[5], ARGV[17], -1)) <= 0 then
    redis.call('HDEL', KEYS[5], ARGV[17])
  end
  if ARGV[18] ~= '' then
    local t = redis.call('TIME')
    local oldest = tonumber(t[1]) * 1000 - tonumber(ARGV[19])
    redis.call('XADD', KEYS[6], 'MINID', '~', string.format('%d', oldest), '*', 'r', ARGV[18])
  end
end
if ARGV[4] == '1' then
  tell(ARGV[14], heard, ARGV[20], (ARGV[10] == '1' and '!' or '') .. ARGV[13])
elseif seq > 0 then
  tell(ARGV[14], heard, ARGV[20], '~' .. ARGV[13])
end
local queued, k = 0, 8
if ARGV[23] ~= '' then
  if ARGV[10] ~= '1' then
    local hand = nil
    if ARGV[29] == '1' then hand = {KEYS[k + 3], ARGV[25], ARGV[26], ARGV[27], ARGV[28]} end
    queued = enqueue(KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[1], ARGV[13], ARGV[23], ARGV[24], ARGV[20], hand)
  end
  k = k + 4
end
local acked = 0
if #KEYS > k then
  local entry = owned(KEYS[k], KEYS[k + 1], ARGV[25], ARGV[26], ARGV[13])
  if entry then
    redis.call('XACK', KEYS[k], ARGV[25], entry)
    redis.call('XDEL', KEYS[k], entry)
    redis.call('HDEL', KEYS[k + 1], ARGV[13])
    acked = 1
  end
end
return {seq, queued, acked}
"""

# Progress frames, in order: each a "progress" event carrying the job's current status and
# message (kept beside the record as st, msg), and the last one the job's progress field;
# nothing else: the record and its version stay as they are. A job that ended takes no more.
# KEYS: job, ev   ARGV: time, events channel, job id, writer's tag, then each frame (JSON)
# Returns the last event's seq, 0 if the job ended, -1 if it is gone.
PROGRESS = HEAR_FN + ENDED_FN + """
local st, msg, heard = unpack(redis.call('HMGET', KEYS[1], 'st', 'msg', 'heard'))
if not st then
  if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
  return 0  -- written before progress had a field of its own: leave it to the next change
end
if ended(st) then return 0 end
local seq = 0
for i = 5, #ARGV do
  seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
  redis.call('XADD', KEYS[2], seq .. '-0', 'seq', seq, 'type', 'progress', 'status', st,
             'message', msg or '', 'time', ARGV[1], 'progress', ARGV[i])
end
redis.call('HSET', KEYS[1], 'progress', ARGV[#ARGV])
tell(ARGV[2], heard or '', ARGV[4], '~' .. ARGV[3])
return seq
"""

# A process that neither wrote nor took the job is to be told of its events from now on (one of
# its followers is about to wait for them). KEYS: job   ARGV: its tag. Returns 0 if the job is
# gone (nothing is written: an empty record would read as a job), 2 if it has ended, else 1.
HEAR = HEAR_FN + ENDED_FN + """
local st = redis.call('HGET', KEYS[1], 'st')
if not st then
  if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
  st = ''
end
hear(KEYS[1], ARGV[1])
if ended(st) then return 2 end
return 1
"""

# KEYS: qid, wait, qseq, job   ARGV: jobid, stage, queues channel, writer's tag
ENQUEUE = ENQUEUE_FN + """
return enqueue(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3], ARGV[4], nil)
"""

# Take one job for a consumer: first a job whose lease ran out (its taker died or stalled past
# LEASE_SECONDS without renewing), else the first waiting one (highest priority, then oldest;
# take_first). The job's delivery count for the stage (P dlv:<id>) goes up in the same step,
# and its record comes back with it, so that a taker needs no other round trip to start.
# Returns {job id, entry id, 'reclaimed'|'new', previous owner, deliveries,
# {v, born, core, progress, request, workflow}, jobs still waiting} or false.
# KEYS: q, qid, wait   ARGV: group, consumer, lease ms, queues channel, stage, writer's tag,
# job key prefix ("P job:"), delivery counts key prefix ("P dlv:"), their ttl (s)
# The job's keys are built here (which job is taken is only known here): in the same hash slot
# as KEYS, which Redis Cluster tolerates in practice but does not promise for keys not given.
TAKE = ANNOUNCE_FN + TAKE_FIRST_FN + HEAR_FN + """
local function taken(jobid, entry, how, previous)
  local n = count_take(ARGV[8], jobid, ARGV[5], ARGV[9])
  if redis.call('EXISTS', ARGV[7] .. jobid) == 1 then hear(ARGV[7] .. jobid, ARGV[6]) end
  local rec = redis.call('HMGET', ARGV[7] .. jobid, 'v', 'born', 'core', 'progress', 'request', 'workflow')
  return {jobid, entry, how, previous, n, rec, redis.call('ZCARD', KEYS[3])}
end
local stale = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[3], '-', '+', 1)
if #stale > 0 then
  local entry = stale[1][1]
  local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], entry)
  if #claimed > 0 and claimed[1] and claimed[1][2] then
    return taken(claimed[1][2][2], entry, 'reclaimed', stale[1][2])
  end
  -- the entry vanished under the pending list: drop the dangling lease
  redis.call('XACK', KEYS[1], ARGV[1], entry)
end
local entry, jobid = take_first(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
if not entry then return false end
announce(ARGV[4], ARGV[6], ARGV[5] .. ' -')
return taken(jobid, entry, 'new', '')
"""

# KEYS: q, qid   ARGV: group, consumer, jobid. Resets the lease's idle time; 0 if it was lost.
RENEW = OWNED_FN + """
local entry = owned(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
if not entry then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, entry, 'JUSTID')
return 1
"""

# KEYS: q, qid   ARGV: group, consumer, jobid. The stage is done with the job.
ACK = OWNED_FN + """
local entry = owned(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
if not entry then return 0 end
redis.call('XACK', KEYS[1], ARGV[1], entry)
redis.call('XDEL', KEYS[1], entry)
redis.call('HDEL', KEYS[2], ARGV[3])
return 1
"""

# Give a taken job back at once (its lease marked as run out), e.g. when the taker was
# cancelled right as the job reached it. KEYS: q, qid   ARGV: group, consumer, jobid, idle ms,
# queues channel, stage, writer's tag
HAND_BACK = ANNOUNCE_FN + OWNED_FN + """
local entry = owned(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
if not entry then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, entry, 'IDLE', ARGV[4], 'JUSTID')
announce(ARGV[5], ARGV[7], ARGV[6] .. ' +')
return 1
"""

# KEYS: q, qid, wait   ARGV: jobid, queues channel, stage, writer's tag. Only a waiting job can be
# removed.
REMOVE = ANNOUNCE_FN + """
if redis.call('ZREM', KEYS[3], ARGV[1]) == 0 then return 0 end
local entry = redis.call('HGET', KEYS[2], ARGV[1])
if entry then redis.call('XDEL', KEYS[1], entry) end
redis.call('HDEL', KEYS[2], ARGV[1])
announce(ARGV[2], ARGV[4], ARGV[3] .. ' -')
return 1
"""

# Forget ended jobs, each once however many processes sweep at the same moment: a member
# another sweep already removed is skipped, so the status counts are decremented once.
# KEYS: ended, created, counts   ARGV: job key prefix ("P job:"), events key prefix ("P ev:"),
# facts key prefix ("P dlv:"), per-owner created index prefix ("P created:"), then the members
# ("<status>|<job id>") to forget. Like TAKE, it builds keys it was not given (same slot).
EXPIRE_ENDED = """
local gone = 0
for i = 5, #ARGV do
  local member = ARGV[i]
  if redis.call('ZREM', KEYS[1], member) == 1 then
    local sep = string.find(member, '|', 1, true)
    local status, id = string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
    local owner = redis.call('HGET', ARGV[1] .. id, 'owner')
    if owner and owner ~= '' then redis.call('ZREM', ARGV[4] .. owner, id) end
    redis.call('DEL', ARGV[1] .. id, ARGV[2] .. id, ARGV[3] .. id)
    redis.call('ZREM', KEYS[2], id)
    redis.call('HINCRBY', KEYS[3], status, -1)
    gone = gone + 1
  end
end
return gone
"""
