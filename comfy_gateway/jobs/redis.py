"""The Redis job store: the same protocol as the memory one, shared by any number of gateway
processes. It is the job records and their events (here), composed with parts of one reason
each: names (redis_keys.py), the record format (redis_records.py), changes of a job
(redis_changes.py), the stage queues (redis_queues.py) and their hand-overs within a process
(redis_handoff.py), progress frames (redis_progress.py), reads (redis_reads.py), what this
process wrote of a job (redis_written.py), schedules and delivery counts (redis_facts.py),
history and usage (redis_history.py); the client (redis_connect.py). Scripts: redis_lua.py and
redis_lua_parts.py; waking: redis_notify.py.

What Redis guarantees is used as it is: stage queues are Streams with one consumer group, so a
job taken by a process sits in the group's pending list (its lease) until acked; a lease idle
longer than LEASE_SECONDS is taken over by another process (XPENDING IDLE + XCLAIM in one
script); a worker busy longer renews it (XCLAIM to itself). State change and event are one Lua
script (compare-and-set on a version field), so no reader sees one without the other.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
import uuid
from typing import Any, Callable

import orjson
from redis.asyncio import Redis

from . import redis_lua as lua
from .events import JobEvent
from .facts import Schedule
from .following import JobEvents, Wake
from .history import HistoryPage, HistoryQuery
from .job_locks import JobLocks
from .model import Job, JobStatus, Progress, WebhookState
from .redis_changes import JobChanges
from .redis_connect import connect  # noqa: F401  (the store and its client, from one import)
from .redis_facts import RedisFacts
from .redis_heard import TRUST_FOR, Heard
from .redis_history import RedisHistory
from .redis_keys import RedisKeys
from .redis_notify import Notifier
from .redis_progress import ProgressWriter
from .redis_queues import StageQueues
from .redis_reads import JobReads
from .redis_records import _HEAVY, Change, KnownRecords, decode_job, encode_core
from .redis_results import Created, Record
from .redis_scripts import ScriptCalls
from .redis_taken import JustTaken
from .redis_written import WrittenHere
from .store import KeyQueueFull, Passing, Prepared, QueueFull, TransitionListener, notify_listeners
from .usage import UsageRecord

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
        self._notify = Notifier(redis, keys, origin=uuid.uuid4().hex[:12], heard=Heard(min(TRUST_FOR, self.result_ttl)))
        self._listeners: list[TransitionListener] = []
        self._known = KnownRecords()
        self._taken = JustTaken()
        self._written = WrittenHere()  # jobs whose every write was this process's (the end's readers)
        self._locks = JobLocks()  # one change of a job at a time in this process
        self._script_calls = ScriptCalls(redis)
        self._scripts = {name: self._script_calls.register(getattr(lua, name))
                         for name in ("CREATE", "UPDATE", "PROGRESS", "ENQUEUE", "TAKE", "RENEW", "ACK", "HAND_BACK", "REMOVE",
                                     "EXPIRE_ENDED", "HEAR")}
        self.queues = StageQueues(redis, keys, self._notify, self._scripts, self._taken, consumer=self.consumer,
                                  lease_seconds=lease_seconds, key_ttl=self.key_ttl)
        self.facts = RedisFacts(redis, keys, self.key_ttl)
        self.ledger = RedisHistory(redis, keys, self._scripts["EXPIRE_ENDED"])
        self.reads = JobReads(redis, keys, self._written)
        self._progress = ProgressWriter(self._scripts["PROGRESS"], keys, self._notify, self._locks, self._taken,
                                        self._written)
        self._changes = JobChanges(
            redis, keys, self._scripts["UPDATE"], queues=self.queues, known=self._known, taken=self._taken,
            written=self._written, locks=self._locks, progress=self._progress, notify=self._notify,
            key_ttl=self.key_ttl, usage_ttl_ms=self.usage_ttl_ms, listeners=self._notify_listeners)
        self._notify.written_elsewhere = self._changes.written_elsewhere

    # -- life ---------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.queues.start()
        await self._notify.start()

    async def close(self) -> None:
        await self._changes.flush_all()
        await self._progress.close()
        await self._notify.close()
        await self._script_calls.close()
        await self.redis.aclose()

    # -- jobs ---------------------------------------------------------------------------------
    async def create(self, job: Job, *, max_waiting: int | None = None, max_owned: int | None = None,
                     prepared: Prepared | None = None) -> Job:
        job.marks.setdefault("created", job.created_at)
        owner = job.owner or ""
        k = self.keys
        stage = prepared.stage if prepared is not None else "preprocess"
        hand = self.queues.reserve(stage)  # an idle taker of that stage here gets it at once
        created = record = unclaimed = None
        try:
            if prepared is not None and prepared.claim is not None:
                if hand is None:
                    prepared = dataclasses.replace(prepared, claim=None)
                else:
                    # Written only with the hand-over: the script creates nothing if somebody waits
                    # in the queue, and the job is then created again without its claim.
                    unclaimed = job.snapshot()
            states = _arrive(job, prepared)  # the job as it was in each state it is created past
            keys = [k.job(job.id), k.events(job.id), k.stream("preprocess"), k.entries("preprocess"),
                    k.waiting("preprocess"), k.waiting("generation"), k.waiting("postprocess"), k.qseq,
                    k.entries("generation"), k.counts, k.created, k.active, k.created_by(owner), k.deadlines,
                    k.stream(stage), k.entries(stage), k.waiting(stage)]
            born, core, request, now = uuid.uuid4().hex, encode_core(job), orjson.dumps(job.request).decode(), time.time()
            workflow = orjson.dumps(job.workflow).decode() if prepared is not None else ""
            head = [job.id, core, request, -1 if max_waiting is None else max_waiting,
                    "status", job.status.value, job.message, repr(now), k.events_channel, k.queues_channel, born,
                    owner, -1 if max_owned is None or not owner else max_owned, job.priority, repr(job.created_at),
                    self._notify.tag, repr(job.deadline) if job.deadline is not None else "",
                    *self.queues.hand_args(), "" if hand is None else "2" if unclaimed else "1"]
            tail = [stage, workflow, *(part for state in states for part in ("status", state.status.value, state.message))]
            record = Record("1", born, core, None, request, workflow or None)
            created = Created.parse(await self._scripts["CREATE"](keys=keys, args=[*head, *tail]))
        finally:
            self.queues.settle(stage, job.id, hand, created.queued if created else False, record)
        if created.outcome == "busy" and unclaimed is not None and prepared is not None:
            return await self.create(unclaimed, max_waiting=max_waiting, max_owned=max_owned,
                                     prepared=dataclasses.replace(prepared, claim=None))
        if created.outcome == "exists":
            raise KeyError(job.id)
        if created.outcome == "full":
            raise QueueFull(created.count, max_waiting or 0)
        if created.outcome == "owner_full":
            raise KeyQueueFull(owner, created.count, max_owned or 0)
        # As created: its first change (or its taker's read) needs neither a read nor a decode.
        self._known.remember(job, "1", born, core, request, workflow or None, True)
        if not job.status.terminal:
            self._notify.heard.listed(job.id)  # the script listed this process (tell)
        self._written.created(job.id, born, core, request, workflow, [
            JobEvent(seq, "status", state.status.value, state.message, now)
            for seq, state in enumerate([*states, job], start=1)])
        self._notify.local_event(job.id)
        previous = None
        for state in [*states, job]:
            if state.status is not previous:  # (as a change tells them: when the status moves)
                self._notify_listeners(state, previous)
            previous = state.status
        return job

    async def get(self, job_id: str) -> Job | None:
        carried = self._changes.carried_job(job_id)  # handed over here, not written yet
        if carried is not None:
            return carried
        record = self._taken.record(job_id)  # read a moment ago with a take or events, if it was
        if record is None:
            record = await self.reads.record(job_id)
        return self._job_of(job_id, record)

    def _job_of(self, job_id: str, record: Record) -> Job | None:
        if record.core is None:
            self._known.forget(job_id)
            self._notify.heard.forget(job_id)
            return None
        known = self._known.for_reading(job_id)
        job = known.job_for(record) if known is not None else None
        if job is not None:
            return job  # the record this process last read or wrote: remembered already
        parsed = known.parsed_for(record) if known is not None else None
        job = decode_job(record.core, record.progress, record.request, record.workflow, parsed)
        self._known.remember(job, record.v, record.born, record.core, record.request, record.workflow, True)
        return job

    async def status(self, job_id: str) -> JobStatus | None:
        carried = self._changes.carried_job(job_id)
        if carried is not None:
            return carried.status
        status = await self.redis.hget(self.keys.job(job_id), "st")  # kept beside the record
        if status is None:  # gone, or written before the field existed
            job = await self.get(job_id)
            return job.status if job is not None else None
        return JobStatus(status)

    async def _change(self, job_id: str, apply: Callable[[Job], Change], *, ended_too: bool = False, light: bool = False,
                      then_enqueue: str | None = None) -> Job | None:
        return await self._changes.change(job_id, apply, ended_too=ended_too, light=light, then_enqueue=then_enqueue)

    async def update(
        self, job_id: str, *, status: JobStatus | None = None, message: str | None = None,
        marks: dict[str, float] | None = None, **fields: Any,
    ) -> Job:
        return await self._update(job_id, None, status=status, message=message, marks=marks, **fields)

    async def advance(
        self, job_id: str, stage: str, *, status: JobStatus, message: str | None = None,
        marks: dict[str, float] | None = None, passing: Passing | None = None, **fields: Any,
    ) -> Job:
        return await self._update(job_id, stage, status=status, message=message, marks=marks, passing=passing,
                                  **fields)

    async def _update(
        self, job_id: str, then_enqueue: str | None, *, status: JobStatus | None = None,
        message: str | None = None, marks: dict[str, float] | None = None, passing: Passing | None = None,
        **fields: Any,
    ) -> Job:
        def apply(job: Job) -> Change:
            passed: tuple[Job, ...] = ()
            if passing is not None and job.status is not passing.status:
                job.apply_change(status=passing.status, message=passing.message, marks=passing.marks, fields={})
                # As it was in that state, for its event and its listeners.
                passed = (job.snapshot(),)
            event = job.apply_change(status=status, message=message, marks=marks, fields=fields)
            return Change(event, None, frozenset(_HEAVY & fields.keys()), passed)

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
        await self._changes.flush_all()  # the jobs go back as they stand here
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
                         queue_changes=queue_changes, idle=idle, look_first=look_first,
                         hear=None if self._notify.heard.knows(job_id) else self._hear)

    async def _hear(self, job_id: str) -> bool:
        """Before a follower here waits for the job: make sure this process is told of its
        events written elsewhere (redis_heard.py). True when it was not sure of it, so the
        follower looks once more: what was written before the listing was told elsewhere only."""
        if self._notify.heard.knows(job_id):  # listed since the follower was made (its create)
            return False
        if await self._scripts["HEAR"](keys=[self.keys.job(job_id)], args=[self._notify.tag]) == 1:
            self._notify.heard.listed(job_id)  # (a job that ended, or is gone, is not kept)
        return True

    async def events_and_job(self, job_id: str, after: int) -> tuple[list[JobEvent], Job | None]:
        events, record = await self.reads.both(job_id, after)
        return events, self._job_of(job_id, record)

    async def _read_events(self, job_id: str, after: int) -> list[JobEvent] | None:
        events, record = await self.reads.both(job_id, after)
        if record.core is None:
            self._notify.heard.forget(job_id)
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


def _arrive(job: Job, prepared: Prepared | None) -> list[Job]:
    """Move a job being created past the states of `prepared` (in place): the job as it was in
    each state before its last, for their events and listeners."""
    if prepared is None:
        return []
    states = []
    for step, fields in prepared.moves():
        states.append(job.snapshot())
        job.apply_change(status=step.status, message=step.message, marks=step.marks, fields=fields)
    return states
