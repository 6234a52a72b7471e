"""The Redis job store: the same protocol as the memory one, shared by any number of gateway
processes. Key layout and the atomic steps are in redis_lua.py; waking is in redis_notify.py.

What Redis guarantees is used as it is: stage queues are Streams with one consumer group, so a
job taken by a process sits in the group's pending list (its lease) until acked; a lease idle
longer than LEASE_SECONDS is taken over by another process (XPENDING IDLE + XCLAIM in one
script); a worker busy longer renews it (XCLAIM to itself). State change and event are one Lua
script (compare-and-set on a version field), so no reader sees one without the other.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections import OrderedDict
from typing import Any, NamedTuple

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from . import redis_lua as lua
from .events import JobEvent
from .model import Job, JobStatus, Progress, WebhookState
from .redis_notify import Notifier
from .store import STAGES, EventFollower, QueueFull, TransitionListener, notify_listeners

log = logging.getLogger(__name__)

GROUP = "workers"
_HEAVY = {"request", "workflow"}  # written once, kept apart so the hot path rewrites little
_KNOWN_MAX = 1024  # job records remembered for compare-and-set without a read (see _Known)


class _Known(NamedTuple):
    """A job record as this process last read or wrote it, at version v of the job born as
    `born`. A change computed from it is written only if both still match (UPDATE checks), so
    a stale copy costs one failed attempt and a read, never a wrong write."""
    v: str
    born: str
    core: str
    request: str | None
    workflow: str | None
    full: bool  # request and workflow known (False after a read of the core alone)


class RedisJobStore:
    shared = True  # other processes use the same store and take over what a dead one held

    def __init__(self, redis: Redis, *, prefix: str = "comfy-gateway:", result_ttl: float = 86400,
                 lease_seconds: float = 30.0, consumer: str | None = None):
        self.redis = redis
        self.prefix = prefix
        self.result_ttl = max(1, int(result_ttl))
        # Keys also expire on their own a while after the sweep should have removed them: a
        # safety net if no process sweeps (the sweep keeps counts and indexes right).
        self.key_ttl = self.result_ttl + 3600
        self.lease_seconds = lease_seconds
        # One consumer per store instance (i.e. per process): its leases die with it.
        self.consumer = consumer or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._chan_events, self._chan_queues = prefix + "events", prefix + "queues"
        self._notify = Notifier(redis, self._chan_events, self._chan_queues)
        self._listeners: list[TransitionListener] = []
        self._known: OrderedDict[str, _Known] = OrderedDict()
        self._locks: dict[str, list[Any]] = {}  # job id -> [lock, users] while changes are under way
        self._scripts = {name: redis.register_script(getattr(lua, name))
                         for name in ("CREATE", "UPDATE", "ENQUEUE", "TAKE", "RENEW", "ACK", "HAND_BACK", "REMOVE")}

    # -- keys ---------------------------------------------------------------------------------
    def _job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def _ev(self, job_id: str) -> str:
        return f"{self.prefix}ev:{job_id}"

    def _q(self, stage: str) -> list[str]:
        return [f"{self.prefix}q:{stage}", f"{self.prefix}qid:{stage}", f"{self.prefix}wait:{stage}"]

    # -- life ---------------------------------------------------------------------------------
    async def start(self) -> None:
        for stage in STAGES:
            await self._ensure_group(stage)
        await self._notify.start()

    async def close(self) -> None:
        await self._notify.close()
        await self.redis.aclose()

    async def _ensure_group(self, stage: str) -> None:
        try:
            await self.redis.xgroup_create(self._q(stage)[0], GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # -- jobs ---------------------------------------------------------------------------------
    @staticmethod
    def _core(job: Job) -> str:
        return job.model_dump_json(exclude=_HEAVY)

    @staticmethod
    def _decode(core: str, request: str | None, workflow: str | None) -> Job:
        job = Job.model_validate_json(core)
        job.request = orjson.loads(request) if request else {}
        job.workflow = orjson.loads(workflow) if workflow else None
        return job

    async def create(self, job: Job, *, max_waiting: int | None = None) -> Job:
        job.marks.setdefault("created", job.created_at)
        keys = [self._job(job.id), self._ev(job.id), *self._q("preprocess"),
                self._q("generation")[2], self._q("postprocess")[2], self.prefix + "qseq",
                self._q("generation")[1], self.prefix + "counts", self.prefix + "created"]
        args = [job.id, self._core(job), orjson.dumps(job.request),
                -1 if max_waiting is None else max_waiting,
                "status", job.status.value, job.message, repr(time.time()),
                self._chan_events, self._chan_queues, uuid.uuid4().hex]
        res = await self._scripts["CREATE"](keys=keys, args=args)
        if res[0] == "exists":
            raise KeyError(job.id)
        if res[0] == "full":
            raise QueueFull(int(res[1]), max_waiting or 0)
        self._notify_listeners(job, None)
        return job

    async def get(self, job_id: str) -> Job | None:
        v, born, core, request, workflow = await self.redis.hmget(
            self._job(job_id), "v", "born", "core", "request", "workflow")
        if core is None:
            self._known.pop(job_id, None)
            return None
        job = self._decode(core, request, workflow)
        self._remember(job, v, born, core, request, workflow, True)
        return job

    def _remember(self, job: Job, v: str | None, born: str | None, core: str,
                  request: str | None, workflow: str | None, full: bool) -> None:
        # Only jobs still moving: an ended one changes rarely (webhook bookkeeping).
        if job.status.terminal or v is None or born is None:
            self._known.pop(job.id, None)
            return
        self._known[job.id] = _Known(v, born, core, request, workflow, full)
        self._known.move_to_end(job.id)
        while len(self._known) > _KNOWN_MAX:
            self._known.popitem(last=False)

    async def _change(self, job_id: str, apply, *, ended_too: bool = False, light: bool = False,
                      then_enqueue: str | None = None) -> Job | None:
        """Read the job, let `apply` change it and name its event, write both atomically;
        retried when another process wrote in between. None if the job does not exist.
        A job that ended is returned unchanged, unless `ended_too` (bookkeeping, no event).
        `light`: read the record without its request and workflow (for a change that needs
        neither; the job returned then lacks them). `then_enqueue`: a stage whose queue the
        job joins in the same step, unless the change ended it."""
        # One change of a job at a time in this process (e.g. a burst of progress frames): they
        # would otherwise all compute from the same version and retry each other in turns.
        # Other processes are kept out by the compare-and-set, as before.
        entry = self._locks.get(job_id)
        if entry is None:
            entry = self._locks[job_id] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                done = await self._change_locked(job_id, apply, ended_too, light, then_enqueue)
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                self._locks.pop(job_id, None)
        if done is None:
            return None
        job, previous = done
        if previous is not None and job.status is not previous:
            self._notify_listeners(job, previous)
        return job

    async def _change_locked(self, job_id: str, apply, ended_too: bool, light: bool,
                             then_enqueue: str | None) -> tuple[Job, JobStatus | None] | None:
        queue_keys = [*self._q(then_enqueue), self.prefix + "qseq"] if then_enqueue else []
        queue_args = [then_enqueue, self._chan_queues] if then_enqueue else []
        for attempt in range(100):
            known = self._known.get(job_id) if attempt == 0 else None
            if known is not None and (light or known.full):
                # What this process last read or wrote: no read, the script checks it is current.
                v, born, core, request, workflow, full = known
            elif light:
                v, born, core = await self.redis.hmget(self._job(job_id), "v", "born", "core")
                request = workflow = None
                full = False
            else:
                v, born, core, request, workflow = await self.redis.hmget(
                    self._job(job_id), "v", "born", "core", "request", "workflow")
                full = True
            if core is None:
                self._known.pop(job_id, None)
                return None
            job = self._decode(core, request, workflow)
            if job.status.terminal and not ended_too:
                return job, None
            was_terminal, previous = job.status.terminal, job.status
            outcome = apply(job)  # (event type or None, progress dict or None, workflow changed)
            event_type, progress, new_workflow = outcome
            terminal = job.status.terminal and not was_terminal
            new_core = self._core(job)
            new_workflow_json = orjson.dumps(job.workflow).decode() if new_workflow else ""
            args = [v, new_core, new_workflow_json,
                    1 if event_type else 0, event_type or "", job.status.value, job.message,
                    repr(time.time()), orjson.dumps(progress) if progress is not None else "",
                    1 if terminal else 0, self.key_ttl, repr(job.finished_at or time.time()),
                    job_id, self._chan_events, previous.value, born or "", *queue_args]
            res = await self._scripts["UPDATE"](
                keys=[self._job(job_id), self._ev(job_id), self.prefix + "ended", self.prefix + "counts",
                      *queue_keys], args=args)
            if res == -1:
                self._known.pop(job_id, None)
                return None
            if res == -2:
                self._known.pop(job_id, None)  # someone wrote since: read afresh
                continue
            self._remember(job, str(int(v) + 1), born, new_core, request,
                           new_workflow_json or workflow, full)
            return job, previous
        raise RuntimeError(f"job {job_id}: too many concurrent writers")

    async def update(
        self, job_id: str, *, status: JobStatus | None = None, message: str | None = None,
        marks: dict[str, float] | None = None, **fields: Any,
    ) -> Job:
        return await self._update(job_id, None, status=status, message=message, marks=marks, **fields)

    async def advance(
        self, job_id: str, stage: str, *, status: JobStatus, message: str | None = None,
        marks: dict[str, float] | None = None, **fields: Any,
    ) -> Job:
        return await self._update(job_id, stage, status=status, message=message, marks=marks, **fields)

    async def _update(
        self, job_id: str, then_enqueue: str | None, *, status: JobStatus | None = None,
        message: str | None = None, marks: dict[str, float] | None = None, **fields: Any,
    ) -> Job:
        def apply(job: Job):
            if status is not None and status != job.status:
                job.transition(status)
            if message is not None:
                job.message = message
            if marks:
                job.marks.update(marks)
            for key, value in fields.items():
                setattr(job, key, value)
            job.updated_at = time.time()
            event = None
            if status is not None or message is not None:
                event = "final_result" if job.status.terminal else "status"
            return event, None, "workflow" in fields

        job = await self._change(job_id, apply, then_enqueue=then_enqueue)
        if job is None:
            raise KeyError(job_id)
        return job

    def add_listener(self, listener: TransitionListener) -> None:
        # Called in the process that applied the change (the write that won the compare-and-set),
        # so each change is seen once across all processes.
        self._listeners.append(listener)

    def _notify_listeners(self, job: Job, previous: JobStatus | None) -> None:
        notify_listeners(self._listeners, job, previous)

    async def recent(self, limit: int) -> list[Job]:
        ids = await self.redis.zrevrange(self.prefix + "created", 0, max(limit, 1) - 1)
        jobs = [await self.get(job_id) for job_id in ids]
        return [j for j in jobs if j is not None][:limit]

    async def status_counts(self) -> dict[str, int]:
        counts = await self.redis.hgetall(self.prefix + "counts")
        return {s.value: max(int(counts.get(s.value, 0)), 0) for s in JobStatus}

    async def set_webhook(self, job_id: str, state: WebhookState) -> None:
        def apply(job: Job):
            job.webhook = state
            job.updated_at = time.time()
            return None, None, False

        await self._change(job_id, apply, ended_too=True)

    async def unfinished(self) -> list[str]:
        ids = []
        async for key in self.redis.scan_iter(match=self._job("*"), count=1000):
            job = await self.get(key[len(self._job("")):])
            if job is not None and not job.status.terminal:
                ids.append(job.id)
        return ids

    async def set_progress(self, job_id: str, progress: Progress) -> None:
        def apply(job: Job):
            job.progress = progress
            return "progress", progress.model_dump(), False

        await self._change(job_id, apply, light=True)  # touches neither request nor workflow

    # -- events -------------------------------------------------------------------------------
    async def events_after(self, job_id: str, seq: int) -> list[JobEvent]:
        entries = await self.redis.xrange(self._ev(job_id), min=f"{max(seq, 0) + 1}-0", max="+")
        return self._events(entries)

    @staticmethod
    def _events(entries) -> list[JobEvent]:
        return [
            JobEvent(seq=int(f["seq"]), type=f["type"], status=f["status"], message=f["message"],
                     time=float(f["time"]), progress=orjson.loads(f["progress"]) if f.get("progress") else None)
            for _, f in entries
        ]

    def follow(self, job_id: str, after_seq: int = 0) -> EventFollower:
        return _Follower(self, job_id, after_seq)

    async def wait(self, job_id: str, after_seq: int, *, queue_change: bool, timeout: float) -> None:
        fut = self._notify.watch(job_id, queue_change)  # before looking: no wake-up can slip by
        try:
            last = await self.redis.hget(self._job(job_id), "seq")
            if last is None or int(last) > after_seq:
                return
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self._notify.unwatch(job_id, fut)

    # -- queues -------------------------------------------------------------------------------
    async def enqueue(self, stage: str, job_id: str) -> None:
        await self._scripts["ENQUEUE"](keys=[*self._q(stage)[:3], self.prefix + "qseq"],
                                       args=[job_id, stage, self._chan_queues])

    async def dequeue(self, stage: str) -> str:
        # Woken by the queue channel when a job arrives; also every half lease, because a lease
        # running out is a matter of time that no message announces.
        while True:
            mark = self._notify.ring_mark(stage)
            job_id = await self._take(stage)
            if job_id is not None:
                return job_id
            await self._notify.wait_ring(stage, mark, timeout=self.lease_seconds / 2)

    async def _take(self, stage: str) -> str | None:
        call = asyncio.ensure_future(self._take_once(stage))
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            # The script may already have given us the job: hand it back rather than leave it
            # stuck under our name until the lease runs out.
            def give_back(done: asyncio.Future[str | None]) -> None:
                if not done.cancelled() and done.exception() is None and done.result():
                    asyncio.ensure_future(self.hand_back(stage, done.result()))

            call.add_done_callback(give_back)
            raise

    async def _take_once(self, stage: str) -> str | None:
        args = [GROUP, self.consumer, int(self.lease_seconds * 1000), self._chan_queues, stage]
        try:
            res = await self._scripts["TAKE"](keys=self._q(stage), args=args)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self._ensure_group(stage)  # the stream was deleted under us (FLUSHDB)
            return None
        if not res:
            return None
        job_id, _, how, previous = res
        if how == "reclaimed":
            log.warning("%s: took over job %s from %s, whose lease ran out", stage, job_id, previous)
        return job_id

    async def renew(self, stage: str, job_id: str) -> bool:
        res = await self._scripts["RENEW"](keys=self._q(stage)[:2], args=[GROUP, self.consumer, job_id])
        return bool(res)

    async def ack(self, stage: str, job_id: str) -> None:
        await self._scripts["ACK"](keys=self._q(stage)[:2], args=[GROUP, self.consumer, job_id])

    async def hand_back(self, stage: str, job_id: str) -> bool:
        """Make a job this process took available to any taker at once."""
        idle = int(self.lease_seconds * 1000) * 10 + 1
        res = await self._scripts["HAND_BACK"](
            keys=self._q(stage)[:2], args=[GROUP, self.consumer, job_id, idle, self._chan_queues, stage])
        return bool(res)

    async def hand_back_all(self) -> int:
        """Give every job this process holds back to the other processes at once (shutdown)."""
        count = 0
        for stage in STAGES:
            try:
                held = await self.redis.xpending_range(self._q(stage)[0], GROUP, "-", "+", 10000,
                                                       consumername=self.consumer)
            except ResponseError:
                continue
            for entry in held:
                found = await self.redis.xrange(self._q(stage)[0], entry["message_id"], entry["message_id"])
                if found and await self.hand_back(stage, found[0][1]["job"]):
                    count += 1
        if count:
            log.info("handed %d job(s) back to the other processes", count)
        return count

    async def remove_from_queue(self, stage: str, job_id: str) -> bool:
        return bool(await self._scripts["REMOVE"](keys=self._q(stage), args=[job_id, self._chan_queues, stage]))

    async def position(self, stage: str, job_id: str) -> int | None:
        return await self.redis.zrank(self._q(stage)[2], job_id)

    async def queue_sizes(self) -> dict[str, int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for stage in STAGES:
                pipe.zcard(self._q(stage)[2])
            sizes = await pipe.execute()
        return dict(zip(STAGES, (int(s) for s in sizes)))

    async def expire(self, older_than: float) -> int:
        ended = self.prefix + "ended"
        old = await self.redis.zrangebyscore(ended, "-inf", older_than)
        for i in range(0, len(old), 500):
            members = old[i:i + 500]
            chunk = [m.partition("|")[2] for m in members]
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(*[self._job(j) for j in chunk], *[self._ev(j) for j in chunk])
                pipe.zrem(ended, *members)
                pipe.zrem(self.prefix + "created", *chunk)
                for m in members:
                    pipe.hincrby(self.prefix + "counts", m.partition("|")[0], -1)
                await pipe.execute()
        await self._forget_idle_consumers()
        return len(old)

    async def _forget_idle_consumers(self, idle_ms: int = 3600_000) -> None:
        # Every process start adds a consumer name to each group; drop the long-idle ones that
        # hold no lease, so XINFO stays readable.
        for stage in STAGES:
            try:
                consumers = await self.redis.xinfo_consumers(self._q(stage)[0], GROUP)
            except ResponseError:
                continue
            for c in consumers:
                if c.get("pending") == 0 and c.get("idle", 0) > idle_ms and c.get("name") != self.consumer:
                    await self.redis.xgroup_delconsumer(self._q(stage)[0], GROUP, c["name"])


class _Follower:
    """Registered with the notifier for as long as it lives, so it reads the job's events once
    per wake-up: wait() must instead look at Redis before each sleep (a message could have come
    while it was not registered), two round trips per event."""

    def __init__(self, store: RedisJobStore, job_id: str, after_seq: int):
        self._store, self._job_id, self.seq = store, job_id, after_seq
        self._flag = store._notify.follow(job_id)  # set: the first next() reads at once

    async def next(self, timeout: float) -> list[JobEvent]:
        store = self._store
        deadline = time.monotonic() + timeout
        while True:
            if self._flag.is_set():
                # Cleared before reading: an event written after this read sets it again.
                self._flag.clear()
                async with store.redis.pipeline(transaction=False) as pipe:
                    pipe.xrange(store._ev(self._job_id), min=f"{max(self.seq, 0) + 1}-0", max="+")
                    pipe.exists(store._job(self._job_id))
                    entries, exists = await pipe.execute()
                events = store._events(entries)
                if events or not exists:
                    self.seq += len(events)
                    return events
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            try:
                await asyncio.wait_for(self._flag.wait(), remaining)
            except asyncio.TimeoutError:
                return []

    def close(self) -> None:
        self._store._notify.unfollow(self._job_id, self._flag)


def connect(url: str, password: str | None = None) -> Redis:
    """A client from a URL; a password given apart never appears in the URL (or in logs)."""
    kw: dict[str, Any] = {"decode_responses": True, "health_check_interval": 30}
    if password:
        kw["password"] = password
    return Redis.from_url(url, **kw)
