"""Stage 2: run the prompt on the least-loaded backend and wait for ComfyUI to confirm its end."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

from ..comfy.backend import Backend
from ..comfy.errors import PromptNotAccepted
from ..comfy.history import output_refs, raise_for_status
from ..jobs.model import Job, JobStatus, Progress
from ..jobs.store import JobStore
from .failures import fail_job
from .recover import settle_elsewhere
from .router import BackendRouter

log = logging.getLogger(__name__)


class _Ticket:
    """The slot reservation a job came with from gated_take: spent by the first acquire(),
    given back by the handler otherwise."""

    reserved = True


class Generation:
    """Called with a job id taken through router.gated_take (which reserved a slot for it)."""

    def __init__(self, store: JobStore, router: BackendRouter, lost_after: float):
        self._store = store
        self._router = router
        self._lost_after = lost_after

    async def __call__(self, job_id: str) -> None:
        ticket = _Ticket()
        try:
            job = await self._store.get(job_id)
            if job is None or job.status.terminal:
                return
            if job.status is JobStatus.postprocessing:
                # Taken over from a process that stopped after the prompt ended but before it
                # acked: only the hand-over to postprocess may be missing.
                await self._store.enqueue("postprocess", job_id)
                return
            if job.status is not JobStatus.generating or job.workflow is None:
                return
            try:
                entry = await self._taken_over(job) if job.backend else None
                if entry is None:
                    entry = await self._run_somewhere(job, ticket)
                else:
                    raise_for_status(entry)
                await self._finish(job, entry)
            except Exception as exc:  # noqa: BLE001
                await fail_job(self._store, job_id, exc)
        finally:
            if ticket.reserved:
                self._router.unreserve()

    async def _taken_over(self, job: Job) -> dict[str, Any] | None:
        """The job names a backend: a process sent it there (or was about to) and stopped.
        Settle it from that backend; None when the backend never got it (submit again)."""
        backend = self._router.by_name(job.backend)
        if backend is None:
            log.warning("job %s names backend %s, which this process does not know; submitting again",
                        job.id, job.backend)
            return None
        await self._store.update(job.id, message=f"taken over: following its prompt on {backend.name}")
        entry = await settle_elsewhere(backend, job.id, self._lost_after)
        if entry is None:
            log.info("job %s: %s never got its prompt; submitting it again", job.id, backend.name)
        return entry

    async def _run_somewhere(self, job: Job, ticket: "_Ticket") -> dict[str, Any]:
        """Run on the least-loaded backend in rotation. A backend that refuses the prompt
        outright (down, 5xx) did not queue it, so the next one gets it; a few tries, then the
        job fails with the last backend's answer."""
        for attempt in range(1, 2 * len(self._router.backends) + 2):
            backend = await self._router.acquire(reserved=ticket.reserved)
            ticket.reserved = False
            try:
                return await self._run(job, backend)
            except PromptNotAccepted as exc:
                if attempt > 2 * len(self._router.backends):
                    raise
                log.warning("job %s: %s refused the prompt (%s); trying again", job.id, backend.name, exc)
            finally:
                self._router.release(backend)
            await asyncio.sleep(min(0.1 * attempt, 1.0))
        raise AssertionError("unreachable")

    async def _run(self, job: Job, backend: Backend) -> dict[str, Any]:
        job_id = job.id
        # Recorded BEFORE the prompt goes out: whoever takes the job over later asks this backend.
        await self._store.update(job_id, message=f"running on {backend.name}", backend=backend.name,
                                 marks={"generation_started": time.time()})

        def on_progress(p: Progress) -> None:
            asyncio.get_running_loop().create_task(self._store.set_progress(job_id, p))

        assert job.workflow is not None
        return await backend.run(job_id, job.workflow, on_progress)

    async def _finish(self, job: Job, entry: dict[str, Any]) -> None:
        include_temp = bool(job.request.get("include_previews"))
        refs = [r for r in output_refs(entry) if include_temp or r.type != "temp"]
        job = await self._store.update(
            job.id, status=JobStatus.postprocessing, message=f"fetching {len(refs)} output(s)",
            marks={"generation_finished": time.time()},
            comfy_outputs=[dataclasses.asdict(r) for r in refs],
        )
        if not job.status.terminal:
            await self._store.enqueue("postprocess", job.id)
