"""How the Redis job store writes a job record and reads it back (the hash's fields are
documented in redis_lua.py, whose scripts expect the same layout), and the memory of the
records this process last saw, which spares a read before a change (see _Known), and the
decoding of the job again at each change or read (see _Known.parsed and _Known.decoded).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

import orjson

from .events import JobEvent
from .model import Job, Progress
from .redis_results import Record

_HEAVY = {"request", "workflow"}  # written once, kept apart so the hot path rewrites little
# Progress is a field of its own: a progress frame writes a few hundred bytes, never the record.
_APART = _HEAVY | {"progress"}
_KNOWN_MAX = 1024  # job records remembered for compare-and-set without a read (see _Known)
_DECODED_MAX = 256  # of those, kept decoded (see _Known.parsed): more than a process works on at once
_DECODED_BYTES = 16 << 20  # and the sizes of their texts in all (a decoded request is a few times bigger)
_ENDED_MAX = 64  # jobs that just ended, kept for the reads their end wakes (a sync answer, followers)


@dataclass(frozen=True, slots=True)
class Change:
    """What an `apply` callback of the store's _change did to a job: the event it records
    (None: none), the progress that event carries, the heavy fields it set (rewritten), and
    the job as it was in each state it passed through first (store.Passing, a kept hand-over:
    redis_carried.py), in order."""
    event: str | None = None
    progress: dict[str, Any] | None = None
    heavy: frozenset[str] = frozenset()
    passed: tuple[Job, ...] = ()


@dataclass(frozen=True, slots=True)
class _Known:
    """A job record as this process last read or wrote it, at version v of the job born as
    `born`. A change computed from it is written only if both still match (UPDATE checks), so
    a stale copy costs one failed attempt and a read, never a wrong write."""
    v: str
    born: str
    core: str
    request: str | None
    workflow: str | None
    full: bool  # request and workflow known (False after a read of the core alone)
    # The request and workflow decoded from those texts, when full. Every Job made from this
    # record shares them, as every reader of the memory store shares its one Job: nothing
    # changes them in place (a stage that edits a workflow edits a deep copy). Decoded at each
    # change instead, a job with a 20 KB workflow costs 8 JSON decodes on its way through one
    # process (~4 ms of CPU on 2 cores).
    parsed: tuple[dict[str, Any], dict[str, Any] | None] | None = None
    # The job this record was decoded from or encoded to, without its progress, when `parsed`:
    # a job made from the record is a copy of it (Job.snapshot: a decode costs ~20 µs, a copy
    # ~3), sharing what the copies share with every reader of the memory store's one Job.
    decoded: Job | None = None

    def job(self) -> Job:
        """The job as this record holds it (without its progress, which a change never reads)."""
        if self.decoded is not None:
            return self.decoded.snapshot()
        return decode_job(self.core, None, self.request, self.workflow, self.parsed)

    def job_for(self, record: Record) -> Job | None:
        """The job `record` (read or taken) holds, if it is this one (its progress its own)."""
        if self.decoded is None or record.core != self.core or self.parsed_for(record) is None:
            return None
        job = self.decoded.snapshot()
        if record.progress:
            job.progress = Progress.model_validate_json(record.progress)
        return job

    def parsed_for(self, record: Record) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
        """The decoded request and workflow, if `record` (read or taken) has the same texts."""
        if (self.parsed is None or record.v != self.v or record.born != self.born
                or record.request != self.request or record.workflow != self.workflow):
            return None
        return self.parsed


class KnownRecords:
    """The job records this process last read or wrote (see _Known), newest last, at most
    _KNOWN_MAX of them; the newest of them kept decoded too (at most _DECODED_MAX, whose texts
    are at most _DECODED_BYTES in all): the jobs this process works on, with room to spare."""

    def __init__(self) -> None:
        self._known: OrderedDict[str, _Known] = OrderedDict()
        # Jobs that ended, for reads only: a change of an ended job (its webhook's bookkeeping)
        # reads the record afresh, so these never feed a compare-and-set.
        self._ended: OrderedDict[str, _Known] = OrderedDict()
        self._decoded: OrderedDict[str, int] = OrderedDict()  # job id -> its texts' size, newest last
        self._decoded_bytes = 0

    def get(self, job_id: str) -> _Known | None:
        return self._known.get(job_id)

    def for_reading(self, job_id: str) -> _Known | None:
        """The record a read may be made from: a job still moving, or one that just ended."""
        return self._known.get(job_id) or self._ended.get(job_id)

    def forget(self, job_id: str | None) -> None:
        """The job's record may have changed in Redis (None: any job's may have)."""
        if job_id is None:
            self._known.clear()
            self._ended.clear()
            self._decoded.clear()
            self._decoded_bytes = 0
            return
        self._known.pop(job_id, None)
        self._ended.pop(job_id, None)
        self._undecoded(job_id)

    def remember(self, job: Job, v: str | None, born: str | None, core: str,
                 request: str | None, workflow: str | None, full: bool) -> None:
        # Only jobs still moving: an ended one changes rarely (webhook bookkeeping).
        if job.status.terminal or v is None or born is None:
            self.forget(job.id)
            if job.status.terminal and v is not None and born is not None and full \
                    and len(request or "") + len(workflow or "") <= _DECODED_BYTES // _DECODED_MAX:
                self._ended[job.id] = _Known(v, born, core, request, workflow, full, (job.request, job.workflow),
                                             _decoded(job))
                while len(self._ended) > _ENDED_MAX:
                    self._ended.popitem(last=False)
            return
        kept = self._known.get(job.id)
        if kept is not None and kept.born == born and int(kept.v) > int(v):
            # A read answered before a write of this process, and handled after it: the write
            # is newer (a change computed from the read would be refused, or fail to apply).
            return
        self._undecoded(job.id)
        size = len(request or "") + len(workflow or "")
        # `job` was decoded from (or encoded to) these texts: its request and workflow are theirs.
        # A request too big to keep twice (an inline input not yet stored) is decoded each time.
        parsed = (job.request, job.workflow) if full and size <= _DECODED_BYTES else None
        self._known[job.id] = _Known(v, born, core, request, workflow, full, parsed, _decoded(job) if parsed else None)
        self._known.move_to_end(job.id)
        if parsed is not None:
            self._decoded[job.id] = size
            self._decoded_bytes += size
        while len(self._decoded) > _DECODED_MAX or self._decoded_bytes > _DECODED_BYTES:
            oldest = next(iter(self._decoded))
            self._undecoded(oldest)
            entry = self._known.get(oldest)
            if entry is not None:
                self._known[oldest] = replace(entry, parsed=None, decoded=None)  # keeps its place
        while len(self._known) > _KNOWN_MAX:
            self._undecoded(self._known.popitem(last=False)[0])

    def _undecoded(self, job_id: str) -> None:
        self._decoded_bytes -= self._decoded.pop(job_id, 0)


def _decoded(job: Job) -> Job:
    """What a record keeps of the job it was made from (_Known.decoded): a copy with marks of
    its own (the caller goes on changing its job) and without its progress."""
    return job.model_copy(update={"marks": dict(job.marks), "progress": None})


def encode_core(job: Job) -> str:
    """The record's `core` field: the job minus its heavy parts and progress."""
    return job.model_dump_json(exclude=_APART)


def decode_job(core: str, progress: str | None, request: str | None, workflow: str | None,
               parsed: tuple[dict[str, Any], dict[str, Any] | None] | None = None) -> Job:
    """The job from its record's fields; `parsed`: its request and workflow already decoded."""
    job = Job.model_validate_json(core)
    if progress:
        job.progress = Progress.model_validate_json(progress)
    if parsed is not None:
        job.request, job.workflow = parsed
    else:
        job.request = orjson.loads(request) if request else {}
        job.workflow = orjson.loads(workflow) if workflow else None
    return job


def decode_events(entries) -> list[JobEvent]:
    """A job's events from the entries of its event stream."""
    return [
        JobEvent(seq=int(f["seq"]), type=f["type"], status=f["status"], message=f["message"],
                 time=float(f["time"]), progress=orjson.loads(f["progress"]) if f.get("progress") else None)
        for _, f in entries
    ]
