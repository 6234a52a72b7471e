"""Ending a job before its time: on a client's cancel, or when its deadline passes."""

from __future__ import annotations

import logging

from ..comfy.pool import BackendPool
from ..jobs.model import Job, JobError, JobStatus
from ..jobs.store import STAGES, JobStore

log = logging.getLogger(__name__)


class AlreadyEnded(Exception):
    def __init__(self, job: Job):
        super().__init__(f"job {job.id} already ended: {job.status.value}")
        self.job = job


class Canceller:
    def __init__(self, store: JobStore, pool: BackendPool):
        self._store, self._pool = store, pool

    async def stop(self, job_id: str, status: JobStatus, message: str, error: JobError | None = None) -> Job:
        """End the job with `status` first (terminal states are final, so whatever ComfyUI
        reports later cannot revive it), then take it out of its queue and out of ComfyUI."""
        job = await self._store.get(job_id)
        if job is None:
            raise KeyError(job_id)
        if job.status.terminal:
            raise AlreadyEnded(job)
        was = job.status
        extra = {"error": error} if error is not None else {}
        job = await self._store.update(job_id, status=status, message=message, **extra)
        if job.status is not status:  # it ended on its own a moment ago
            raise AlreadyEnded(job)
        for stage in STAGES:
            await self._store.remove_from_queue(stage, job_id)
        if was is JobStatus.generating:
            # Whichever backend holds it (or is about to): the cancel is scoped to this prompt id.
            for backend in self._pool.backends:
                if job.backend in (None, backend.name):
                    await backend.cancel(job_id)
        log.info("job %s %s (was %s)", job_id, status.value, was.value)
        return job
