"""What the Redis store's scripts and reads return, as named values rather than positions in
a list: a job's record, the outcome of CREATE, UPDATE and TAKE (redis_lua.py documents them),
and a change as the store made it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

from .model import Job, JobStatus

RECORD_FIELDS = ("v", "born", "core", "progress", "request", "workflow")


@dataclass(frozen=True, slots=True)
class Record:
    """A job's hash as read (RECORD_FIELDS, in that order): None where a field is missing; a
    record whose `core` is None is a job that does not exist."""
    v: str | None
    born: str | None
    core: str | None
    progress: str | None
    request: str | None
    workflow: str | None

    @classmethod
    def of(cls, values: Sequence[Any]) -> "Record":
        return cls(*values)


@dataclass(frozen=True, slots=True)
class Handed:
    """A job a queueing script took for this process's idle taker (redis_lua_parts.py enqueue)."""
    entry: str  # its entry id in the stage's stream (the lease)
    job_id: str  # the job queued, unless an old store's unread entry went first
    deliveries: int  # how many times the stage has taken it, this take included
    progress: str | None  # the queued job's progress field


def parse_queued(res: Any) -> bool | Handed:
    """What enqueue returned: joined the queue (True), was there already (False), or was
    taken at once (Handed)."""
    if isinstance(res, list):
        _, entry, job_id, deliveries, progress = res
        return Handed(entry, job_id, int(deliveries), progress or None)
    return bool(res)


@dataclass(frozen=True, slots=True)
class Created:
    outcome: Literal["ok", "exists", "full", "owner_full", "busy"]
    count: int  # "full": jobs waiting; "owner_full": the owner's jobs not ended; else 0
    queued: bool | Handed = False  # "ok": as enqueue returned it

    @classmethod
    def parse(cls, res: Sequence[Any]) -> "Created":
        if res[0] == "ok":
            return cls("ok", 0, parse_queued(res[1]) if len(res) > 1 else True)
        return cls(res[0], int(res[1]) if len(res) > 1 else 0)


@dataclass(frozen=True, slots=True)
class Updated:
    seq: int  # the number of the last event written (the change's own, if it had one), else 0
    queued: bool | Handed  # the job joined the stage queue asked for (Handed: and was taken)
    acked: bool  # the lease of the stage handing over was acked


UPDATE_GONE, UPDATE_CONFLICT = -1, -2


def parse_update(res: Any) -> Updated | Literal["gone", "conflict"]:
    if res == UPDATE_GONE:
        return "gone"
    if res == UPDATE_CONFLICT:
        return "conflict"
    seq, queued, acked = res
    return Updated(int(seq), parse_queued(queued), bool(acked))


@dataclass(frozen=True, slots=True)
class Taken:
    job_id: str
    entry: str  # its entry id in the stage's stream (the lease)
    how: Literal["new", "reclaimed"]  # reclaimed: its previous taker's lease ran out
    previous: str  # that previous taker ("" for a new take)
    deliveries: int  # how many times the stage has taken it, this take included
    record: Record  # the job as read in the same step
    waiting: int  # jobs still waiting in the stage after this take

    @classmethod
    def parse(cls, res: Any) -> "Taken | None":
        if not res:
            return None
        job_id, entry, how, previous, deliveries, record, waiting = res
        return cls(job_id, entry, how, previous, int(deliveries), Record.of(record), int(waiting))


@dataclass(frozen=True, slots=True)
class Changed:
    """A change written: the job after it, and its status before (None: the job had ended
    and was left as it was); and the job in each state it passed through on the way."""
    job: Job
    previous: JobStatus | None
    passed: tuple[Job, ...] = ()
