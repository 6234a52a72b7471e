"""Jobs created already "running on" a backend: the generation's first write folded into the create.

Before a generation posts a prompt it writes "running on <backend>" (generation.py): write-ahead,
so that a process taking the job over knows where to look for the prompt, and with a watch made
before it, so that an end coming later withdraws the prompt. For a job prepared on arrival that
goes at once to an idle generation taker of this process, that write can go with the create
itself: one store write (a Redis round trip) less on every such job's way.

So, before such a create, `offer` names the backend a free slot is on now, makes the job's watch,
and gives the store a claim (store.Claim) to write with the job. The store keeps the claim only
if it hands the job to one of this process's idle takers in that same step; `created` then keeps
the watch for the taker, else drops it. The taker (`take`) runs the job on that backend without
the write when the router gives it that backend, and writes "running on" the other one if not.

A process that stops between the create and the POST leaves a job naming a backend that never got
its prompt, as one that stopped just after the write always could: the process taking it over
asks that backend, finds nothing and submits it again (recover.py).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from ..jobs.following import JobEvents
from ..jobs.model import Job, JobStatus
from ..jobs.store import Claim, JobStore, Passing
from .router import BackendRouter

# A claimed job is normally taken within a few milliseconds; one not taken by then (its taker went
# busy and the job waited) is treated as any job naming a backend: asked there first.
KEPT_FOR = 30.0


@dataclass(slots=True)
class Claimed:
    """A job created "running on" `backend` in this process, and its watch, made before the create."""
    backend: str
    watch: JobEvents
    timer: asyncio.TimerHandle | None = None


class RunClaims:
    def __init__(self, store: JobStore, router: BackendRouter):
        self._store, self._router = store, router
        self._held: dict[str, Claimed] = {}

    def offer(self, job_id: str) -> Claim | None:
        """The claim to create a prepared job with; None when no backend has a free slot now."""
        backend = self._router.peek()
        if backend is None:
            return None
        # Made before the create, which tells the taker the job still runs: any end after it
        # wakes this watch, as after the taker's own "running on" write.
        claimed = Claimed(backend.name, self._store.events(job_id, wake="end", look_first=False))
        claimed.timer = asyncio.get_running_loop().call_later(KEPT_FOR, self._drop, job_id)
        self._drop(job_id)
        self._held[job_id] = claimed
        return Claim(Passing(JobStatus.generating, f"running on {backend.name}", {"generation_started": time.time()}),
                     {"backend": backend.name, "attempts": 1})

    def created(self, job_id: str, job: Job | None) -> None:
        """After the create (`job` None if it failed): the claim stays only if the store wrote it."""
        claimed = self._held.get(job_id)
        if claimed is not None and (job is None or job.backend != claimed.backend):
            self._drop(job_id)

    def take(self, job: Job) -> Claimed | None:
        """The claim this process holds on the job it is about to run (the taker closes its watch)."""
        claimed = self._held.pop(job.id, None)
        if claimed is None:
            return None
        if claimed.timer is not None:
            claimed.timer.cancel()
        if job.backend != claimed.backend:
            claimed.watch.close()
            return None
        return claimed

    def _drop(self, job_id: str) -> None:
        claimed = self._held.pop(job_id, None)
        if claimed is not None:
            if claimed.timer is not None:
                claimed.timer.cancel()
            claimed.watch.close()
