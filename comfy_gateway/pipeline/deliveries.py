"""Counting how often a stage takes a job, in the store: a job whose processing kills its process
(out of memory on a huge output, say) would otherwise be taken over by every process in turn.
Past MAX_DELIVERIES it is failed with a message instead of being worked on again."""

from __future__ import annotations

import logging
from typing import Awaitable, Callable

from ..jobs.model import JobError, JobStatus
from ..jobs.store import JobStore
from ..logs import job_context

log = logging.getLogger(__name__)


# Ends a job for good: (job id, message, error); the runtime's withdraws it from ComfyUI too.
Ender = Callable[[str, str, JobError], Awaitable[object]]


def counted(store: JobStore, stage: str, take: Callable[[], Awaitable[str]],
            max_deliveries: int, end: Ender | None = None) -> Callable[[], Awaitable[str]]:
    """`take`, counting each job it returns; one taken too often is ended (failed, and withdrawn
    wherever it is) and acked here, and the next one is taken instead."""

    async def take_counted() -> str:
        while True:
            job_id = await take()
            try:
                times = await store.count_delivery(stage, job_id)
            except Exception:  # noqa: BLE001 - counting must never lose the job it took
                log.warning("%s: could not count the delivery of job %s", stage, job_id, exc_info=True)
                return job_id
            if times <= max_deliveries:
                return job_id
            with job_context(job_id):
                await _give_up(store, stage, job_id, times, end)

    return take_counted


async def _give_up(store: JobStore, stage: str, job_id: str, times: int, end: Ender | None) -> None:
    message = (f"the {stage} stage took this job {times} times and each process working on it stopped "
               f"before finishing (crashed or killed?); not trying again (MAX_DELIVERIES={times - 1})")
    log.error("job %s: %s", job_id, message)
    error = JobError(kind="internal", type="too_many_deliveries", message=message)
    try:
        if end is not None:
            await end(job_id, message, error)
        else:
            await store.update(job_id, status=JobStatus.failed, message=message, error=error)
    except Exception:  # noqa: BLE001 - it ended meanwhile, or is gone: nothing left to end
        log.info("job %s: already ended or gone", job_id)
    finally:
        await store.ack(stage, job_id)
