"""Where jobs wait: each one's stage queue, its place there and the wait ahead of it.

Several jobs are placed from one reading of the queue sizes (and one per priority that needs
its own), so a stream hub placing every followed job after a queue change reads the store a
few times, not a few times per job (api/queue_watch.py).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Iterable

from ..jobs.model import Job
from .estimates import estimate_wait

if TYPE_CHECKING:
    from .runtime import Runtime

# (the job's queue_position object, every stage's queue size), as the SSE events carry them.
Place = tuple[dict[str, Any], dict[str, int]]

STAGE_OF_STATUS = {"queued": "preprocess", "preprocessing": "preprocess", "generating": "generation",
                   "postprocessing": "postprocess"}


def stage_of(job: Job) -> str | None:
    """The stage a job is in (waiting or worked on); None once it has ended."""
    return STAGE_OF_STATUS.get(job.status.value)


async def queue_places(runtime: "Runtime", jobs: Iterable[Job]) -> dict[str, Place]:
    """Each job's place, from one reading of the queues."""
    jobs = list(jobs)
    store = runtime.store
    sizes = await store.queue_sizes()
    stages = [stage_of(job) for job in jobs]
    # In the stages after this one, only jobs of its priority or higher will be ahead of it.
    priorities = sorted({job.priority for job, stage in zip(jobs, stages) if stage and job.priority > 0})
    ahead = dict(zip(priorities, await asyncio.gather(*(store.queue_sizes(p) for p in priorities))))
    positions = await asyncio.gather(*(store.position(stage, job.id) if stage else _none()
                                       for job, stage in zip(jobs, stages)))
    workers = runtime.workers()
    places: dict[str, Place] = {}
    for job, stage, position in zip(jobs, stages, positions):
        places[job.id] = ({
            "current_queue": stage,
            "position": position,
            "queue_size": sizes.get(stage, 0) if stage else 0,
            "estimated_wait_time": (
                estimate_wait(stage, position, ahead.get(job.priority, sizes), workers, runtime.stats)
                if stage else 0.0),
        }, sizes)
    return places


async def _none() -> None:
    return None
