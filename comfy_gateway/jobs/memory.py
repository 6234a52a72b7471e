"""The in-memory job store: one process, nothing to install. Same protocol as the Redis one."""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from typing import Any

import orjson

from .events import JobEvent
from .facts import MemoryFacts
from .history import HistoryPage, HistoryQuery
from .memory_queue import StageQueue
from .model import Job, JobStatus, Progress, WebhookState
from .following import JobEvents, Wake, Watchers, kind_of
from .store import STAGES, KeyQueueFull, QueueFull, TransitionListener, notify_listeners
from .usage import UsageRecord, usage_of

log = logging.getLogger(__name__)


class MemoryJobStore(MemoryFacts):
    shared = False  # one process: nothing else can take over its jobs

    def __init__(self, usage_ttl: float = 90 * 86400) -> None:
        self._jobs: dict[str, Job] = {}
        # Requests of jobs nobody has read since they were queued, as JSON bytes: a 52-node
        # workflow is ~5 KB of JSON but ~24 KiB as Python objects, times every queued job.
        self._packed: dict[str, bytes] = {}
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

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    # -- jobs -------------------------------------------------------------------------------
    async def create(self, job: Job, *, max_waiting: int | None = None, max_owned: int | None = None) -> Job:
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
        self._jobs[job.id] = job
        self._events[job.id] = []
        self._record(job, "status")
        self._counts[job.status.value] += 1
        await self.enqueue("preprocess", job.id)
        self._notify(job, None)
        # Kept packed until someone reads the job (its preprocess worker, at the latest); the
        # caller's object keeps its request (updates reach the stored copy, as with Redis).
        stored = job.model_copy()
        stored.request = {}
        self._packed[job.id] = orjson.dumps(job.request)
        self._jobs[job.id] = stored
        return job

    def _full(self, job: Job) -> Job:
        packed = self._packed.pop(job.id, None)
        if packed is not None:
            job.request = orjson.loads(packed)
        return job

    async def get(self, job_id: str) -> Job | None:
        job = self._jobs.get(job_id)
        return self._full(job) if job is not None else None

    async def status(self, job_id: str) -> JobStatus | None:
        job = self._jobs.get(job_id)
        return job.status if job is not None else None

    async def update(
        self, job_id: str, *, status: JobStatus | None = None, message: str | None = None,
        marks: dict[str, float] | None = None, **fields: Any,
    ) -> Job:
        job = self._full(self._jobs[job_id])
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
        self._deadlines.forget(job.id)
        if job.owner:
            self._active[job.owner] -= 1
            if self._active[job.owner] <= 0:
                del self._active[job.owner]
        record = usage_of(job)
        self._usage.append(record)
        while self._usage and self._usage[0].finished_at < record.finished_at - self._usage_ttl:
            self._usage.popleft()

    def add_listener(self, listener: TransitionListener) -> None:
        self._listeners.append(listener)

    def _notify(self, job: Job, previous: JobStatus | None) -> None:
        notify_listeners(self._listeners, job, previous)

    async def set_webhook(self, job_id: str, state: WebhookState) -> None:
        job = self._jobs.get(job_id)
        if job is not None:
            job.webhook = state
            job.updated_at = time.time()

    async def set_progress(self, job_id: str, progress: Progress) -> None:
        job = self._jobs.get(job_id)
        if job is None or job.status.terminal:
            return
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
               idle: float = 30.0) -> JobEvents:
        return JobEvents(self._read_events, self._watchers, job_id, after, wake=wake,
                         queue_changes=queue_changes, idle=idle)

    async def _read_events(self, job_id: str, after: int) -> list[JobEvent] | None:
        log = self._events.get(job_id)
        return None if log is None else log[after:]

    async def advance(self, job_id: str, stage: str, *, status: JobStatus, message: str | None = None,
                      marks: dict[str, float] | None = None, **fields: Any) -> Job:
        job = await self.update(job_id, status=status, message=message, marks=marks, **fields)
        if not job.status.terminal:
            await self.enqueue(stage, job_id)
        return job

    # -- queues -----------------------------------------------------------------------------
    async def enqueue(self, stage: str, job_id: str) -> None:
        if job_id in self._queues[stage] or job_id in self._taken[stage]:
            return
        job = self._jobs.get(job_id)
        self._queues[stage].put(job_id, job.priority if job is not None else 0)
        self._queue_changed()

    async def dequeue(self, stage: str) -> str:
        job_id = await self._queues[stage].get()
        self._taken[stage].add(job_id)
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
            out.append(self._full(self._jobs[job_id]))
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
                page.jobs.append(self._full(job))
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
            self._packed.pop(job_id, None)
            self._events.pop(job_id, None)
            self._watchers.job_gone(job_id)
            self._forget_facts(job_id)
        return len(old)
