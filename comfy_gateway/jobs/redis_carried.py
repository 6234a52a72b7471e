"""Hand-overs to this process's own postprocess written with the job's next change.

A generation that ends hands its job to postprocess (store.advance). When the postprocess queue
is known to be empty and a postprocess taker of this process waits idle (or all are busy but
come back within moments: a short backlog, CARRY_BACKLOG), that hand-over needs no round trip
at all: the job goes to the taker through the local box (redis_handoff.py) under
the generation's lease, which this process keeps holding, and the change is kept here instead
of written. The job's next change writes both in one script, the hand-over's as a state the job
passed through (its event, marks and listeners as before), and, when that change ends the job,
acks the generation's lease. A fast job's postprocess thus costs its final write only.

So that nobody waits long for the `postprocessing` state, a hand-over kept CARRY_FOR seconds
is written alone (redis_changes.py `flush`), and the lease still goes with the job to its end.

Every reader in this process sees the job as the kept change left it (RedisJobStore.get);
other processes see it as it stands in Redis, a state it was in a moment earlier. Once another
process writes the job (a cancel, a time limit: its event comes here), readers here read Redis
again, and the kept change, computed again from Redis when it is written, yields to that
write. A process that dies while a change is kept leaves the job `generating` under a lease
that runs out: the process that takes it over finds the prompt ended on its backend and fetches
its outputs again (generation.py `_taken_over`); nothing runs twice on a GPU.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable

from .model import Job
from .redis_progress import Frames
from .redis_records import Change

log = logging.getLogger("comfy_gateway.jobs.redis")

CARRY_FOR = 0.05  # seconds a kept hand-over waits for the job's next change before it is written
RETRY_AFTER = 1.0  # seconds before a hand-over whose write failed (Redis unreachable) is tried again
# Carried hand-overs that may wait here for a busy postprocess taker (redis_queues.py): under
# load every taker is busy at most moments, yet one comes back within milliseconds; a job that
# waits for it here saves the shared queue's write and take (two script calls of six).
CARRY_BACKLOG = 4
CARRIED_INTO = ("postprocess",)  # the last stage: a job it holds only moves on to its end

Apply = Callable[[Job], Change]


@dataclass(slots=True)
class Carried:
    """A hand-over kept unwritten: its change (computed again from the stored job, should
    another process have written meanwhile), the job as it left it, and the progress frames
    that were waiting for it (they go with it)."""
    job_id: str
    apply: Apply
    job: Job
    waiting: Frames | None = None
    timer: asyncio.TimerHandle | None = None
    outdated: bool = False  # another process wrote the job since: readers here read Redis

    def then(self, apply: Apply | None) -> Apply:
        """This hand-over, then `apply` (None: nothing more), as one change."""
        if apply is None:
            return self.apply
        first_apply = self.apply

        def both(job: Job) -> Change:
            first = first_apply(job)
            passed = job.snapshot()  # as it was in the state it was handed over in
            then = apply(job)
            return Change(then.event, then.progress, first.heavy | then.heavy, (*first.passed, passed, *then.passed))

        return both


class CarriedChanges:
    """The hand-overs kept in this process, by job id, each written by the job's next change or
    by `flush` when its time is up."""

    def __init__(self, flush: Callable[[str], Awaitable[None]]):
        self._flush = flush
        self._kept: dict[str, Carried] = {}
        self._flushing: set[asyncio.Task[None]] = set()

    def keep(self, carried: Carried, after: float = CARRY_FOR) -> None:
        carried.timer = asyncio.get_running_loop().call_later(after, self._time_up, carried.job_id)
        self._kept[carried.job_id] = carried

    def job(self, job_id: str) -> Job | None:
        """The job as its kept hand-over left it, if one is kept and nobody else wrote since."""
        carried = self._kept.get(job_id)
        return carried.job.snapshot() if carried is not None and not carried.outdated else None

    def outdated(self, job_id: str | None) -> None:
        """Another process wrote the job (None: perhaps any job): what its kept hand-over left
        is no longer what readers here should see (a cancel, a time limit may have ended it).
        The hand-over itself is still written in its turn, computed again from Redis."""
        if job_id is None:
            kept = list(self._kept.values())
        else:
            kept = [self._kept[job_id]] if job_id in self._kept else []
        for carried in kept:
            carried.outdated = True

    def take(self, job_id: str) -> Carried | None:
        """The job's kept hand-over, to be written now (its caller holds the job's lock)."""
        carried = self._kept.pop(job_id, None)
        if carried is not None and carried.timer is not None:
            carried.timer.cancel()
        return carried

    def put_back(self, carried: Carried) -> None:
        """Its write failed (Redis unreachable): kept again, written by the next change or later."""
        self.keep(carried, RETRY_AFTER)

    def _time_up(self, job_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._flush(job_id), name=f"carried:{job_id}")
        self._flushing.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._flushing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not write a kept hand-over; trying again", exc_info=task.exception())

    async def flush_all(self) -> None:
        """Write every kept hand-over now (the process is handing its jobs back, or stopping)."""
        for job_id in list(self._kept):
            try:
                await self._flush(job_id)
            except Exception:  # noqa: BLE001 - the job is settled by whoever takes it over
                log.warning("could not write the kept hand-over of job %s", job_id, exc_info=True)
