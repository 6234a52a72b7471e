"""The Redis job store: the same protocol as the memory one, shared by any number of gateway
processes. It is the job records and their events (here), composed with parts of one reason
each: names (redis_keys.py), the record format (redis_records.py), the stage queues
(redis_queues.py) and their hand-overs within a process (redis_handoff.py), progress frames
(redis_progress.py), reads (redis_reads.py), schedules and delivery counts (redis_facts.py), history and usage
(redis_history.py), what this process wrote of a job (redis_written.py); the client
(redis_connect.py). Scripts: redis_lua.py; waking: redis_notify.py.

What Redis guarantees is used as it is: stage queues are Streams with one consumer group, so a
job taken by a process sits in the group's pending list (its lease) until acked; a lease idle
longer than LEASE_SECONDS is taken over by another process (XPENDING IDLE + XCLAIM in one
script); a worker busy longer renews it (XCLAIM to itself). State change and event are one Lua
script (compare-and-set on a version field), so no reader sees one without the other.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from typing import Any, Callable

import orjson
from redis.asyncio import Redis

from . import redis_lua as lua
from .events import JobEvent
from .job_locks import JobLocks
from .model import InvalidTransition, Job, JobStatus, Progress, WebhookState
from .facts import Schedule
from .history import HistoryPage, HistoryQuery
from .redis_connect import connect  # noqa: F401  (the store and its client, from one import)
from .redis_facts import RedisFacts
from .redis_history import RedisHistory
from .redis_keys import RedisKeys
from .redis_notify import Notifier
from .redis_progress import ProgressWriter
from .redis_reads import JobReads
from .redis_queues import StageQueues
from .redis_records import _HEAVY, Change, KnownRecords, decode_job, encode_core
from .redis_results import Changed, Created, Record, Updated, parse_update
from .redis_taken import JustTaken
from .redis_written import WrittenHere
from .following import JobEvents, Wake
from .store import STAGES, KeyQueueFull, QueueFull, TransitionListener, notify_listeners
from .usage import UsageRecord, usage_of


class RedisJobStore:
    shared = True  # other processes use the same store and take over what a dead one held

    def __init__(self, redis: Redis, *, prefix: str = "comfy-gateway:", result_ttl: float = 86400,
                 lease_seconds: float = 30.0, consumer: str | None = None, usage_ttl: float = 90 * 86400):
        self.redis = redis
        self.prefix = prefix
        self.keys = RedisKeys(prefix)
        self.result_ttl = max(1, int(result_ttl))
        # Keys also expire on their own a while after the sweep should have removed them: a
        # safety net if no process sweeps (the sweep keeps counts and indexes right).
        self.key_ttl = self.result_ttl + 3600
        self.lease_seconds = lease_seconds
        self.usage_ttl_ms = max(1, int(usage_ttl * 1000))
        # One consumer per store instance (i.e. per process): its leases die with it.
        self.consumer = consumer or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        keys = self.keys
        self._notify = Notifier(redis, keys.events_channel, keys.queues_channel, origin=uuid.uuid4().hex[:12])
        self._listeners: list[TransitionListener] = []
        self._known = KnownRecords()
        self._taken = JustTaken()
        self._written = WrittenHere()  # jobs whose every write was this process's (the end's readers)
        self._locks = JobLocks()  # one change of a job at a time in this process
        self._scripts = {name: redis.register_script(getattr(lua, name))
                         for name in ("CREATE", "UPDATE", "PROGRESS", "ENQUEUE", "TAKE", "RENEW", "ACK", "HAND_BACK", "REMOVE",
                                     "EXPIRE_ENDED")}
        self.queues = StageQueues(redis, keys, self._notify, self._scripts, self._taken, consumer=self.consumer,
                                  lease_seconds=lease_seconds, key_ttl=self.key_ttl)
        self.facts = RedisFacts(redis, keys, self.key_ttl)
        self.ledger = RedisHistory(redis, keys, self._scripts["EXPIRE_ENDED"])
        self.reads = JobReads(redis, keys, self._written)
        self._progress = ProgressWriter(self._scripts["PROGRESS"], keys, self._notify, self._locks, self._taken,
                                        self._written)

    # -- life ---------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.queues.start()
        await self._notify.start()

    async def close(self) -> None:
        await self._progress.close()
        await self._notify.close()
        await self.redis.aclose()

    # -- jobs ---------------------------------------------------------------------------------
    async def create(self, job: Job, *, max_waiting: int | None = None, max_owned: int | None = None) -> Job:
        job.marks.setdefault("created", job.created_at)
        owner = job.owner or ""
        k = self.keys
        keys = [k.job(job.id), k.events(job.id), k.stream("preprocess"), k.entries("preprocess"),
                k.waiting("preprocess"), k.waiting("generation"), k.waiting("postprocess"), k.qseq,
                k.entries("generation"), k.counts, k.created, k.active, k.created_by(owner), k.deadlines]
        born, core, request, now = uuid.uuid4().hex, encode_core(job), orjson.dumps(job.request).decode(), time.time()
        args = [job.id, core, request, -1 if max_waiting is None else max_waiting,
                "status", job.status.value, job.message, repr(now), k.events_channel, k.queues_channel, born,
                owner, -1 if max_owned is None or not owner else max_owned, job.priority, repr(job.created_at),
                self._notify.tag, repr(job.deadline) if job.deadline is not None else ""]
        hand = self.queues.reserve("preprocess")  # an idle preprocess taker here gets it at once
        created = None
        try:
            created = Created.parse(await self._scripts["CREATE"](
                keys=keys, args=args if hand is None else [*args, *self.queues.hand_args()]))
        finally:
            self.queues.settle("preprocess", job.id, hand, created.queued if created else False,
                               Record("1", born, core, None, request, None))
        if created.outcome == "exists":
            raise KeyError(job.id)
        if created.outcome == "full":
            raise QueueFull(created.count, max_waiting or 0)
        if created.outcome == "owner_full":
            raise KeyQueueFull(owner, created.count, max_owned or 0)
        self._written.created(job.id, born, core, request, job.status.value, job.message, now)
        self._notify.local_event(job.id)
        self._notify_listeners(job, None)
        return job

    async def get(self, job_id: str) -> Job | None:
        record = self._taken.record(job_id)  # read a moment ago with a take or events, if it was
        if record is None:
            record = await self.reads.record(job_id)
        return self._job_of(job_id, record)

    def _job_of(self, job_id: str, record: Record) -> Job | None:
        if record.core is None:
            self._known.forget(job_id)
            return None
        job = decode_job(record.core, record.progress, record.request, record.workflow)
        self._known.remember(job, record.v, record.born, record.core, record.request, record.workflow, True)
        return job

    async def status(self, job_id: str) -> JobStatus | None:
        status = await self.redis.hget(self.keys.job(job_id), "st")  # kept beside the record
        if status is None:  # gone, or written before the field existed
            job = await self.get(job_id)
            return job.status if job is not None else None
        return JobStatus(status)

    async def _change(self, job_id: str, apply: Callable[[Job], Change], *, ended_too: bool = False, light: bool = False,
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
            waiting = self._progress.take(job_id)  # progress frames that go with this change
            try:
                done = await self._change_locked(job_id, apply, ended_too, light, then_enqueue,
                                                 waiting.frames if waiting else [])
            finally:
                if waiting:
                    waiting.done()
        if done is None:
            return None
        if done.previous is not None and done.job.status is not done.previous:
            self._notify_listeners(done.job, done.previous)
        return done.job

    async def _change_locked(self, job_id: str, apply: Callable[[Job], Change], ended_too: bool, light: bool,
                             then_enqueue: str | None, frames: list[str]) -> Changed | None:
        k = self.keys
        queue_keys = self.queues.joining_keys(then_enqueue) if then_enqueue else []
        queue_args = [then_enqueue, k.queues_channel] if then_enqueue else ["", ""]
        # The stage handing the job over is done with it: its lease is acked in the same step.
        handing_over = STAGES[STAGES.index(then_enqueue) - 1] if then_enqueue in STAGES[1:] else None
        for attempt in range(100):
            # What this process last read or wrote, if it has all the change needs: no read, the
            # script checks it is current. The progress field is never read: a change writes it
            # only when it set it itself.
            known = self._known.get(job_id) if attempt == 0 else None
            if known is not None and (light or known.full):
                v, born, core, request, workflow, full = \
                    known.v, known.born, known.core, known.request, known.workflow, known.full
            elif light:
                v, born, core = await self.redis.hmget(k.job(job_id), "v", "born", "core")
                request = workflow = None
                full = False
            else:
                v, born, core, request, workflow = await self.redis.hmget(
                    k.job(job_id), "v", "born", "core", "request", "workflow")
                full = True
            if core is None:
                self._known.forget(job_id)
                return None
            job = decode_job(core, None, request, workflow)
            progress_before = job.progress
            if job.status.terminal and not ended_too:
                return Changed(job, None)
            was_terminal, previous = job.status.terminal, job.status
            frames = [] if was_terminal else frames  # an ended job takes no more progress
            try:
                change = apply(job)
            except InvalidTransition:
                if known is None or not (light or known.full):
                    raise
                self._known.forget(job_id)  # another process changed it since: read afresh
                continue
            event_type, progress, heavy = change.event, change.progress, change.heavy
            terminal = job.status.terminal and not was_terminal
            # So is a stage that holds the job when it ends: an ended job needs no lease.
            done_stage = handing_over or (self.queues.held(job_id) if terminal else None)
            lease_keys = self.queues.lease_keys(done_stage) if done_stage else []
            new_core = encode_core(job)
            new_workflow_json = orjson.dumps(job.workflow).decode() if "workflow" in heavy else ""
            new_request_json = orjson.dumps(job.request).decode() if "request" in heavy else ""
            usage = orjson.dumps(usage_of(job).to_json()) if terminal else ""
            new_progress = job.progress.model_dump_json() if job.progress is not progress_before and job.progress \
                else ""
            now = repr(time.time())
            args = [v, new_core, new_workflow_json,
                    1 if event_type else 0, event_type or "", job.status.value, job.message,
                    now, orjson.dumps(progress) if progress is not None else "",
                    1 if terminal else 0, self.key_ttl, repr(job.finished_at or time.time()),
                    job_id, k.events_channel, previous.value, born or "",
                    job.owner or "", usage, self.usage_ttl_ms, self._notify.tag, new_progress,
                    new_request_json, *queue_args, *self.queues.hand_args()]
            # Handed at once to an idle taker of the next stage here, if nobody waits there.
            hand = self.queues.reserve(then_enqueue) if then_enqueue and not terminal else None
            updated: Updated | str | None = None
            try:
                updated = parse_update(await self._scripts["UPDATE"](
                    keys=[k.job(job_id), k.events(job_id), k.ended, k.counts, k.active, k.usage, k.deadlines,
                          *queue_keys, *lease_keys], args=[*args, "" if hand is None else "1", *frames]))
            finally:
                if isinstance(updated, Updated):
                    self._taken.drop(job_id)  # what was kept of the job is out of date now
                if then_enqueue:
                    self.queues.settle(
                        then_enqueue, job_id, hand, updated.queued if isinstance(updated, Updated) else False,
                        Record(str(int(v) + 1), born, new_core, None, new_request_json or request,
                               new_workflow_json or workflow) if full else None)
            if updated == "gone":
                self._known.forget(job_id)
                return None
            if updated == "conflict":
                self._known.forget(job_id)  # someone wrote since: read afresh
                continue
            if updated.acked:
                self.queues.finished_here(done_stage or "", job_id)
            if frames:  # written first: the last of them just before the change's own event
                self._written.progressed(job_id, updated.seq - (1 if event_type else 0), frames, float(now))
            self._written.changed(
                job_id, v, core=new_core, request=new_request_json, workflow=new_workflow_json, progress=new_progress,
                status=job.status.value, message=job.message, ended=job.status.terminal,
                event=JobEvent(updated.seq, event_type, job.status.value, job.message, float(now), progress)
                if event_type else None)
            if event_type or frames:
                self._notify.local_event(job_id, "end" if terminal else "other" if event_type else "progress")
            self._known.remember(job, str(int(v) + 1), born, new_core, new_request_json or request,
                           new_workflow_json or workflow, full)
            return Changed(job, previous)
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
        def apply(job: Job) -> Change:
            event = job.apply_change(status=status, message=message, marks=marks, fields=fields)
            return Change(event, None, frozenset(_HEAVY & fields.keys()))

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
        ids = await self.redis.zrevrange(self.keys.created, 0, max(limit, 1) - 1)
        jobs = [await self.get(job_id) for job_id in ids]
        return [j for j in jobs if j is not None][:limit]

    async def status_counts(self) -> dict[str, int]:
        counts = await self.redis.hgetall(self.keys.counts)
        return {s.value: max(int(counts.get(s.value, 0)), 0) for s in JobStatus}

    async def set_webhook(self, job_id: str, state: WebhookState) -> None:
        def apply(job: Job) -> Change:
            job.webhook = state
            job.updated_at = time.time()
            return Change()

        await self._change(job_id, apply, ended_too=True)

    async def unfinished(self) -> list[str]:
        ids = []
        async for key in self.redis.scan_iter(match=self.keys.job("*"), count=1000):
            job = await self.get(key[len(self.keys.job("")):])
            if job is not None and not job.status.terminal:
                ids.append(job.id)
        return ids

    async def set_progress(self, job_id: str, progress: Progress) -> None:
        await self._progress.write(job_id, progress)

    # -- stage queues, facts, history: the parts ------------------------------------------------
    async def enqueue(self, stage: str, job_id: str) -> None:
        await self.queues.enqueue(stage, job_id)

    async def dequeue(self, stage: str) -> str:
        return await self.queues.dequeue(stage)

    async def renew(self, stage: str, job_id: str) -> bool:
        return await self.queues.renew(stage, job_id)

    async def ack(self, stage: str, job_id: str) -> None:
        await self.queues.ack(stage, job_id)

    async def hand_back(self, stage: str, job_id: str) -> bool:
        return await self.queues.hand_back(stage, job_id)

    async def hand_back_all(self) -> int:
        return await self.queues.hand_back_all()

    async def remove_from_queue(self, stage: str, job_id: str) -> bool:
        return await self.queues.remove(stage, job_id)

    async def position(self, stage: str, job_id: str) -> int | None:
        return await self.queues.position(stage, job_id)

    async def queue_sizes(self, priority: int = 0) -> dict[str, int]:
        return await self.queues.sizes(priority)

    def schedule(self, name: str) -> Schedule:
        return self.facts.schedule(name)

    async def count_delivery(self, stage: str, job_id: str) -> int:
        counted = self._taken.delivery(stage, job_id)  # counted by the take itself
        return counted if counted is not None else await self.facts.count_delivery(stage, job_id)

    async def history(self, query: HistoryQuery) -> HistoryPage:
        return await self.ledger.history(query)

    async def usage(self, since: float | None, until: float | None) -> list[UsageRecord]:
        return await self.ledger.usage(since, until)

    # -- events -------------------------------------------------------------------------------
    async def events_after(self, job_id: str, seq: int) -> list[JobEvent]:
        return await self.reads.events(job_id, seq)

    def events(self, job_id: str, after: int = 0, *, wake: Wake = "all", queue_changes: bool = False,
               idle: float = 30.0, look_first: bool = True) -> JobEvents:
        return JobEvents(self._read_events, self._notify.watchers, job_id, after, wake=wake,
                         queue_changes=queue_changes, idle=idle, look_first=look_first)

    async def events_and_job(self, job_id: str, after: int) -> tuple[list[JobEvent], Job | None]:
        events, record = await self.reads.both(job_id, after)
        return events, self._job_of(job_id, record)

    async def _read_events(self, job_id: str, after: int) -> list[JobEvent] | None:
        events, record = await self.reads.both(job_id, after)
        if record.core is None:
            return events or None  # gone (expired): after its last events, if any came
        known = self._known.get(job_id)
        # Kept for the get() a follower makes of what it read; unless this process wrote a newer
        # version while the read was on its way (its answer came after the write's).
        if known is None or (record.v is not None and int(record.v) >= int(known.v)):
            self._taken.fresh(job_id, record)
        return events

    # -- sweeping -----------------------------------------------------------------------------
    async def expire(self, older_than: float) -> int:
        gone = await self.ledger.expire(older_than)
        await self.queues.forget_idle_consumers()
        return gone
