"""Changing a job in the Redis store: a part of RedisJobStore (redis.py).

A change is computed in Python from the job as this process last read or wrote it (or as read
now), and written with its event by one script (redis_lua.py UPDATE), which checks the version
it was computed from: another process's write in between makes it read afresh and compute
again. The same script takes along the progress frames waiting for the job's writer
(redis_progress.py), a state the job passed through on the way (store.Passing), the hand-over
to the next stage's queue (and to an idle taker of this process, redis_handoff.py) and the ack
of the lease of the stage handing over, so that a stage's last act is one round trip.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import orjson
from redis.asyncio import Redis

from .job_locks import JobLocks
from .model import InvalidTransition, Job, JobStatus
from .redis_carried import CARRIED_INTO, Carried, CarriedChanges
from .redis_keys import RedisKeys
from .redis_notify import Notifier
from .redis_progress import ProgressWriter
from .redis_queues import StageQueues
from .redis_records import Change, KnownRecords, decode_job, encode_core
from .redis_results import Changed, Record, Updated, parse_update
from .redis_taken import JustTaken
from .redis_written import WrittenHere, frames_before
from .store import STAGES
from .usage import usage_of


class JobChanges:
    def __init__(self, redis: Redis, keys: RedisKeys, script: Any, *, queues: StageQueues, known: KnownRecords,
                 taken: JustTaken, written: WrittenHere, locks: JobLocks, progress: ProgressWriter,
                 notify: Notifier, key_ttl: int, usage_ttl_ms: int,
                 listeners: Callable[[Job, JobStatus | None], None]):
        self._redis, self._keys, self._script, self._queues = redis, keys, script, queues
        self._known, self._taken, self._written, self._locks = known, taken, written, locks
        self._progress, self._notify, self._listeners = progress, notify, listeners
        self._key_ttl, self._usage_ttl_ms = key_ttl, usage_ttl_ms
        self._carried = CarriedChanges(self.flush)

    async def change(self, job_id: str, apply: Callable[[Job], Change] | None, *, ended_too: bool = False,
                     light: bool = False, then_enqueue: str | None = None) -> Job | None:
        """Read the job, let `apply` change it and name its event, write both atomically;
        retried when another process wrote in between. None if the job does not exist.
        A job that ended is returned unchanged, unless `ended_too` (bookkeeping, no event).
        `light`: read the record without its request and workflow (for a change that needs
        neither; the job returned then lacks them). `then_enqueue`: a stage whose queue the
        job joins in the same step, unless the change ended it. A hand-over kept unwritten
        (redis_carried.py) is written first, in the same step; `apply` None writes it alone."""
        # One change of a job at a time in this process (e.g. a burst of progress frames): they
        # would otherwise all compute from the same version and retry each other in turns.
        # Other processes are kept out by the compare-and-set.
        async with self._locks.hold(job_id):
            carried = self._carried.take(job_id)
            if carried is None and apply is None:
                return None
            if carried is None and then_enqueue in CARRIED_INTO:
                kept = self._carry(job_id, apply, then_enqueue)
                if kept is not None:
                    return kept
            waiting = self._progress.take(job_id)  # progress frames that go with this change
            frames = [*(carried.waiting.frames if carried and carried.waiting else []),
                      *(waiting.frames if waiting else [])]
            written = False
            try:
                done = await self._locked(job_id, carried.then(apply) if carried else apply, ended_too, light,
                                          then_enqueue, frames)
                written = True
            except Exception:
                if carried is not None:
                    self._carried.put_back(carried)
                raise
            finally:
                if waiting:
                    waiting.done()
                if carried is not None and written and carried.waiting is not None:
                    carried.waiting.done()
        if done is None:
            return None
        previous = done.previous
        if previous is not None:
            for passed in done.passed:
                self._listeners(passed, previous)
                previous = passed.status
            if done.job.status is not previous:
                self._listeners(done.job, previous)
        return done.job

    def _carry(self, job_id: str, apply: Callable[[Job], Change], stage: str) -> Job | None:
        """Hand the job to an idle taker of the stage here without writing (redis_carried.py),
        if it can be: the job as the change left it, else None (written as usual)."""
        known = self._known.get(job_id)
        if known is None or not known.full or not self._queues.may_carry(stage, job_id):
            return None
        job = known.job()
        if job.status.terminal:
            return None
        try:
            change = apply(job)
        except InvalidTransition:
            return None  # computed from a stale copy: the usual write reads afresh
        if change.passed or job.status.terminal:
            return None
        self._queues.carry(stage, job_id)
        self._taken.drop(job_id)
        self._carried.keep(Carried(job_id, apply, job, self._progress.take(job_id)))
        return job.snapshot()

    async def flush(self, job_id: str) -> None:
        """Write the job's kept hand-over now, alone, if one is kept."""
        await self.change(job_id, None)

    def written_elsewhere(self, job_id: str | None) -> None:
        """Another process wrote the job (None: any job may have been written, messages were
        lost): what this process remembers of it is no longer its record in Redis. Forgotten,
        so that no change is computed from it and carried unwritten (a job cancelled elsewhere
        would then read here as moving on), and its kept hand-over no longer shown to readers."""
        self._known.forget(job_id)
        self._written.forget(job_id)
        self._taken.drop(job_id)
        self._carried.outdated(job_id)

    def carried_job(self, job_id: str) -> Job | None:
        """The job as a hand-over kept here left it (what readers in this process see)."""
        return self._carried.job(job_id)

    async def flush_all(self) -> None:
        await self._carried.flush_all()

    async def _locked(self, job_id: str, apply: Callable[[Job], Change], ended_too: bool, light: bool,
                      then_enqueue: str | None, frames: list[str]) -> Changed | None:
        k = self._keys
        queue_keys = self._queues.joining_keys(then_enqueue) if then_enqueue else []
        queue_args = [then_enqueue, k.queues_channel] if then_enqueue else ["", ""]
        # The stage handing the job over is done with it: its lease is acked in the same step.
        handing_over = STAGES[STAGES.index(then_enqueue) - 1] if then_enqueue in STAGES[1:] else None
        for attempt in range(100):
            # What this process last read or wrote, if it has all the change needs: no read, the
            # script checks it is current. The progress field is never read: a change writes it
            # only when it set it itself.
            known = self._known.get(job_id) if attempt == 0 else None
            parsed = None
            if known is not None and (light or known.full):
                v, born, core, request, workflow, full, parsed = \
                    known.v, known.born, known.core, known.request, known.workflow, known.full, known.parsed
            elif light:
                v, born, core = await self._redis.hmget(k.job(job_id), "v", "born", "core")
                request = workflow = None
                full = False
            else:
                v, born, core, request, workflow = await self._redis.hmget(
                    k.job(job_id), "v", "born", "core", "request", "workflow")
                full = True
            if core is None:
                self._known.forget(job_id)
                return None
            # A copy of the remembered record's job when it has one; else decoded from the texts.
            job = known.job() if known is not None and parsed is not None else \
                decode_job(core, None, request, workflow, parsed)
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
            event_type, progress, heavy, passed = change.event, change.progress, change.heavy, change.passed
            # Written before the change's own event: the frames, under the state they were sent
            # under (type, status, message, progress; '' = the record's), then the passed states.
            before = frames_before(frames)
            before += [("status", state.status.value, state.message, "") for state in passed]
            terminal = job.status.terminal and not was_terminal
            # So is a stage that holds the job when it ends: an ended job needs no lease.
            done_stage = handing_over or (self._queues.held(job_id) if terminal else None)
            lease_keys = self._queues.lease_keys(done_stage) if done_stage else []
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
                    1 if terminal else 0, self._key_ttl, repr(job.finished_at or time.time()),
                    job_id, k.events_channel, previous.value, born or "",
                    job.owner or "", usage, self._usage_ttl_ms, self._notify.tag, new_progress,
                    new_request_json, *queue_args, *self._queues.hand_args()]
            # Handed at once to an idle taker of the next stage here, if nobody waits there.
            hand = self._queues.reserve(then_enqueue) if then_enqueue and not terminal else None
            updated: Updated | str | None = None
            try:
                updated = parse_update(await self._script(
                    keys=[k.job(job_id), k.events(job_id), k.ended, k.counts, k.active, k.usage, k.deadlines,
                          *queue_keys, *lease_keys],
                    args=[*args, "" if hand is None else "1", *(part for event in before for part in event)]))
            finally:
                if isinstance(updated, Updated):
                    self._taken.drop(job_id)  # what was kept of the job is out of date now
                if then_enqueue:
                    self._queues.settle(
                        then_enqueue, job_id, hand, updated.queued if isinstance(updated, Updated) else False,
                        Record(str(int(v) + 1), born, new_core, None, new_request_json or request,
                               new_workflow_json or workflow) if full else None)
            if updated == "gone":
                self._known.forget(job_id)
                self._notify.heard.forget(job_id)
                return None
            if updated == "conflict":
                self._known.forget(job_id)  # someone wrote since: read afresh
                continue
            if job.status.terminal:  # (it tells nothing more: see redis_heard.py)
                self._notify.heard.forget(job_id)
            else:
                self._notify.heard.listed(job_id)  # the script listed this process (tell)
            if updated.acked:
                self._queues.finished_here(done_stage or "", job_id)
            self._written.changed(
                job_id, v, core=new_core, request=new_request_json, workflow=new_workflow_json,
                progress=new_progress or (frames[-1] if frames else ""),
                status=job.status.value, message=job.message, ended=job.status.terminal,
                events=self._written.events_of(job_id, updated.seq, before, float(now),
                                               (event_type, job.status.value, job.message, progress)))
            if event_type or frames:
                self._notify.local_event(job_id, "end" if terminal else "other" if event_type else "progress")
            self._known.remember(job, str(int(v) + 1), born, new_core, new_request_json or request,
                                 new_workflow_json or workflow, full)
            return Changed(job, previous, passed)
        raise RuntimeError(f"job {job_id}: too many concurrent writers")
