"""Waiting for a job to reach a state (the API's sync calls, and /generate's wait for its
inputs to be checked), woken by the job's events rather than by polling the store."""

from __future__ import annotations

import time
from typing import Callable

from ..jobs.following import GONE, JobEvents, Tick
from ..jobs.model import Job, JobStatus
from ..jobs.store import JobStore


async def wait_until(store: JobStore, job_id: str, done: Callable[[JobStatus], bool], timeout: float, *,
                     known: Job | None = None, checked: Callable[[Job], bool] | None = None,
                     end_only: bool = False, events: JobEvents | None = None) -> Job | None:
    """Wait until `done` holds for the job's status (statuses only move forward, so once it
    holds it keeps holding), `checked` holds for the job, or the timeout passes; the job as
    then stored. `known`: the job as the caller read it. `events`: the job followed since
    before `known` was read (Runtime.submit_followed), which spares the first look."""
    deadline = time.monotonic() + timeout
    # Registered before the first read, and reading every event from the first: nothing that
    # happens after that read (or after `known` was read) can slip by.
    # Woken by what can make `done` hold: the end only, when that is all it waits for.
    if events is None:
        events = store.events(job_id, wake="end" if checked is None and end_only else "state")
    async with events:
        job = known if known is not None else await store.get(job_id)
        while True:
            if job is None or done(job.status) or (checked is not None and checked(job)):
                return job
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return job
            events.idle = remaining
            item = await anext(events, GONE)
            # Read the record again only when an event says `done` now holds, or on a tick (the
            # time is up, or the job is gone); the events carry each new status, and are read
            # before the record, so the record is at least as new.
            if isinstance(item, Tick) or (item.type != "progress" and done(JobStatus(item.status))) \
                    or (checked is not None and item.type == "status"):
                job = await store.get(job_id)
