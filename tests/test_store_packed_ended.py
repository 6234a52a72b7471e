"""The memory store keeps a job packed once it ended a moment ago (PACK_ENDED_AFTER): a day of
results is kept as a few KiB each, not tens, and every read still gives the job whole."""

from __future__ import annotations

import asyncio

from comfy_gateway.jobs.memory import MemoryJobStore
from comfy_gateway.jobs.memory_packed import PackedJob
from comfy_gateway.jobs.model import Job, JobStatus, WebhookState

WORKFLOW = {str(i): {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "color": i}} for i in range(50)}


async def _ended_job(store: MemoryJobStore, job_id: str) -> Job:
    await store.create(Job(id=job_id, request={"workflow_json": WORKFLOW}))
    await store.update(job_id, status=JobStatus.preprocessing)
    await store.update(job_id, status=JobStatus.generating, workflow=WORKFLOW)
    await store.update(job_id, status=JobStatus.postprocessing)
    return await store.update(job_id, status=JobStatus.completed, message="done", marks={"postprocess_finished": 1.0})


async def test_an_ended_job_is_packed_after_a_moment_and_reads_the_same():
    store = MemoryJobStore(pack_ended_after=0.05)
    ended = (await _ended_job(store, "j")).model_dump()
    assert isinstance(store._jobs["j"], Job)  # followers read it right after its end, as it is
    await asyncio.sleep(0.2)
    assert isinstance(store._jobs["j"], PackedJob)
    assert (await store.get("j")).model_dump() == ended
    assert [j.id for j in (await store.recent(5))] == ["j"]
    assert (await store.status_counts())["completed"] == 1
    assert await store.expire(older_than=ended["finished_at"] + 1) == 1
    assert await store.get("j") is None


async def test_a_job_changed_after_its_end_is_packed_again_by_the_sweep():
    store = MemoryJobStore(pack_ended_after=0.05)
    await _ended_job(store, "j")
    await asyncio.sleep(0.2)
    await store.set_webhook("j", WebhookState(state="delivered", attempts=1, last_status=200))
    assert isinstance(store._jobs["j"], Job)  # unpacked for good by the change
    assert await store.expire(older_than=0) == 0
    assert isinstance(store._jobs["j"], PackedJob)
    assert (await store.get("j")).webhook.state == "delivered"


async def test_a_job_still_running_is_never_packed_by_the_sweep():
    store = MemoryJobStore(pack_ended_after=0)
    await store.create(Job(id="r", request={"workflow_json": WORKFLOW}))
    await store.dequeue("preprocess")
    await store.update("r", status=JobStatus.preprocessing)
    await store.expire(older_than=0)
    assert isinstance(store._jobs["r"], Job)
