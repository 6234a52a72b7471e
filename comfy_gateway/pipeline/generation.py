"""Stage 2: put the job's inputs on the least-loaded backend, run the prompt there and wait for
ComfyUI to confirm its end. A job taken over from a process that stopped is first looked for on
the backend it was sent to (recover.py)."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import time
from typing import Any, Awaitable

import orjson
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from ..comfy.backend import Backend
from ..comfy.errors import PromptCancelled, PromptLost, PromptNotAccepted, PromptRejected
from ..comfy.history import output_refs, raise_for_status
from ..inputs.find import set_at
from ..inputs.resolver import InputResolver
from ..jobs.following import JobEvents, Tick
from ..jobs.model import Job, JobStatus, Progress
from ..jobs.store import JobStore
from .claims import Claimed, RunClaims
from .failures import fail_job
from .gpu_faults import GpuFaults
from .model_inputs import ModelInputs
from .preview_hub import PreviewHub
from .progress import finished_progress
from .recover import settle_elsewhere
from .router import BackendRouter
from .uploads import BackendUploads

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2  # a prompt lost by a restarted ComfyUI is run once more


class _Ticket:
    """The slot reservation a job came with from gated_take: spent by the first acquire(),
    given back by the handler otherwise."""

    reserved = True


class Generation:
    """Called with a job id taken through router.gated_take (which reserved a slot for it)."""

    def __init__(self, store: JobStore, router: BackendRouter, inputs: InputResolver, lost_after: float,
                 models: ModelInputs | None = None, faults: GpuFaults | None = None,
                 previews: PreviewHub | None = None):
        self._models = models
        self._store = store
        self._faults = faults
        self._previews = previews
        self._router = router
        self._inputs = inputs
        self._lost_after = lost_after
        self.uploads = {b.name: BackendUploads(b.http) for b in router.backends}
        self.claims = RunClaims(store, router)
        self._pending: set[asyncio.Task[None]] = set()

    async def __call__(self, job_id: str) -> None:
        ticket = _Ticket()
        claimed: Claimed | None = None
        try:
            job = await self._store.get(job_id)
            if job is None or job.status.terminal:
                return
            claimed = self.claims.take(job)  # created "running on" a backend here (claims.py)
            if job.status is JobStatus.postprocessing:
                # Taken over from a process that stopped after the prompt ended but before it
                # acked: only the hand-over to postprocess may be missing.
                await self._store.enqueue("postprocess", job_id)
                return
            if job.status is not JobStatus.generating or job.workflow is None:
                return
            try:
                entry = await self._taken_over(job) if job.backend and claimed is None else None
                if entry is None:
                    ran = await self._run_somewhere(job, ticket, claimed)
                    if ran is None:
                        return  # ended meanwhile (cancelled, timed out)
                    job, entry = ran  # the job as it went to its backend
                else:
                    raise_for_status(entry)
                await self._finish(job, entry)
            except PromptCancelled:
                # Normally the job already ended (cancelled / timed_out) where the cancel came
                # from; if not, it must not stay "generating" with its prompt gone.
                current = await self._store.get(job_id)
                if current is not None and not current.status.terminal:
                    await fail_job(self._store, job_id, PromptLost(
                        f"its prompt was withdrawn from {current.backend} although the job had not ended"))
            except Exception as exc:  # noqa: BLE001
                await fail_job(self._store, job_id, exc)
        finally:
            if ticket.reserved:
                self._router.unreserve()
            if claimed is not None:
                claimed.watch.close()

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

    async def _run_somewhere(self, job: Job, ticket: _Ticket,
                             claimed: Claimed | None = None) -> tuple[Job, dict[str, Any]] | None:
        """Run on the least-loaded backend in rotation. A backend that refuses the prompt
        outright (down, 5xx) did not queue it, so the next one gets it; a prompt a restarted
        ComfyUI forgot runs once more. The job as it ran and its history entry; None if the
        job ended meanwhile. `claimed`: the job was created "running on" a backend (claims.py)."""
        refusals = 0
        while True:
            models = self._models
            backend = await self._router.acquire(
                reserved=ticket.reserved, prefer=(lambda b: models.holds(b, job.inputs)) if models else None)
            ticket.reserved = False
            ahead, claimed = claimed, None  # a claim stands for the first attempt only
            written_ahead = ahead is not None and ahead.backend == backend.name
            try:
                if ahead is not None and not written_ahead:
                    ahead.watch.close()
                # Made before the write below (or before the create that was this write), which
                # tells whether the job still runs: any end after it wakes this watch, so
                # following the run needs no look first.
                watch = ahead.watch if ahead is not None and written_ahead else self._store.events(
                    job.id, wake="end", look_first=False)
                async with watch:
                    if not written_ahead:
                        job = await self._store.update(
                            job.id, message=f"running on {backend.name}", backend=backend.name,
                            marks={"generation_started": time.time()},
                            attempts=job.attempts + (0 if ahead is not None else 1))  # a claim counted it
                        if job.status.terminal:  # cancelled or timed out while it waited for us
                            return None
                    if self._faults is None:
                        return job, await self._run(job, backend, watch)
                    current = job  # out-of-memory: freed and run once more on the same backend
                    return job, await self._faults.run(job.id, backend, lambda: self._run(current, backend, watch))
            except PromptNotAccepted as exc:
                refusals += 1
                if refusals > 2 * len(self._router.backends):
                    raise
                log.warning("job %s: %s refused the prompt (%s); trying again", job.id, backend.name, exc)
                job = await self._store.update(job.id, attempts=job.attempts - 1)  # not a run
            except PromptLost as exc:
                if job.attempts >= MAX_ATTEMPTS:
                    raise
                # A restarted ComfyUI forgot it: run it again, on whichever backend is free
                # (its inputs are uploaded again there if that backend lacks them).
                job = await self._store.update(job.id, message=f"{exc}; retrying")
                if job.status.terminal:
                    return None
            finally:
                self._router.release(backend)
            await asyncio.sleep(min(0.1 * refusals, 1.0))

    async def _run(self, job: Job, backend: Backend, watch: JobEvents) -> dict[str, Any]:
        job_id = job.id

        def on_progress(p: Progress) -> None:
            # Frames arrive in the websocket's reader: record them without blocking it.
            task = asyncio.get_running_loop().create_task(self._store.set_progress(job_id, p))
            self._pending.add(task)  # hold a reference until done (asyncio keeps only weak ones)
            task.add_done_callback(self._pending.discard)

        on_preview = None
        if self._previews is not None and job.request.get("previews"):
            on_preview = self._previews.publisher(job_id)

        def run(workflow: dict[str, Any]) -> Awaitable[dict[str, Any]]:
            return backend.run(job_id, workflow, on_progress, job.deadline, on_preview)

        if not job.inputs:
            return await self._unless_ended(job_id, backend, run(job.workflow or {}), watch)
        workflow, reused = await self._place_inputs(job, backend)
        try:
            return await self._unless_ended(job_id, backend, run(workflow), watch)
        except PromptRejected as exc:
            # A file this backend had before may be gone (a restarted ComfyUI with a fresh input
            # folder): if ComfyUI names one, upload again and try once more. A rejected prompt
            # never entered its queue, so the same prompt id is free.
            text = orjson.dumps([exc.error, exc.node_errors]).decode()
            gone = [sha for sha, name in reused.items() if name in text]
            if not gone:
                raise
            for sha in gone:
                self.uploads[backend.name].forget(sha)
                if self._models is not None:
                    self._models.delivery.forget(backend.name, sha)
            workflow, _ = await self._place_inputs(job, backend)
            return await self._unless_ended(job_id, backend, run(workflow), watch)

    async def _unless_ended(self, job_id: str, backend: Backend, run: Awaitable[dict[str, Any]],
                            watch: JobEvents) -> dict[str, Any]:
        """Await the run, but withdraw the prompt if the job ends meanwhile (`watch` wakes at
        its end). A cancel or timeout made by another process withdraws the prompt from ComfyUI
        itself, yet a prompt deleted while pending sends no frame at all: without this, this
        worker would wait forever. It also catches a cancel while the POST is on its way."""
        running = asyncio.ensure_future(run)
        ended = asyncio.ensure_future(self._ended(job_id, watch))
        try:
            await asyncio.wait({running, ended}, return_when=asyncio.FIRST_COMPLETED)
            if not running.done():
                await backend.cancel(job_id)  # ends the run with PromptCancelled
            return await running
        finally:
            ended.cancel()
            running.cancel()

    async def _ended(self, job_id: str, watch: JobEvents) -> None:
        """Return once the job has ended (woken by its events). Following a job never harms
        it: a store error while watching (a Redis blip) is logged and the watch starts again,
        it never reads as "the job ended" (which would interrupt a healthy prompt)."""
        def failed(exc: BaseException | None) -> None:
            log.warning("job %s: following its events failed (%s); following again", job_id, exc)

        # The first follow runs outside tenacity: nearly every job's ends there (or the run ends
        # first and cancels it), and a retry loop costs ~50 µs of CPU to build on every job.
        try:
            return await self._follow_to_end(job_id, watch)
        except Exception as exc:  # noqa: BLE001 - followed again below, as tenacity would
            failed(exc)
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(Exception), wait=wait_exponential_jitter(multiplier=0.1, max=5.0, jitter=0.1),
            before_sleep=lambda state: failed(state.outcome.exception() if state.outcome else None))
        async for attempt in retrying:
            with attempt:
                # A failed read leaves the watch marked to read again: it is followed on.
                await self._follow_to_end(job_id, watch)

    async def _follow_to_end(self, job_id: str, watch: JobEvents) -> None:
        async for item in watch:
            if isinstance(item, Tick):  # nothing for 30 s, or the job is gone
                job = await self._store.get(job_id)
                if job is None or job.status.terminal:
                    return
        # The iterator stopped after the event that ends the job.

    async def _place_inputs(self, job: Job, backend: Backend) -> tuple[dict[str, Any], dict[str, str]]:
        """The workflow with each input's name on this backend, uploading what it lacks; and
        {sha256: name} of those it had already."""
        uploads = self.uploads[backend.name]
        workflow = copy.deepcopy(job.workflow or {})
        distinct = {item["sha256"]: item for item in job.inputs}

        async def one(sha: str, item: dict[str, Any]) -> tuple[str, str, bool]:
            if item.get("model_folder") and self._models is not None:
                name, fresh = await self._models.place(backend, item)  # a model: into its folder
            else:
                name, fresh = await uploads.ensure(sha, lambda: self._inputs.blob_for(item["source"], sha))
            return sha, name, fresh

        placed = await asyncio.gather(*(one(sha, src) for sha, src in distinct.items()))
        names = {sha: name for sha, name, _ in placed}
        for item in job.inputs:
            set_at(workflow, item["path"], names[item["sha256"]])
        return workflow, {sha: name for sha, name, fresh in placed if not fresh}

    async def _finish(self, job: Job, entry: dict[str, Any]) -> None:
        include_temp = bool(job.request.get("include_previews"))
        refs = [r for r in output_refs(entry) if include_temp or r.type != "temp"]
        log.info("%s ran the prompt: %d output(s) to fetch", job.backend, len(refs))
        # The change and the hand-over to postprocess in one step (none if the job ended).
        await self._store.advance(
            job.id, "postprocess", status=JobStatus.postprocessing, message=f"fetching {len(refs)} output(s)",
            marks={"generation_finished": time.time()},
            comfy_outputs=[dataclasses.asdict(r) for r in refs],
            progress=finished_progress(job),
        )

