"""Progress frames in both stores: kept beside the job's state (the Redis store writes them as
a small field of their own, never the whole record), in order, and carrying the job's current
status and message in their events."""

from __future__ import annotations

import asyncio

from comfy_gateway.jobs.model import Job, JobStatus, Progress

from .support.stores import store  # noqa: F401  (the fixture: both stores)


async def _generating(store, job_id: str) -> None:
    await store.create(Job(id=job_id, request={"big": "x" * 1000}))
    await store.update(job_id, status=JobStatus.preprocessing)
    await store.update(job_id, status=JobStatus.generating, message="running on b1")


async def test_progress_survives_later_changes_and_events_carry_the_state(store):
    await _generating(store, "a")
    await store.set_progress("a", Progress(node="4", value=3, max=8))
    await store.update("a", message="still running")
    job = await store.get("a")
    assert job.progress is not None and (job.progress.node, job.progress.value) == ("4", 3)
    assert job.message == "still running" and job.request == {"big": "x" * 1000}
    frames = [e for e in await store.events_after("a", 0) if e.type == "progress"]
    assert len(frames) == 1
    assert frames[0].status == "generating" and frames[0].message == "running on b1"
    assert frames[0].progress["value"] == 3


async def test_progress_set_by_a_change_is_what_get_shows(store):
    await _generating(store, "a")
    await store.set_progress("a", Progress(node="4", value=3, max=8))
    await store.update("a", status=JobStatus.postprocessing, progress=Progress(node="4", value=8, max=8))
    assert (await store.get("a")).progress.value == 8
    assert [j.progress.value for j in await store.recent(5)] == [8]


async def test_a_burst_of_frames_is_kept_in_order(store):
    await _generating(store, "a")
    await asyncio.gather(*(store.set_progress("a", Progress(node="4", value=i, max=50)) for i in range(50)))
    assert (await store.get("a")).progress.value == 49
    values = [e.progress["value"] for e in await store.events_after("a", 0) if e.type == "progress"]
    assert values == list(range(50))
