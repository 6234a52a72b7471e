"""Stage 1: build the prompt ComfyUI will run from the client's request: the workflow (the
client's own, or a modifier's), its placeholders filled, and every input it names fetched,
typed and checked, ready to be uploaded to whichever backend runs it. A job with nothing slow
to prepare is prepared as it arrives instead (prepare_now), and created past this stage."""

from __future__ import annotations

import time

from ..inputs.find import find_inputs, set_at
from ..inputs.inline import replace_sources, store_inline
from ..inputs.resolver import InputResolver
from ..jobs.model import Job, JobStatus
from ..jobs.store import JobStore, Passing, Prepared
from ..workflows.build import build_workflow
from ..workflows.checker import WorkflowChecker
from ..workflows.prepare import prepare_workflow
from ..workflows.registry import ModifierRegistry
from .failures import fail_job
from .model_inputs import ModelInputs


PREPARING, WAITING = "preparing the workflow", "waiting for a free backend"


class Preprocess:
    def __init__(self, store: JobStore, modifiers: ModifierRegistry, inputs: InputResolver,
                 checker: WorkflowChecker | None = None, models: ModelInputs | None = None):
        self._store, self._modifiers, self._inputs = store, modifiers, inputs
        self._checker, self._models = checker, models

    async def prepare_now(self, job: Job) -> Prepared | None:
        """The preparation of a job about to be created, when it has nothing slow to do (no input
        or model to fetch) and nothing to refuse: the job is then created past this stage. None
        otherwise: the stage prepares it, and a refusal fails the job there, as it does any."""
        started = time.time()
        try:
            workflow, _ = await build_workflow(job.request, self._modifiers)
            if find_inputs(workflow):
                return None  # (before the check, which the stage then makes once)
            if self._checker is not None:
                await self._checker.check(workflow)
            workflow = prepare_workflow(workflow, job.id)
        except Exception:  # noqa: BLE001 - the stage meets it again, and fails the job with it
            return None
        return Prepared(steps=(Passing(JobStatus.preprocessing, PREPARING, {"preprocess_started": started}),
                               Passing(JobStatus.generating, WAITING, {"preprocess_finished": time.time()})),
                        fields={"workflow": workflow, "inputs": []}, stage="generation")

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
        # The start of preprocessing is recorded with the hand-over to generation, in one write,
        # unless something slow comes first (fetching inputs or models): then as it happens.
        started = Passing(JobStatus.preprocessing, PREPARING, {"preprocess_started": time.time()})
        pending: list[Passing] = [started] if job.status is JobStatus.queued else []

        async def record_start() -> None:
            if pending:
                start = pending.pop()
                await self._store.update(job_id, status=start.status, message=start.message, marks=start.marks)

        try:
            workflow, names = await build_workflow(job.request, self._modifiers)
            if self._checker is not None:
                # Before any input is fetched: a workflow ComfyUI would refuse fails now, with
                # ComfyUI's node_errors (PromptRejected), as an admission refusal.
                await self._checker.check(workflow)
            refs = find_inputs(workflow)
            inputs = []
            inline: dict[str, str] = {}  # data: URI -> the asset it was stored as
            model_refs = []
            if refs and self._models is not None:
                # Loader inputs (lora_name, ckpt_name...) holding a URL: model files, not images.
                model_refs, refs = self._models.split(workflow, refs)
            if refs:
                await record_start()
                await self._store.update(job_id, message=f"fetching {len(refs)} input(s)")
                blobs = await self._inputs.resolve_all(refs, names)
                inline = await store_inline(self._inputs, blobs)
                for ref in refs:
                    blob = blobs[ref.source]
                    # The content name stands in the stored workflow; generation puts there the
                    # name its backend gave the upload.
                    set_at(workflow, ref.path, blob.filename)
                    inputs.append({"path": list(ref.path), "source": inline.get(ref.source, ref.source),
                                   "sha256": blob.sha256,
                                   "filename": blob.filename, "mime": blob.mime})
            if model_refs:  # last: every other input is checked by the time they are
                await record_start()
                await self._store.update(job_id, message=f"fetching {len(model_refs)} model(s)")
                models = await self._models.resolve(self._store, job_id, model_refs, names)
                for item in models:
                    set_at(workflow, item["path"], item["filename"])
                inputs += models
            workflow = prepare_workflow(workflow, job.id)
            # Checked inline inputs are named by their asset from now on, in the request too.
            kept = {"request": replace_sources(job.request, inline)} if inline else {}
            # The change and the hand-over to generation in one step (none if the job ended).
            await self._store.advance(
                job_id, "generation", status=JobStatus.generating, message=WAITING,
                marks={"preprocess_finished": time.time()}, workflow=workflow, inputs=inputs,
                passing=pending[0] if pending else None, **kept,
            )
        except Exception as exc:  # noqa: BLE001 - whatever happens fails this job only
            try:
                await record_start()  # a refused job shows where it was refused, as any other
            except Exception:  # noqa: BLE001 - ended or gone meanwhile: failing it says the rest
                pass
            await fail_job(self._store, job_id, exc)
