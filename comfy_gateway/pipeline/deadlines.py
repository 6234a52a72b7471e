"""Per-job time limits, kept in the store's "deadlines" schedule so that any live process ends a
job whose limit passed, even when the process that took the submission is gone. The store puts
a job in the schedule when it creates it and takes it out when the job ends, in the same atomic
steps (jobs/store.py create): the schedule is as small as the number of unfinished jobs."""

from __future__ import annotations

from typing import Awaitable, Callable

from ..jobs.store import JobStore
from .sweeper import Sweeper

HOLD = 15.0  # seconds a claimed deadline is this process's to act on before another retries it


class Deadlines(Sweeper):
    def __init__(self, store: JobStore, expire: Callable[[str], Awaitable[None]], interval: float):
        async def act(job_id: str) -> bool:
            await expire(job_id)  # a no-op for a job that ended or is gone
            return True

        super().__init__("deadlines", store.schedule("deadlines"), act, interval=interval, hold=HOLD)
