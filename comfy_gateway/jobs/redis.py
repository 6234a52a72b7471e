"""The Redis job store: the same protocol as the memory one, shared by any number of gateway
processes. Key layout and the atomic steps are in redis_lua.py; waking is in redis_notify.py;
key names and the job record format in redis_records.py; the stage queues (take, ack, renew,
hand back, positions, sizes) in redis_queues.py.

What Redis guarantees is used as it is: stage queues are Streams with one consumer group, so a
job taken by a process sits in the group's pending list (its lease) until acked; a lease idle
longer than LEASE_SECONDS is taken over by another process (XPENDING IDLE + XCLAIM in one
script); a worker busy longer renews it (XCLAIM to itself). State change and event are one Lua
script (compare-and-set on a version field), so no reader sees one without the other.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections import OrderedDict
from typing import Any

import orjson
from redis.asyncio import BlockingConnectionPool, Redis

from . import redis_lua as lua
from .events import JobEvent
from .job_locks import JobLocks
from .model import Job, JobStatus, Progress, WebhookState
from .redis_facts import RedisFacts
from .redis_history import RedisHistory
from .redis_notify import Notifier
from .redis_queues import GROUP, RedisQueues  # noqa: F401  (GROUP: still importable from here)
from .redis_records import _HEAVY, _Known
from .redis_taken import JustTaken
from .store import STAGES, EventFollower, KeyQueueFull, QueueFull, TransitionListener, notify_listeners
from .usage import usage_of


class RedisJobStore(RedisQueues, RedisFacts, RedisHistory):
    shared = True  # other processes use the same store and take over what a dead one held

    def __init__(self, redis: Redis, *, prefix: str = "comfy-gateway:", result_ttl: float = 86400,
                 lease_seconds: float = 30.0, consumer: str | None = None, usage_ttl: float = 90 * 86400):
        self.redis = redis
        self.prefix = prefix
        self.result_ttl = max(1, int(result_ttl))
        # Keys also expire on their own a while after the sweep should have removed them: a
        # safety net if no process sweeps (the sweep keeps counts and indexes right).
        self.key_ttl = self.result_ttl + 3600
        self.lease_seconds = lease_seconds
        self.usage_ttl_ms = max(1, int(usage_ttl * 1000))
        # One consumer per store instance (i.e. per process): its leases die with it.
        self.consumer = consumer or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._chan_events, self._chan_queues = prefix + "events", prefix + "queues"
        self._notify = Notifier(redis, self._chan_events, self._chan_queues, origin=uuid.uuid4().hex[:12])
        self._listeners: list[TransitionListener] = []
        self._known: OrderedDict[str, _Known] = OrderedDict()
        self._taken = JustTaken()
        self._drained: dict[str, int] = {}
        self._finished: dict[tuple[str, str], None] = {}
        self._locks = JobLocks()  # one change of a job at a time in this process
        self._scripts = {name: redis.register_script(getattr(lua, name))
                         for name in ("CREATE", "UPDATE", "PROGRESS", "ENQUEUE", "TAKE", "RENEW", "ACK", "HAND_BACK", "REMOVE",
                                     "EXPIRE_ENDED")}

    # -- life ---------------------------------------------------------------------------------
    async def start(self) -> None:
        for stage in STAGES:
            await self._ensure_group(stage)
        await self._notify.start()

    async def close(self) -> None:
        await self._notify.close()
        await self.redis.aclose()

    # -- jobs ---------------------------------------------------------------------------------
    async def create(self, job: Job, *, max_waiting: int | None = None, max_owned: int | None = None) -> Job:
        job.marks.setdefault("created", job.created_at)
        owner = job.owner or ""
        keys = [self._job(job.id), self._ev(job.id), *self._q("preprocess"),
                self._q("generation")[2], self._q("postprocess")[2], self.prefix + "qseq",
                self._q("generation")[1], self.prefix + "counts", self.prefix + "created",
                self.prefix + "active", self._created_by(owner)]
        args = [job.id, self._core(job), orjson.dumps(job.request),
                -1 if max_waiting is None else max_waiting,
                "status", job.status.value, job.message, repr(time.time()),
                self._chan_events, self._chan_queues, uuid.uuid4().hex,
                owner, -1 if max_owned is None or not owner else max_owned, job.priority, repr(job.created_at),
                self._notify.tag]
        res = await self._scripts["CREATE"](keys=keys, args=args)
        if res[0] == "exists":
            raise KeyError(job.id)
        if res[0] == "full":
            raise QueueFull(int(res[1]), max_waiting or 0)
        if res[0] == "owner_full":
            raise KeyQueueFull(owner, int(res[1]), max_owned or 0)
        self._notify.local_queue("preprocess", "+")
        self._notify.local_event(job.id)
        self._notify_listeners(job, None)
        return job

    async def get(self, job_id: str) -> Job | None:
        record = self._taken.record(job_id)  # read with the take a moment ago, if it just was
        if record is None:
            record = await self.redis.hmget(
                self._job(job_id), "v", "born", "core", "progress", "request", "workflow")
        v, born, core, progress, request, workflow = record
        if core is None:
            self._known.pop(job_id, None)
            return None
        job = self._decode(core, progress, request, workflow)
        self._remember(job, v, born, core, request, workflow, True)
        return job

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
        # Other processes are kept out by the compare-and-set.
        async with self._locks.hold(job_id):
            done = await self._change_locked(job_id, apply, ended_too, light, then_enqueue)
        if done is None:
            return None
        job, previous = done
        if previous is not None and job.status is not previous:
            self._notify_listeners(job, previous)
        return job

    async def _change_locked(self, job_id: str, apply, ended_too: bool, light: bool,
                             then_enqueue: str | None) -> tuple[Job, JobStatus | None] | None:
        queue_keys = [*self._q(then_enqueue)[1:], self.prefix + "qseq"] if then_enqueue else []
        queue_args = [then_enqueue, self._chan_queues] if then_enqueue else []
        # The stage handing the job over is done with it: its lease is acked in the same step.
        done_stage = STAGES[STAGES.index(then_enqueue) - 1] if then_enqueue in STAGES[1:] else None
        if done_stage is not None:
            queue_keys += self._q(done_stage)[:2]
            queue_args += [GROUP, self.consumer]
        for attempt in range(100):
            known = self._known.get(job_id) if attempt == 0 else None
            # The progress field is not read: a change writes it only when it set it itself.
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
            job = self._decode(core, None, request, workflow)
            progress_before = job.progress
            if job.status.terminal and not ended_too:
                return job, None
            was_terminal, previous = job.status.terminal, job.status
            outcome = apply(job)  # (event type or None, progress dict or None, heavy fields it set)
            event_type, progress, heavy = outcome
            terminal = job.status.terminal and not was_terminal
            new_core = self._core(job)
            new_workflow_json = orjson.dumps(job.workflow).decode() if "workflow" in heavy else ""
            new_request_json = orjson.dumps(job.request).decode() if "request" in heavy else ""
            usage = orjson.dumps(usage_of(job).to_json()) if terminal else ""
            new_progress = job.progress.model_dump_json() if job.progress is not progress_before and job.progress \
                else ""
            args = [v, new_core, new_workflow_json,
                    1 if event_type else 0, event_type or "", job.status.value, job.message,
                    repr(time.time()), orjson.dumps(progress) if progress is not None else "",
                    1 if terminal else 0, self.key_ttl, repr(job.finished_at or time.time()),
                    job_id, self._chan_events, previous.value, born or "",
                    job.owner or "", usage, self.usage_ttl_ms, self._notify.tag, new_progress,
                    new_request_json, *queue_args]
            res = await self._scripts["UPDATE"](
                keys=[self._job(job_id), self._ev(job_id), self.prefix + "ended", self.prefix + "counts",
                      self.prefix + "active", self.prefix + "usage", *queue_keys], args=args)
            if res == -1:
                self._known.pop(job_id, None)
                return None
            if res == -2:
                self._known.pop(job_id, None)  # someone wrote since: read afresh
                continue
            seq, queued, acked = res
            if acked:
                self._finished_here(done_stage or "", job_id)
            if seq:
                self._notify.local_event(job_id, "end" if terminal else "all")
            if queued:
                self._notify.local_queue(then_enqueue or "", "+")
            self._remember(job, str(int(v) + 1), born, new_core, new_request_json or request,
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
            event = job.apply_change(status=status, message=message, marks=marks, fields=fields)
            return event, None, _HEAVY & fields.keys()

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
            return None, None, ()

        await self._change(job_id, apply, ended_too=True)

    async def unfinished(self) -> list[str]:
        ids = []
        async for key in self.redis.scan_iter(match=self._job("*"), count=1000):
            job = await self.get(key[len(self._job("")):])
            if job is not None and not job.status.terminal:
                ids.append(job.id)
        return ids

    async def set_progress(self, job_id: str, progress: Progress) -> None:
        # One script writing the progress field and its event: the job record is neither read
        # nor encoded, and its version does not move (a progress frame never conflicts with a
        # change of state). In order per job: frames may come faster than Redis answers.
        async with self._locks.hold(job_id):
            seq = await self._scripts["PROGRESS"](
                keys=[self._job(job_id), self._ev(job_id)],
                args=[progress.model_dump_json(), repr(time.time()), self._chan_events, job_id, self._notify.tag])
        if seq and int(seq) > 0:
            self._notify.local_event(job_id, "progress")

    async def count_delivery(self, stage: str, job_id: str) -> int:
        counted = self._taken.delivery(stage, job_id)  # counted by the take itself
        return counted if counted is not None else await super().count_delivery(stage, job_id)

    # -- events -------------------------------------------------------------------------------
    async def events_after(self, job_id: str, seq: int) -> list[JobEvent]:
        entries = await self.redis.xrange(self._ev(job_id), min=f"{max(seq, 0) + 1}-0", max="+")
        return self._events(entries)

    def follow(self, job_id: str, after_seq: int = 0, *, wake: str = "all") -> EventFollower:
        return _Follower(self, job_id, after_seq, wake)

    async def wait(self, job_id: str, after_seq: int, *, queue_change: bool, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        fut = self._notify.watch(job_id, queue_change)  # before looking: no wake-up can slip by
        try:
            while True:
                last = await self.redis.hget(self._job(job_id), "seq")
                if last is None or int(last) > after_seq:
                    return
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                await asyncio.wait([fut], timeout=remaining)  # not wait_for: it can swallow a cancel
                if not fut.done():
                    return
                if queue_change:
                    return  # a queue moved: the caller asked to hear of that too
                # A job wake-up can be stale (a message published before we looked, delivered
                # after): watch again, then look again, instead of returning with nothing new.
                self._notify.unwatch(job_id, fut)
                fut = self._notify.watch(job_id, queue_change)
        finally:
            self._notify.unwatch(job_id, fut)

    # -- sweeping -----------------------------------------------------------------------------
    async def expire(self, older_than: float) -> int:
        ended = self.prefix + "ended"
        old = await self.redis.zrangebyscore(ended, "-inf", older_than)
        gone = 0
        for i in range(0, len(old), 500):
            gone += int(await self._scripts["EXPIRE_ENDED"](
                keys=[ended, self.prefix + "created", self.prefix + "counts"],
                args=[self._job(""), self._ev(""), self.prefix + "dlv:", self._created_by(""), *old[i:i + 500]]))
        await self._forget_idle_consumers()
        return gone


class _Follower:
    """Registered with the notifier for as long as it lives, so it reads the job's events once
    per wake-up: wait() must instead look at Redis before each sleep (a message could have come
    while it was not registered), two round trips per event."""

    def __init__(self, store: RedisJobStore, job_id: str, after_seq: int, wake: str = "all"):
        self._store, self._job_id, self.seq = store, job_id, after_seq
        self._flag = store._notify.follow(job_id, wake)  # set: the first next() reads at once

    async def next(self, timeout: float) -> list[JobEvent]:
        store = self._store
        deadline = time.monotonic() + timeout
        while True:
            if self._flag.is_set():
                # Cleared before reading: an event written after this read sets it again.
                self._flag.clear()
                entries = await store.redis.xrange(store._ev(self._job_id), min=f"{max(self.seq, 0) + 1}-0", max="+")
                events = store._events(entries)
                # Whether the job still exists only matters when nothing came (it expired).
                if events or not await store.redis.exists(store._job(self._job_id)):
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
    # A pool that makes a caller wait for a free connection instead of failing it: redis-py's
    # default pool raises "Too many connections" past 100 callers at once, and one job's
    # followers (or a burst of requests) are easily more.
    return Redis.from_pool(BlockingConnectionPool.from_url(url, max_connections=100, timeout=20, **kw))
