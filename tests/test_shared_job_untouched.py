"""Nothing in the gateway changes a job's request or workflow in place. Both stores hand every
reader the same decoded request and workflow (the memory store its one live Job; the Redis
store copies of a remembered record's job, jobs/redis_records.py `_Known`): a stage that edited
one in place would change what every other reader of the job sees, and what the Redis store
believes it last wrote. Jobs of every kind a stage treats apart (a plain workflow taken at once,
an inline input with a converted output, a Python modifier, a declarative one) run through a
real runtime in front of the real ComfyUI; every job made from a remembered record is checked
against a fresh decode of its texts as it is handed out (Redis), and every job's request and workflow against what was last written
(memory)."""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import pytest

from comfy_gateway.access.keys import ANONYMOUS
from comfy_gateway.jobs import redis as redis_store_module
from comfy_gateway.jobs import redis_changes, redis_history, redis_records
from comfy_gateway.jobs.memory import MemoryJobStore
from comfy_gateway.jobs.model import Job, JobStatus
from comfy_gateway.jobs.redis import RedisJobStore, connect

from .conftest import png_bytes
from .support.redis import REDIS_URL, new_prefix, wipe_prefix
from .support.runtimes import runtime_over
from .support.settling import quick

REPO = Path(__file__).resolve().parent.parent


def _uri(color: tuple[int, int, int]) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(24, 16, color)).decode()


def _requests() -> list[dict[str, Any]]:
    invert = {"1": {"class_type": "LoadImage", "inputs": {"image": _uri((200, 10, 10))}},
              "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
              "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "inv"}}}
    return [
        {"workflow_json": quick("plain")},
        {"workflow_json": invert, "convert_output": {"format": "webp", "quality": 80}, "base64_outputs": True},
        {"modifier": "ImageEdit", "modifications": {"image": _uri((10, 200, 10)), "effect": "blur", "width": 20}},
        {"modifier": "BlurScale", "modifications": {"image": _uri((10, 10, 200)), "width": 16, "height": 12}},
    ]


class WrittenMemoryStore(MemoryJobStore):
    """Keeps a copy of each job's request and workflow as last written; `drift` lists the jobs
    whose live request or workflow differs from it when a reader gets the job."""

    def __init__(self) -> None:
        super().__init__()
        self.written: dict[str, tuple[Any, Any]] = {}
        self.drift: list[str] = []
        self.checked = 0

    def _keep(self, job: Job | None) -> Job | None:
        if job is not None:
            self.written[job.id] = (copy.deepcopy(job.request), copy.deepcopy(job.workflow))
        return job

    def _check(self, job: Job | None) -> None:
        if job is not None and job.id in self.written:
            self.checked += 1
            if (job.request, job.workflow) != self.written[job.id]:
                self.drift.append(job.id)

    async def create(self, job: Job, **kw: Any) -> Job:
        return self._keep(await super().create(job, **kw))  # type: ignore[return-value]

    async def update(self, job_id: str, **change: Any) -> Job:
        self._check(await super().get(job_id))  # as the last write left it, until this one
        return self._keep(await super().update(job_id, **change))  # type: ignore[return-value]

    async def get(self, job_id: str) -> Job | None:
        job = await super().get(job_id)
        self._check(job)
        return job


class SharedDecodes:
    """Watches the Redis store's remembered records: every job made from one (a copy of the job
    it was decoded from, or a decode sharing its request and workflow) is compared with a fresh
    decode of the texts it stands for."""

    def __init__(self) -> None:
        self.shared = 0
        self.drift: list[str] = []
        self._decode = redis_records.decode_job

    def watch(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for module in (redis_records, redis_store_module, redis_changes, redis_history):  # each has its name for it
            monkeypatch.setattr(module, "decode_job", self._decoded)
        known = redis_records._Known
        job, job_for = known.job, known.job_for

        def checked_job(self_: Any) -> Job:
            got = job(self_)
            if self_.parsed is not None:
                self._check(got, self_.core, None, self_.request, self_.workflow)
            return got

        def checked_job_for(self_: Any, record: Any) -> Job | None:
            got = job_for(self_, record)
            if got is not None:
                self._check(got, record.core, record.progress, record.request, record.workflow)
            return got
        monkeypatch.setattr(known, "job", checked_job)
        monkeypatch.setattr(known, "job_for", checked_job_for)

    def _decoded(self, core: str, progress: str | None, request: str | None, workflow: str | None,
                 parsed: tuple[dict[str, Any], dict[str, Any] | None] | None = None) -> Job:
        job = self._decode(core, progress, request, workflow, parsed)
        if parsed is not None:
            self._check(job, core, progress, request, workflow)
        return job

    def _check(self, job: Job, core: str, progress: str | None, request: str | None, workflow: str | None) -> None:
        self.shared += 1
        fresh = self._decode(core, progress, request, workflow)
        if job.model_dump() != fresh.model_dump():
            self.drift.append(job.id)


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_no_stage_changes_a_shared_request_or_workflow_in_place(kind: str, comfyui: str, tmp_path,
                                                                       monkeypatch: pytest.MonkeyPatch):
    prefix = new_prefix()
    decodes = SharedDecodes()
    if kind == "redis":
        decodes.watch(monkeypatch)
    store = WrittenMemoryStore() if kind == "memory" else RedisJobStore(connect(REDIS_URL), prefix=prefix)
    try:
        async with runtime_over(store, comfyui, tmp_path, assets_dir=tmp_path / "assets",
                                modifiers_dir=REPO / "modifiers", workflows_dir=REPO / "workflows") as runtime:
            for payload in _requests():
                job, _, events = await runtime.submit_followed(payload, ANONYMOUS, "end")
                done = await runtime.wait_until_done(job.id, 120, known=job, events=events)
                assert done is not None and done.status is JobStatus.completed, done
    finally:
        if kind == "redis":
            await wipe_prefix(prefix)
    if isinstance(store, WrittenMemoryStore):
        assert store.checked > 0 and store.drift == [], (store.checked, store.drift)
    else:
        assert decodes.shared > 0 and decodes.drift == [], (decodes.shared, decodes.drift)
