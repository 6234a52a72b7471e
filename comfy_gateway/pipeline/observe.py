"""What the runtime tells the outside about jobs: log lines and metrics on each transition,
stage timings, and the snapshot of the present that /metrics renders."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..jobs.model import Job, JobStatus
from ..metrics import Snapshot

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger("comfy_gateway.jobs")


def log_transition(job: Job, previous: JobStatus | None) -> None:
    """One line when a job is accepted and one when it ends (INFO); the stages between at
    DEBUG. The id is passed explicitly: whoever changed the job, the line carries it."""
    extra = {"job_id": job.id}
    if previous is None:
        log.info("accepted: %s", job.message, extra=extra)
    elif job.status.terminal:
        total = job.durations()["total"]
        took = f" after {total:.3f} s" if total is not None else ""
        level = logging.WARNING if job.status is JobStatus.failed and job.error and job.error.kind == "internal" \
            else logging.INFO
        log.log(level, "%s%s: %s", job.status.value, took, job.message, extra=extra)
    else:
        log.debug("%s -> %s: %s", previous.value, job.status.value, job.message, extra=extra)


async def snapshot(runtime: "Runtime") -> Snapshot:
    """The present as /metrics shows it: read fresh at each scrape, never kept in step by hand."""
    return Snapshot(
        jobs=await runtime.store.status_counts(),
        queue_depth=await runtime.store.queue_sizes(),
        workers=runtime.workers(),
        busy={stage: sum(p.busy for p in pools) for stage, pools in runtime.pools.items()},
        backends={b.name: (b.connected.is_set(), b.in_flight, b.busy_seconds()) for b in runtime.pool.backends},
    )
