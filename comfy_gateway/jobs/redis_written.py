"""Jobs this process wrote every version and every event of, from their creation to their end:
their events and final record, for the followers here that read them right after the end.

A sync call, or a stream, in the process that ran a job wakes when the job ends and reads its
events and record from Redis (redis_reads.py). When this process created the job and wrote
each of its changes and events itself, in order, nothing it would read is unknown here: the
events are numbered one after another (a gap means another process wrote one), and each change
names the version it replaced (one that is not the last written here means another process
wrote in between). Once the job has ended no event can follow, so such a job's events and
record are given from here, for MAX_AGE seconds after the end: what a read then would have
returned, bar a change without an event another process made meanwhile (e.g. its webhook
bookkeeping), as a read a moment earlier would have.

Any doubt drops a job from here, and its followers read Redis as before.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import orjson

from .events import JobEvent
from .redis_results import Record

MAX_AGE = 1.0  # seconds after its end a job's events and record are given from here
_MAX_JOBS = 1024  # jobs followed at once (oldest dropped first: their followers read Redis)
_MAX_EVENTS = 512  # events kept per job (a longer job is dropped: its followers read Redis)

# An event a script writes before a change's own: type, status, message, progress (JSON); ''
# status and message: the job's as they stand (a progress frame is sent under them).
Before = tuple[str, str, str, str]


def frames_before(frames: list[str]) -> list[Before]:
    """Progress frames as the events a script writes before a change's own (or alone)."""
    return [("progress", "", "", frame) for frame in frames]


@dataclass(slots=True)
class _Written:
    v: int
    seq: int
    born: str
    core: str
    request: str | None
    workflow: str | None
    progress: str | None
    status: str
    message: str
    events: list[JobEvent] = field(default_factory=list)
    ended_at: float | None = None  # monotonic


class WrittenHere:
    def __init__(self) -> None:
        self._jobs: OrderedDict[str, _Written] = OrderedDict()
        self._ends: deque[tuple[float, str]] = deque()  # (ended at, job id), oldest first

    def created(self, job_id: str, born: str, core: str, request: str, workflow: str,
                events: list[JobEvent]) -> None:
        """A job created here (CREATE), with the events it was created with (numbered from 1)."""
        last = events[-1]
        self._jobs[job_id] = _Written(1, last.seq, born, core, request, workflow or None, None, last.status,
                                      last.message, list(events))
        self._trim()

    def events_of(self, job_id: str, last_seq: int, before: list[Before], at: float,
                  own: tuple[str | None, str, str, dict[str, Any] | None]) -> list[JobEvent]:
        """The events a script wrote, numbered up to `last_seq`: those written before a change's
        own (Before), then its own (type, status, message, progress; no type: none)."""
        w = self._jobs.get(job_id)
        if w is None:
            return []
        kind, status, message, progress = own
        seq = last_seq - len(before) - (1 if kind else 0)
        events, st, msg = [], w.status, w.message
        for event_type, event_status, event_message, event_progress in before:
            if event_status:
                st, msg = event_status, event_message
            seq += 1
            progress_now = orjson.loads(event_progress) if event_progress else None
            events.append(JobEvent(seq, event_type, st, msg, at, progress_now))
        if kind:
            events.append(JobEvent(seq + 1, kind, status, message, at, progress))
        return events

    def changed(self, job_id: str, v_before: str, *, core: str, request: str, workflow: str, progress: str,
                status: str, message: str, events: list[JobEvent], ended: bool) -> None:
        """A change written here (UPDATE): the version it replaced, the record's new parts
        ('' = unchanged), the events it wrote (events_of)."""
        w = self._jobs.get(job_id)
        if w is None:
            return
        if int(v_before) != w.v or (events and events[0].seq != w.seq + 1):
            del self._jobs[job_id]  # another process wrote in between
            return
        w.v += 1
        w.core, w.status, w.message = core, status, message
        w.request = request or w.request
        w.workflow = workflow or w.workflow
        w.progress = progress or w.progress
        if events:
            w.seq = events[-1].seq
            self._add(job_id, w, events)
        if ended and w.ended_at is None:
            w.ended_at = time.monotonic()
            self._ends.append((w.ended_at, job_id))

    def progressed(self, job_id: str, last_seq: int, frames: list[str], at: float) -> None:
        """Progress frames written here (PROGRESS): events last_seq - len + 1 ... last_seq."""
        events = self.events_of(job_id, last_seq, frames_before(frames), at, (None, "", "", None))
        w = self._jobs.get(job_id)
        if w is None:
            return
        if events[0].seq != w.seq + 1:
            del self._jobs[job_id]  # another process wrote in between
            return
        w.seq, w.progress = last_seq, frames[-1]
        self._add(job_id, w, events)

    def ended(self, job_id: str, after: int) -> tuple[list[JobEvent], Record] | None:
        """The job's events past `after` and its record, if it ended here a moment ago."""
        w = self._jobs.get(job_id)
        if w is None or w.ended_at is None:
            return None
        if time.monotonic() - w.ended_at > MAX_AGE:
            del self._jobs[job_id]
            return None
        events = [_copy(e) for e in w.events if e.seq > after]
        return events, Record(str(w.v), w.born, w.core, w.progress, w.request, w.workflow)

    def forget(self, job_id: str | None) -> None:
        """Another process wrote the job (None: perhaps any job): not all its writes are ours."""
        if job_id is None:
            self._jobs.clear()
            self._ends.clear()
        else:
            self._jobs.pop(job_id, None)

    def _add(self, job_id: str, w: _Written, events: list[JobEvent]) -> None:
        w.events.extend(events)
        if len(w.events) > _MAX_EVENTS:
            del self._jobs[job_id]

    def _trim(self) -> None:
        too_old = time.monotonic() - MAX_AGE
        while self._ends and self._ends[0][0] < too_old:
            at, job_id = self._ends.popleft()
            w = self._jobs.get(job_id)
            if w is not None and w.ended_at == at:
                del self._jobs[job_id]
        while len(self._jobs) > _MAX_JOBS:
            self._jobs.popitem(last=False)


def _copy(event: JobEvent) -> JobEvent:
    # Each reader gets its own (a reader may keep or change what it was given).
    progress: Any = orjson.loads(orjson.dumps(event.progress)) if event.progress is not None else None
    return JobEvent(event.seq, event.type, event.status, event.message, event.time, progress)
