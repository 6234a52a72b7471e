"""Stage 2: run the prompt on one backend and wait for ComfyUI to confirm its end."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from ..comfy.backend import Backend
from ..comfy.errors import PromptCancelled, PromptLost
from ..comfy.history import output_refs
from ..jobs.model import JobStatus, Progress
from ..jobs.store import JobStore
from .failures import fail_job

MAX_ATTEMPTS = 2
log = logging.getLogger(__name__)


class Generation:
    """One instance per backend; its workers take jobs only while that backend is connected."""

    def __init__(self, store: JobStore, backend: Backend):
        self._store = store
        self.backend = backend

    async def ready(self) -> None:
        await self.backend.connected.wait()

    async def __call__(self, job_id: str) -> None:
        job = await self._store.get(job_id)
        if job is None or job.status.terminal or job.workflow is None:
            return
        backend = self.backend
        try:
            job = await self._store.update(job_id, message=f"running on {backend.name}", backend=backend.name,
                                           marks={"generation_started": time.time()}, attempts=job.attempts + 1)
            if job.status.terminal:  # cancelled or timed out while it waited for us
                return

            def on_progress(p: Progress) -> None:
                asyncio.get_running_loop().create_task(self._store.set_progress(job_id, p))

            async def still_wanted() -> bool:
                current = await self._store.get(job_id)
                return current is not None and not current.status.terminal

            entry = await backend.run(job_id, job.workflow, on_progress, still_wanted)
            include_temp = bool(job.request.get("include_previews"))
            refs = [r for r in output_refs(entry) if include_temp or r.type != "temp"]
            log.info("%s ran the prompt: %d output(s) to fetch", backend.name, len(refs))
            job = await self._store.update(
                job_id, status=JobStatus.postprocessing, message=f"fetching {len(refs)} output(s)",
                marks={"generation_finished": time.time()},
                comfy_outputs=[dataclasses.asdict(r) for r in refs],
            )
            if not job.status.terminal:
                await self._store.enqueue("postprocess", job_id)
        except PromptCancelled:
            return  # the job already ended (cancelled / timed_out) where the cancel came from
        except PromptLost as exc:
            job = await self._store.get(job_id)
            if job is not None and not job.status.terminal and job.attempts < MAX_ATTEMPTS:
                # A restarted ComfyUI forgot it: run it again, on whichever backend is free.
                await self._store.update(job_id, message=f"{exc}; retrying")
                await self._store.enqueue("generation", job_id)
            else:
                await fail_job(self._store, job_id, exc)
        except Exception as exc:  # noqa: BLE001
            await fail_job(self._store, job_id, exc)
