"""The Redis job store's stage queues: taking a job (its lease), acking, renewing and handing
it back, and a job's place in line and the queue sizes. A part of RedisJobStore (redis.py).

A stage queue is a sorted set of waiting jobs (the order: priority, then arrival) plus a Stream
with one consumer group (GROUP) holding the leases of taken jobs; the atomic steps are the
scripts in redis_lua.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from .redis_carried import CARRY_BACKLOG, CARRY_FOR
from .redis_handoff import Handoffs
from .redis_notify import Notifier
from .redis_results import Handed, Record, Taken
from .redis_taken import JustTaken
from .redis_keys import RedisKeys
from .store import STAGES

# The store's own logger, as before the queues moved here: log settings that name it still apply.
log = logging.getLogger("comfy_gateway.jobs.redis")

GROUP = "workers"
PRIORITY_STEP = 2**40  # as in redis_lua.py: a waiting job's score is -priority * 2^40 + sequence


class StageQueues:
    """The stage queues of one deployment as one process sees them: what it takes, holds,
    acks and hands back, as consumer `consumer` of each stage's group."""

    def __init__(self, redis: Redis, keys: RedisKeys, notify: Notifier, scripts: dict[str, Any],
                 taken: JustTaken, *, consumer: str, lease_seconds: float, key_ttl: int):
        self._redis, self._keys, self._notify, self._scripts, self._taken = redis, keys, notify, scripts, taken
        self.consumer, self.lease_seconds, self._key_ttl = consumer, lease_seconds, key_ttl
        # stage -> the ring mark at which a look found, or a take left, no job waiting there: until
        # the ring moves (a job announced), another look would come back empty.
        self._empty_at: dict[str, int] = {}
        self._looked_at: dict[str, float] = {}  # stage -> when a take last looked there (monotonic)
        self._carried: dict[str, tuple[str, str]] = {}  # job id -> (stage, stage whose lease it has)
        self._finished: dict[tuple[str, str], None] = {}  # (stage, job id) acked with its hand-over
        self._held: dict[str, str] = {}  # job id -> the stage whose lease of it this process holds
        self._handoffs = Handoffs()  # jobs queued and taken for our idle takers in one step
        # How many carried hand-overs may wait for a busy taker here, and for how long at most
        # (redis_carried.py): attributes, so that a test can widen them.
        self.carry_backlog, self.carry_fresh = CARRY_BACKLOG, CARRY_FOR

    def _lease(self, stage: str) -> list[str]:
        """The keys of a stage's leases: its stream and the job id -> entry id hash."""
        return [self._keys.stream(stage), self._keys.entries(stage)]

    def _queue(self, stage: str) -> list[str]:
        return [*self._lease(stage), self._keys.waiting(stage)]

    def joining_keys(self, stage: str) -> list[str]:
        """The keys a script needs to put a job in the stage's queue and perhaps take it at
        once (redis_lua.py UPDATE)."""
        return [self._keys.entries(stage), self._keys.waiting(stage), self._keys.qseq, self._keys.stream(stage)]

    # -- hand-overs to this process's idle takers (redis_handoff.py) ----------------------------
    def reserve(self, stage: str) -> int | None:
        """Before a script that queues a job in the stage: may it take the job for one of our
        idle takers? If so, the stage's ring mark now (see `settle`), else None."""
        return self._notify.ring_mark(stage) if self._handoffs.reserve(stage) else None

    def idle_taker(self, stage: str):
        """A context in which one more taker of the stage waits idle here (dequeue's wait)."""
        return self._handoffs.idle(stage)

    def hand_args(self) -> list[Any]:
        """What a queueing script needs to take a job for this consumer: group, consumer,
        delivery counts key prefix, their ttl (enqueue's `hand`)."""
        return [GROUP, self.consumer, self._keys.deliveries(""), self._key_ttl]

    def settle(self, stage: str, job_id: str, reserved: int | None, queued: bool | Handed,
               record: Record | None) -> None:
        """What a script that may have queued job `job_id` in the stage did: `reserved`, what
        `reserve` said before it; `queued`, what its enqueue returned (False also when it
        did not run or failed); `record`, the job as the script left it (but its progress, which
        the script returns), for the first get() of the taker it is handed to, if known."""
        if reserved is not None:
            self._handoffs.settle(stage)
        if not isinstance(queued, Handed):
            if queued:
                self._notify.local_queue(stage, "+")
            return
        taken = queued.job_id  # (another one only from an old store's unread entry)
        if record is not None and taken == job_id:
            record = dataclasses.replace(record, progress=queued.progress)
        self._held[taken] = stage
        # Nobody else waited in the queue (or the job would have waited behind them); if no job
        # was announced since either, the queue is as a take that emptied it leaves it.
        self._into_box(stage, taken, queued.deliveries, record if taken == job_id else None,
                       emptied=self._notify.ring_mark(stage) == reserved)

    def _into_box(self, stage: str, job_id: str, deliveries: int, record: Record | None, emptied: bool) -> None:
        """The job goes to an idle taker of the stage here, through the box (redis_handoff.py);
        `emptied`: the stage's queue is known to be empty, so the next look waits for an
        announcement instead of taking."""
        self._taken.put(stage, job_id, deliveries, record)
        self._handoffs.put(stage, job_id)
        self._notify.local_queue(stage, "+")  # wakes one idle taker, which looks in the box first
        if emptied:
            self._empty_at[stage] = self._notify.ring_mark(stage)

    # -- hand-overs kept unwritten (redis_carried.py) -------------------------------------------
    def may_carry(self, stage: str, job_id: str) -> bool:
        """May the job go to a taker of the stage here without a write, under the lease of the
        stage before, which this process holds? Only while the stage's queue is known to be
        empty (no job announced since a look found it so), so that it overtakes nobody, and
        while a taker here is idle or they come back quickly (Handoffs.may_wait)."""
        source = STAGES[STAGES.index(stage) - 1]
        return (self._held.get(job_id) == source and self._empty_at.get(stage) == self._notify.ring_mark(stage)
                and self._handoffs.may_wait(stage, self.carry_backlog, self.carry_fresh))

    def carry(self, stage: str, job_id: str) -> None:
        """Give the job to the next taker of the stage here (may_carry said so): its lease stays
        the stage before's, renewed and acked under that stage's name from now on."""
        source = STAGES[STAGES.index(stage) - 1]
        self._carried[job_id] = (stage, source)
        while len(self._carried) > 4096:  # a taker stopped before its ack
            del self._carried[next(iter(self._carried))]
        self._into_box(stage, job_id, 1, None, emptied=True)  # its first delivery to the stage

    def _lease_of(self, stage: str, job_id: str) -> str | None:
        """The stage whose lease stands for the stage's hold of the job: its own, or the one
        before's for a carried job; None when the stage passed its lease on by carrying it."""
        carried = self._carried.get(job_id)
        if carried is None:
            return stage
        into, source = carried
        if stage == into:
            return source
        return None if stage == source else stage

    def lease_keys(self, stage: str) -> list[str]:
        """The keys a script needs to ack the stage's lease (redis_lua.py UPDATE)."""
        return self._lease(stage)

    async def start(self) -> None:
        for stage in STAGES:
            await self._ensure_group(stage)

    async def _ensure_group(self, stage: str) -> None:
        try:
            await self._redis.xgroup_create(self._keys.stream(stage), GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # -- queues -------------------------------------------------------------------------------
    async def enqueue(self, stage: str, job_id: str) -> None:
        keys = [self._keys.entries(stage), self._keys.waiting(stage), self._keys.qseq, self._keys.job(job_id)]
        if await self._scripts["ENQUEUE"](keys=keys,
                                          args=[job_id, stage, self._keys.queues_channel, self._notify.tag]):
            self._notify.local_queue(stage, "+")

    async def dequeue(self, stage: str) -> str:
        # Woken by the queue channel when a job arrives; also every half lease, because a lease
        # running out is a matter of time that no message announces.
        while True:
            handed = await self._handed(stage)
            if handed is not None:
                return handed
            mark = self._notify.ring_mark(stage)
            # Nobody was waiting at the last look and no job was announced since: waiting for the
            # next announcement spares a take that would come back empty, for every taker coming
            # back from work. But a look at least every half lease: a lease running out is only
            # found by looking.
            stale = time.monotonic() - self._looked_at.get(stage, 0.0) >= self.lease_seconds / 2
            if stale or self._empty_at.get(stage) != mark:
                job_id = await self._take(stage)
                if job_id is not None:
                    return job_id
            with self.idle_taker(stage):
                await self._notify.wait_ring(stage, mark, timeout=self.lease_seconds / 2)

    async def _handed(self, stage: str) -> str | None:
        """A job handed to this process's takers of the stage, if one waits in the box."""
        while (got := self._handoffs.next(stage)) is not None:
            job_id, waited = got
            # Normally picked up at once. One that waited (every taker turned busy meanwhile)
            # is held under a lease nobody renewed: still ours only if the renewal says so.
            if waited < self.lease_seconds / 3 or await self.renew(stage, job_id):
                return job_id
            log.warning("%s: job %s was handed to this process but taken over before a worker was free",
                        stage, job_id)
            self._held.pop(job_id, None)
        return None

    async def _take(self, stage: str) -> str | None:
        call = asyncio.ensure_future(self.take_once(stage))
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            # The script may already have given us the job: hand it back rather than leave it
            # stuck under our name until the lease runs out.
            def give_back(done: asyncio.Future[str | None]) -> None:
                if not done.cancelled() and done.exception() is None and done.result():
                    asyncio.ensure_future(self._give_back(stage, done.result()))

            call.add_done_callback(give_back)
            raise

    async def take_once(self, stage: str) -> str | None:
        """One look for a job of the stage to take (a lease run out, else the first waiting)."""
        mark = self._notify.ring_mark(stage)  # announcements after this are not in `waiting`
        self._looked_at[stage] = time.monotonic()
        args = [GROUP, self.consumer, int(self.lease_seconds * 1000), self._keys.queues_channel, stage,
                self._notify.tag, self._keys.job(""), self._keys.deliveries(""), self._key_ttl]
        try:
            res = await self._scripts["TAKE"](keys=self._queue(stage), args=args)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self._ensure_group(stage)  # the stream was deleted under us (FLUSHDB)
            return None
        taken = Taken.parse(res)
        if taken is None:
            self._empty_at[stage] = mark
            return None
        self._taken.put(stage, taken.job_id, taken.deliveries, taken.record)
        self._notify.heard.listed(taken.job_id)  # the script listed this process (tell)
        self._held[taken.job_id] = stage
        if taken.waiting == 0:
            self._empty_at[stage] = mark
        if taken.how == "new":
            self._notify.local_queue(stage, "-")
        if taken.how == "reclaimed":
            log.warning("%s: took over job %s from %s, whose lease ran out", stage, taken.job_id, taken.previous)
        return taken.job_id

    async def _give_back(self, stage: str, job_id: str) -> None:
        """A job taken for a taker that was stopped before it got it: not a delivery."""
        if self._taken.delivery(stage, job_id) is not None:
            await self._redis.hincrby(self._keys.deliveries(job_id), stage, -1)
        self._taken.record(job_id)
        await self.hand_back(stage, job_id)

    def finished_here(self, stage: str, job_id: str) -> None:
        """The stage's lease of the job was acked with its hand-over (redis_changes.py): the
        worker's own ack() and renew() that may still come need no round trip."""
        self._finished[(stage, job_id)] = None
        if self._held.get(job_id) == stage:
            del self._held[job_id]
        while len(self._finished) > 4096:  # a worker stopped between hand-over and ack
            del self._finished[next(iter(self._finished))]

    async def renew(self, stage: str, job_id: str) -> bool:
        stage = self._lease_of(stage, job_id) or stage
        if (stage, job_id) in self._finished:
            return True  # done and acked: still ours to finish
        res = await self._scripts["RENEW"](keys=self._lease(stage), args=[GROUP, self.consumer, job_id])
        return bool(res)

    def held(self, job_id: str) -> str | None:
        """The stage whose lease of the job this process holds (took, and has not acked)."""
        return self._held.get(job_id)

    async def ack(self, stage: str, job_id: str) -> None:
        lease = self._lease_of(stage, job_id)
        if lease is None:
            return  # the job went on under this lease: its next holder acks it
        if lease != stage:
            del self._carried[job_id]
            stage = lease
        if self._held.get(job_id) == stage:
            del self._held[job_id]
        if (stage, job_id) in self._finished:
            del self._finished[(stage, job_id)]
            return  # acked with the hand-over
        await self._scripts["ACK"](keys=self._lease(stage), args=[GROUP, self.consumer, job_id])

    async def hand_back(self, stage: str, job_id: str) -> bool:
        """Make a job this process took available to any taker at once."""
        lease = self._lease_of(stage, job_id)
        if lease != stage:
            self._carried.pop(job_id, None)
            stage = lease or stage
        if self._held.get(job_id) == stage:
            del self._held[job_id]
        self._handoffs.drop(job_id)
        idle = int(self.lease_seconds * 1000) * 10 + 1
        res = await self._scripts["HAND_BACK"](
            keys=self._lease(stage), args=[GROUP, self.consumer, job_id, idle, self._keys.queues_channel, stage,
                                           self._notify.tag])
        if res:
            self._notify.local_queue(stage, "+")
        return bool(res)

    async def hand_back_all(self) -> int:
        """Give every job this process holds back to the other processes at once (shutdown)."""
        count = 0
        for stage in STAGES:
            try:
                held = await self._redis.xpending_range(self._keys.stream(stage), GROUP, "-", "+", 10000,
                                                       consumername=self.consumer)
            except ResponseError:
                continue
            for entry in held:
                found = await self._redis.xrange(self._keys.stream(stage), entry["message_id"], entry["message_id"])
                if found and await self.hand_back(stage, found[0][1]["job"]):
                    count += 1
        if count:
            log.info("handed %d job(s) back to the other processes", count)
        return count

    async def remove(self, stage: str, job_id: str) -> bool:
        removed = bool(await self._scripts["REMOVE"](keys=self._queue(stage),
                                                     args=[job_id, self._keys.queues_channel, stage, self._notify.tag]))
        if removed:
            self._notify.local_queue(stage, "-")
        return removed

    async def position(self, stage: str, job_id: str) -> int | None:
        return await self._redis.zrank(self._keys.waiting(stage), job_id)

    async def sizes(self, priority: int = 0) -> dict[str, int]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for stage in STAGES:
                if priority > 0:  # scores of priority p and above are below -(p - 1) * 2^40
                    pipe.zcount(self._keys.waiting(stage), "-inf", f"({-(priority - 1) * PRIORITY_STEP}")
                else:
                    pipe.zcard(self._keys.waiting(stage))
            sizes = await pipe.execute()
        return dict(zip(STAGES, (int(s) for s in sizes)))

    async def forget_idle_consumers(self, idle_ms: int = 3600_000) -> None:
        # Every process start adds a consumer name to each group; drop the long-idle ones that
        # hold no lease, so XINFO stays readable.
        for stage in STAGES:
            try:
                consumers = await self._redis.xinfo_consumers(self._keys.stream(stage), GROUP)
            except ResponseError:
                continue
            for c in consumers:
                if c.get("pending") == 0 and c.get("idle", 0) > idle_ms and c.get("name") != self.consumer:
                    await self._redis.xgroup_delconsumer(self._keys.stream(stage), GROUP, c["name"])
