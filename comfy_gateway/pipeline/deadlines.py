"""Per-job time limits, kept in the store's "deadlines" schedule so that any live process ends a
job whose limit passed, even when the process that took the submission is gone."""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from ..jobs.model import Job, JobStatus
from ..jobs.store import JobStore
from .sweeper import Sweeper

log = logging.getLogger(__name__)

HOLD = 15.0  # seconds a claimed deadline is this process's to act on before another retries it


class Deadlines(Sweeper):
    def __init__(self, store: JobStore, expire: Callable[[str], Awaitable[None]], interval: float):
        async def act(job_id: str) -> bool:
            await expire(job_id)  # a no-op for a job that ended or is gone
            return True

        super().__init__("deadlines", store.schedule("deadlines"), act, interval=interval, hold=HOLD)
        self._pending: set[asyncio.Task[None]] = set()

    def on_transition(self, job: Job, previous: JobStatus | None) -> None:
        """A store listener: a job that ended needs no time limit any more (keeps the schedule
        as small as the number of unfinished jobs)."""
        if job.status.terminal and previous is not None and not previous.terminal:
            task = asyncio.get_running_loop().create_task(self._forget(job.id))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _forget(self, job_id: str) -> None:
        try:
            await self.schedule.drop(job_id)
        except Exception:  # noqa: BLE001 - the sweep drops it when it comes due anyway
            log.debug("could not drop the time limit of job %s", job_id, exc_info=True)
