"""Progress frames in both stores: kept beside the job's state (the Redis store writes them as
a small field of their own, never the whole record), in order, and carrying the job's current
status and message in their events."""

from __future__ import annotations

import asyncio

from comfy_gateway.jobs.model import Job, JobStatus, Progress

from .support.redis import new_prefix, redis_store, wipe_prefix
from .support.stores import store, two_processes  # noqa: F401  (the fixtures)


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


async def test_frames_sent_just_before_a_change_come_before_its_event_with_the_state_they_were_sent_under(store):
    await _generating(store, "a")
    # Sent and not awaited, as the websocket reader sends them; the change follows at once.
    sending = [asyncio.create_task(store.set_progress("a", Progress(node="4", value=i, max=3))) for i in range(3)]
    await asyncio.sleep(0)  # the frames reach the store before the change does
    await store.update("a", status=JobStatus.postprocessing, message="fetching",
                       progress=Progress(node="4", value=3, max=3))
    await asyncio.wait_for(asyncio.gather(*sending), 5)  # each is stored by now
    events = await store.events_after("a", 0)
    assert [(e.type, e.status) for e in events][-4:] == [("progress", "generating")] * 3 + [("status", "postprocessing")]
    assert [e.progress["value"] for e in events if e.type == "progress"] == [0, 1, 2]
    assert all(e.message == "running on b1" for e in events if e.type == "progress")
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert (await store.get("a")).progress.value == 3  # the change's own progress is the last


async def test_frames_waiting_when_the_job_ends_elsewhere_are_not_written_after_its_end(two_processes):
    a, b = two_processes
    await _generating(a, "a")
    sending = asyncio.create_task(a.set_progress("a", Progress(node="4", value=1, max=3)))
    await asyncio.sleep(0)
    await b.update("a", status=JobStatus.cancelled, message="cancelled by the client")
    await asyncio.wait_for(sending, 5)
    events = await b.events_after("a", 0)
    assert events[-1].type == "final_result" and events[-1].status == "cancelled"


async def test_a_frame_waiting_when_the_store_closes_frees_its_sender():
    # The Redis store holds a frame back for a change to take along; closed meanwhile (a gateway
    # stopping), the frame is dropped and its sender (a websocket reader's task) goes on.
    prefix = new_prefix()
    closing = await redis_store(prefix)
    try:
        await _generating(closing, "a")
        sender = asyncio.create_task(closing.set_progress("a", Progress(node="4", value=3, max=8)))
        await asyncio.sleep(0.01)
        assert not sender.done()  # held back, not written yet
    finally:
        await closing.close()
        await wipe_prefix(prefix)
    await asyncio.wait_for(sender, 2)
