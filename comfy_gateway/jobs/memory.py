"""The in-memory job store: one process, nothing to install. Same protocol as the Redis one."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter, deque
from typing import Any

from .events import JobEvent
from .facts import MemoryFacts
from .history import HistoryPage, HistoryQuery
from .memory_packed import PackedJob
from .memory_queue import StageQueue
from .model import Job, JobStatus, Progress, WebhookState
from .following import JobEvents, Wake, Watchers, kind_of
from .store import STAGES, KeyQueueFull, Passing, Prepared, QueueFull, TransitionListener, notify_listeners
from .usage import UsageRecord, usage_of

log = logging.getLogger(__name__)

# Jobs already waiting in a stage's queue from which one more is kept packed. A short queue is
# taken soon: packing and unpacking each job (JSON, zlib, validation) would cost more CPU than
# the memory it saves; thousands of waiting jobs are where the memory goes.
PACK_AFTER = 32
# Seconds after its end a job is packed for the rest of its stay: by then whoever followed it
# has read it, and a busy gateway keeps a day of results (tens of KiB each as objects).
PACK_ENDED_AFTER = 5.0


class MemoryJobStore(MemoryFacts):
    shared = False  # one process: nothing else can take over its jobs

    def __init__(self, usage_ttl: float = 90 * 86400, pack_after: int = PACK_AFTER,
                 pack_ended_after: float = PACK_ENDED_AFTER) -> None:
        # A job waiting in a queue is packed (memory_packed.py) until a worker takes it or
        # something changes it; reading it meanwhile unpacks a copy.
        self._jobs: dict[str, Job | PackedJob] = {}
        self._events: dict[str, list[JobEvent]] = {}
        self._watchers = Watchers()  # the followers of jobs (events())
        self._queues = {stage: StageQueue() for stage in STAGES}
        self._counts: Counter[str] = Counter()  # jobs kept per status, for the metrics gauge
        self._listeners: list[TransitionListener] = []
        self._taken: dict[str, set[str]] = {stage: set() for stage in STAGES}  # dequeued, not acked
        self._init_facts()
        self._active: Counter[str] = Counter()  # key name -> its jobs that have not ended
        self._usage: deque[UsageRecord] = deque()  # in the order jobs ended
        self._usage_ttl = usage_ttl
        self._pack_after = pack_after
        self._pack_ended_after = pack_ended_after

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    # -- jobs -------------------------------------------------------------------------------
    async def create(self, job: Job, *, max_waiting: int | None = None, max_owned: int | None = None,
                     prepared: Prepared | None = None) -> Job:
        if job.id in self._jobs:
            raise KeyError(job.id)
        if job.owner and max_owned is not None and self._active[job.owner] >= max_owned:
            raise KeyQueueFull(job.owner, self._active[job.owner], max_owned)
        if max_waiting is not None:
            # As in the Redis store: a job a preprocess worker holds is about to wait again.
            gen = self._queues["generation"], self._taken["generation"]
            waiting = sum(len(q) for q in self._queues.values()) + sum(
                1 for j in self._taken["preprocess"] if j not in gen[0] and j not in gen[1])
            if waiting >= max_waiting:
                raise QueueFull(waiting, max_waiting)
        job.marks.setdefault("created", job.created_at)
        if job.deadline is not None:  # as in the Redis store: the job and its time limit at once
            self._deadlines.put_now(job.id, job.deadline, only_new=True)
        if job.owner:
            self._active[job.owner] += 1
        self._jobs[job.id] = job  # packing it (enqueue) leaves the caller's object whole
        self._events[job.id] = []
        self._record(job, "status")
        self._counts[job.status.value] += 1
        if prepared is None:
            await self.enqueue("preprocess", job.id)
            self._notify(job, None)
            return job
        self._notify(job, None)
        queue = self._queues[prepared.stage]
        if prepared.claim is not None and (len(queue) or not queue.has_idle_taker()):
            prepared = dataclasses.replace(prepared, claim=None)  # no taker gets it at once
        for step, fields in prepared.moves():
            await self.update(job.id, status=step.status, message=step.message, marks=step.marks, **fields)
        await self.enqueue(prepared.stage, job.id)
        return job

    def _live(self, job_id: str) -> Job:
        """The stored job, unpacked for good: for whoever changes it or is about to work on it."""
        entry = self._jobs[job_id]
        if isinstance(entry, PackedJob):
            entry = self._jobs[job_id] = entry.unpack()
        return entry

    @staticmethod
    def _read(entry: Job | PackedJob) -> Job:
        return entry.unpack() if isinstance(entry, PackedJob) else entry

    async def get(self, job_id: str) -> Job | None:
        entry = self._jobs.get(job_id)
        return self._read(entry) if entry is not None else None

    async def events_and_job(self, job_id: str, after: int) -> tuple[list[JobEvent], Job | None]:
        return await self.events_after(job_id, after), await self.get(job_id)

    async def status(self, job_id: str) -> JobStatus | None:
        job = self._jobs.get(job_id)
        return job.status if job is not None else None

    async def update(
        self, job_id: str, *, status: JobStatus | None = None, message: str | None = None,
        marks: dict[str, float] | None = None, **fields: Any,
    ) -> Job:
        job = self._live(job_id)
        if job.status.terminal:
            return job
        previous = job.status
        event = job.apply_change(status=status, message=message, marks=marks, fields=fields)
        if job.status is not previous:
            self._counts[previous.value] -= 1
            self._counts[job.status.value] += 1
            if job.status.terminal:
                self._ended(job)
        if event is not None:
            self._record(job, event)
        if job.status is not previous:
            self._notify(job, previous)
        return job

    def _ended(self, job: Job) -> None:
        asyncio.get_running_loop().call_later(self._pack_ended_after, self._pack_ended, job.id)
        self._deadlines.forget(job.id)
        if job.owner:
            self._active[job.owner] -= 1
            if self._active[job.owner] <= 0:
                del self._active[job.owner]
        record = usage_of(job)
        self._usage.append(record)
        while self._usage and self._usage[0].finished_at < record.finished_at - self._usage_ttl:
            self._usage.popleft()

    def _pack_ended(self, job_id: str) -> None:
        entry = self._jobs.get(job_id)
        if isinstance(entry, Job) and entry.status.terminal:
            self._jobs[job_id] = PackedJob.of(entry) or entry

    def add_listener(self, listener: TransitionListener) -> None:
        self._listeners.append(listener)

    def _notify(self, job: Job, previous: JobStatus | None) -> None:
        notify_listeners(self._listeners, job, previous)

    async def set_webhook(self, job_id: str, state: WebhookState) -> None:
        if job_id in self._jobs:
            job = self._live(job_id)
            job.webhook = state
            job.updated_at = time.time()

    async def set_progress(self, job_id: str, progress: Progress) -> None:
        if job_id not in self._jobs or self._jobs[job_id].status.terminal:
            return
        job = self._live(job_id)
        job.progress = progress
        self._record(job, "progress", progress.model_dump())

    def _record(self, job: Job, type_: str, progress: dict[str, Any] | None = None) -> None:
        log = self._events[job.id]
        log.append(JobEvent(len(log) + 1, type_, job.status.value, job.message, time.time(), progress))
        self._watchers.event(job.id, kind_of(type_))

    # -- events -----------------------------------------------------------------------------
    async def events_after(self, job_id: str, seq: int) -> list[JobEvent]:
        log = self._events.get(job_id, [])
        return log[max(seq, 0):]

    def events(self, job_id: str, after: int = 0, *, wake: Wake = "all", queue_changes: bool = False,
               idle: float = 30.0, look_first: bool = True) -> JobEvents:
        return JobEvents(self._read_events, self._watchers, job_id, after, wake=wake,
                         queue_changes=queue_changes, idle=idle, look_first=look_first)

    async def _read_events(self, job_id: str, after: int) -> list[JobEvent] | None:
        log = self._events.get(job_id)
        return None if log is None else log[after:]

    async def advance(self, job_id: str, stage: str, *, status: JobStatus, message: str | None = None,
                      marks: dict[str, float] | None = None, passing: Passing | None = None, **fields: Any) -> Job:
        if passing is not None:
            job = self._jobs.get(job_id)
            if job is not None and not job.status.terminal and job.status is not passing.status:
                await self.update(job_id, status=passing.status, message=passing.message, marks=passing.marks)
        job = await self.update(job_id, status=status, message=message, marks=marks, **fields)
        if not job.status.terminal:
            await self.enqueue(stage, job_id)
        return job

    # -- queues -----------------------------------------------------------------------------
    async def enqueue(self, stage: str, job_id: str) -> None:
        if job_id in self._queues[stage] or job_id in self._taken[stage]:
            return
        queue, entry = self._queues[stage], self._jobs.get(job_id)
        # Packed only when it will wait long: behind a long line, with no worker idle.
        if isinstance(entry, Job) and len(queue) >= self._pack_after and not queue.has_idle_taker():
            entry = self._jobs[job_id] = PackedJob.of(entry) or entry
        queue.put(job_id, entry.priority if entry is not None else 0)
        self._queue_changed()

    async def dequeue(self, stage: str) -> str:
        job_id = await self._queues[stage].get()
        self._taken[stage].add(job_id)
        if job_id in self._jobs:
            self._live(job_id)  # its worker reads it next
        self._queue_changed()
        return job_id

    async def renew(self, stage: str, job_id: str) -> bool:
        # One process: nothing else could take the job over, so a lease never runs out.
        return True

    async def ack(self, stage: str, job_id: str) -> None:
        # One process: nothing else could take the job over, so there is no lease to release.
        self._taken[stage].discard(job_id)

    async def remove_from_queue(self, stage: str, job_id: str) -> bool:
        removed = self._queues[stage].remove(job_id)
        if removed:
            self._queue_changed()
        return removed

    async def position(self, stage: str, job_id: str) -> int | None:
        return self._queues[stage].position(job_id)

    async def queue_sizes(self, priority: int = 0) -> dict[str, int]:
        if priority > 0:
            return {stage: q.ahead_of(priority) for stage, q in self._queues.items()}
        return {stage: len(q) for stage, q in self._queues.items()}

    def _queue_changed(self) -> None:
        self._watchers.queue_changed()

    async def hand_back_all(self) -> int:
        return 0  # no other process to hand them to

    async def recent(self, limit: int) -> list[Job]:
        # Jobs are kept in creation order (dicts keep insertion order): newest first is the
        # reverse, and only `limit` of them are touched.
        out = []
        for job_id in reversed(self._jobs):
            if len(out) >= limit:
                break
            out.append(self._read(self._jobs[job_id]))
        return out

    async def history(self, query: HistoryQuery) -> HistoryPage:
        # Kept in creation order (created_at is read from the clock right before create(), with
        # nothing awaited in between): newest first is the reverse.
        page, seen = HistoryPage(), 0
        for job_id in reversed(self._jobs):
            job = self._jobs[job_id]
            if not query.in_range(job.created_at, job.id):
                if query.since is not None and job.created_at < query.since:
                    page.next_after = None
                    return page  # older ones only from here on
                continue
            seen += 1
            page.next_after = (job.created_at, job.id)
            if query.admits(job):
                page.jobs.append(self._read(job))
                if len(page.jobs) >= query.limit:
                    return page
            if seen >= query.scan:
                return page
        page.next_after = None
        return page

    async def usage(self, since: float | None, until: float | None) -> list[UsageRecord]:
        return [r for r in self._usage
                if (since is None or r.finished_at >= since) and (until is None or r.finished_at < until)]

    async def status_counts(self) -> dict[str, int]:
        return {s.value: max(self._counts[s.value], 0) for s in JobStatus}

    async def unfinished(self) -> list[str]:
        return [j.id for j in self._jobs.values() if not j.status.terminal]

    async def expire(self, older_than: float) -> int:
        old = [
            j.id for j in self._jobs.values()
            if j.status.terminal and j.finished_at is not None and j.finished_at < older_than
        ]
        for job_id in old:
            self._counts[self._jobs[job_id].status.value] -= 1
            del self._jobs[job_id]
            self._events.pop(job_id, None)
            self._watchers.job_gone(job_id)
            self._forget_facts(job_id)
        # Ended jobs a change unpacked since (webhook bookkeeping) are packed again.
        settled = time.time() - self._pack_ended_after
        for job_id, entry in self._jobs.items():
            if isinstance(entry, Job) and entry.status.terminal and (entry.finished_at or 0) < settled:
                self._pack_ended(job_id)
        return len(old)
