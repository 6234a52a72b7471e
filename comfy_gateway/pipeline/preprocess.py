"""Stage 1: build the prompt ComfyUI will run from the client's request."""

from __future__ import annotations

import time

from ..jobs.model import JobStatus
from ..jobs.store import JobStore
from ..workflows.prepare import prepare_workflow
from .failures import fail_job


class Preprocess:
    def __init__(self, store: JobStore):
        self._store = store

    async def __call__(self, job_id: str) -> None:
        job = await self._store.get(job_id)
        if job is None or job.status.terminal:
            return
        if job.status is JobStatus.generating:
            # Taken over from a process that stopped after preparing the job but before it
            # acked: only the hand-over may be missing (enqueue is a no-op if it happened).
            await self._store.enqueue("generation", job_id)
            return
        if job.status is not JobStatus.queued and job.status is not JobStatus.preprocessing:
            return  # already further along: nothing left for this stage
        try:
            await self._store.update(job_id, status=JobStatus.preprocessing, message="preparing the workflow",
                                     marks={"preprocess_started": time.time()})
            workflow = prepare_workflow(job.request["workflow_json"], job.id)
            job = await self._store.update(
                job_id, status=JobStatus.generating, message="waiting for a free backend",
                marks={"preprocess_finished": time.time()}, workflow=workflow,
            )
            if not job.status.terminal:
                await self._store.enqueue("generation", job_id)
        except Exception as exc:  # noqa: BLE001 - whatever happens fails this job only
            await fail_job(self._store, job_id, exc)
