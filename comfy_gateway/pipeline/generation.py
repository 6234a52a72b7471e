"""Stage 2: put the job's inputs on one backend, run the prompt there and wait for ComfyUI to
confirm its end."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import time
from typing import Any, Awaitable, Callable

import orjson

from ..comfy.backend import Backend
from ..comfy.errors import PromptCancelled, PromptLost, PromptRejected
from ..comfy.history import output_refs
from ..inputs.find import set_at
from ..inputs.resolver import InputResolver
from ..jobs.model import Job, JobStatus, Progress
from ..jobs.store import JobStore
from .failures import fail_job
from .uploads import BackendUploads

MAX_ATTEMPTS = 2
log = logging.getLogger(__name__)


class Generation:
    """One instance per backend; its workers take jobs only while that backend is connected."""

    def __init__(self, store: JobStore, backend: Backend, inputs: InputResolver):
        self._store = store
        self.backend = backend
        self._inputs = inputs
        self.uploads = BackendUploads(backend.http)
        self._pending: set[asyncio.Task[None]] = set()

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
                # Frames arrive in the websocket's reader: record them without blocking it.
                task = asyncio.get_running_loop().create_task(self._store.set_progress(job_id, p))
                self._pending.add(task)  # hold a reference until done (asyncio keeps only weak ones)
                task.add_done_callback(self._pending.discard)

            async def still_wanted() -> bool:
                current = await self._store.get(job_id)
                return current is not None and not current.status.terminal

            entry = await self._run(job, on_progress, still_wanted)
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
                # A restarted ComfyUI forgot it: run it again, on whichever backend is free
                # (its inputs are uploaded again there if that backend lacks them).
                await self._store.update(job_id, message=f"{exc}; retrying")
                await self._store.enqueue("generation", job_id)
            else:
                await fail_job(self._store, job_id, exc)
        except Exception as exc:  # noqa: BLE001
            await fail_job(self._store, job_id, exc)

    async def _run(self, job: Job, on_progress: Any, still_wanted: Callable[[], Awaitable[bool]]) -> dict[str, Any]:
        if not job.inputs:
            return await self.backend.run(job.id, job.workflow or {}, on_progress, still_wanted)
        workflow, reused = await self._place_inputs(job)
        try:
            return await self.backend.run(job.id, workflow, on_progress, still_wanted)
        except PromptRejected as exc:
            # A file this backend had before may be gone (a restarted ComfyUI with a fresh input
            # folder): if ComfyUI names one, upload again and try once more. A rejected prompt
            # never entered its queue, so the same prompt id is free.
            text = orjson.dumps([exc.error, exc.node_errors]).decode()
            gone = [sha for sha, name in reused.items() if name in text]
            if not gone:
                raise
            for sha in gone:
                self.uploads.forget(sha)
            workflow, _ = await self._place_inputs(job)
            return await self.backend.run(job.id, workflow, on_progress, still_wanted)

    async def _place_inputs(self, job: Job) -> tuple[dict[str, Any], dict[str, str]]:
        """The workflow with each input's name on this backend, uploading what it lacks; and
        {sha256: name} of those it had already."""
        workflow = copy.deepcopy(job.workflow or {})
        distinct = {item["sha256"]: item["source"] for item in job.inputs}

        async def one(sha: str, source: str) -> tuple[str, str, bool]:
            name, fresh = await self.uploads.ensure(sha, lambda: self._inputs.blob_for(source, sha))
            return sha, name, fresh

        placed = await asyncio.gather(*(one(sha, src) for sha, src in distinct.items()))
        names = {sha: name for sha, name, _ in placed}
        for item in job.inputs:
            set_at(workflow, item["path"], names[item["sha256"]])
        return workflow, {sha: name for sha, name, fresh in placed if not fresh}
