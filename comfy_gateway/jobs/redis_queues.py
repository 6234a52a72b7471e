"""The Redis job store's stage queues: taking a job (its lease), acking, renewing and handing
it back, and a job's place in line and the queue sizes. A part of RedisJobStore (redis.py).

A stage queue is a sorted set of waiting jobs (the order: priority, then arrival) plus a Stream
with one consumer group (GROUP) holding the leases of taken jobs; the atomic steps are the
scripts in redis_lua.py.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from .redis_notify import Notifier
from .redis_results import Taken
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
        self._drained: dict[str, int] = {}  # stage -> ring mark at a take that left no job waiting
        self._finished: dict[tuple[str, str], None] = {}  # (stage, job id) acked with its hand-over
        self._held: dict[str, str] = {}  # job id -> the stage whose lease of it this process holds

    def _lease(self, stage: str) -> list[str]:
        """The keys of a stage's leases: its stream and the job id -> entry id hash."""
        return [self._keys.stream(stage), self._keys.entries(stage)]

    def _queue(self, stage: str) -> list[str]:
        return [*self._lease(stage), self._keys.waiting(stage)]

    def joining_keys(self, stage: str) -> list[str]:
        """The keys a script needs to put a job in the stage's queue (redis_lua.py enqueue)."""
        return [self._keys.entries(stage), self._keys.waiting(stage), self._keys.qseq]

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
        if await self._scripts["ENQUEUE"](keys=[*self.joining_keys(stage), self._keys.job(job_id)],
                                          args=[job_id, stage, self._keys.queues_channel, self._notify.tag]):
            self._notify.local_queue(stage, "+")

    async def dequeue(self, stage: str) -> str:
        # Woken by the queue channel when a job arrives; also every half lease, because a lease
        # running out is a matter of time that no message announces.
        while True:
            mark = self._notify.ring_mark(stage)
            # The last take left nobody waiting and no job was announced since: waiting for the
            # next announcement spares a take that would come back empty (once: a lease running
            # out is only found by looking).
            if self._drained.pop(stage, None) != mark:
                job_id = await self._take(stage)
                if job_id is not None:
                    return job_id
            await self._notify.wait_ring(stage, mark, timeout=self.lease_seconds / 2)

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
            return None
        self._taken.put(stage, taken.job_id, taken.deliveries, taken.record)
        self._held[taken.job_id] = stage
        if taken.waiting == 0:
            self._drained[stage] = mark
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
        """The stage's lease of the job was acked with its hand-over (redis.py _change): the
        worker's own ack() and renew() that may still come need no round trip."""
        self._finished[(stage, job_id)] = None
        if self._held.get(job_id) == stage:
            del self._held[job_id]
        while len(self._finished) > 4096:  # a worker stopped between hand-over and ack
            del self._finished[next(iter(self._finished))]

    async def renew(self, stage: str, job_id: str) -> bool:
        if (stage, job_id) in self._finished:
            return True  # done and acked: still ours to finish
        res = await self._scripts["RENEW"](keys=self._lease(stage), args=[GROUP, self.consumer, job_id])
        return bool(res)

    def held(self, job_id: str) -> str | None:
        """The stage whose lease of the job this process holds (took, and has not acked)."""
        return self._held.get(job_id)

    async def ack(self, stage: str, job_id: str) -> None:
        if self._held.get(job_id) == stage:
            del self._held[job_id]
        if (stage, job_id) in self._finished:
            del self._finished[(stage, job_id)]
            return  # acked with the hand-over
        await self._scripts["ACK"](keys=self._lease(stage), args=[GROUP, self.consumer, job_id])

    async def hand_back(self, stage: str, job_id: str) -> bool:
        """Make a job this process took available to any taker at once."""
        if self._held.get(job_id) == stage:
            del self._held[job_id]
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
