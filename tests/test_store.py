"""The store protocol's behaviour. Parametrized over implementations so every store (memory now,
Redis later) passes the same suite."""

from __future__ import annotations

import asyncio
import time

import pytest

from comfy_gateway.jobs.memory import MemoryJobStore
from comfy_gateway.jobs.model import InvalidTransition, Job, JobStatus, Progress
from comfy_gateway.jobs.store import QueueFull


@pytest.fixture(params=["memory"])
def store(request):
    return MemoryJobStore()


async def test_create_get_and_duplicate(store):
    job = await store.create(Job(id="a", request={"x": 1}))
    assert job.status is JobStatus.queued
    assert (await store.get("a")).request == {"x": 1}
    assert await store.get("nope") is None
    with pytest.raises(KeyError):
        await store.create(Job(id="a"))
    assert await store.position("preprocess", "a") == 0


async def test_queue_full_leaves_queued_jobs_alone(store):
    for i in range(3):
        await store.create(Job(id=f"j{i}"), max_waiting=3)
    with pytest.raises(QueueFull):
        await store.create(Job(id="j3"), max_waiting=3)
    assert await store.get("j3") is None
    assert (await store.queue_sizes())["preprocess"] == 3
    assert [await store.dequeue("preprocess") for _ in range(3)] == ["j0", "j1", "j2"]


async def test_state_machine_forward_only_and_terminal_is_final(store):
    await store.create(Job(id="a"))
    with pytest.raises(InvalidTransition):
        await store.update("a", status=JobStatus.postprocessing)
    await store.update("a", status=JobStatus.preprocessing)
    await store.update("a", status=JobStatus.cancelled, message="cancelled by client")
    job = await store.update("a", status=JobStatus.generating, message="late news")
    assert job.status is JobStatus.cancelled and job.message == "cancelled by client"
    await store.set_progress("a", Progress(node="1"))
    assert (await store.get("a")).progress is None
    events = await store.events_after("a", 0)
    assert [e.type for e in events] == ["status", "status", "final_result"]
    assert events[-1].status == "cancelled"


async def test_events_are_numbered_and_resumable(store):
    await store.create(Job(id="a"))
    await store.update("a", status=JobStatus.preprocessing, message="p")
    await store.set_progress("a", Progress(node="3", value=2, max=10))
    events = await store.events_after("a", 0)
    assert [e.seq for e in events] == [1, 2, 3]
    assert [e.seq for e in await store.events_after("a", 2)] == [3]
    assert events[2].progress["node"] == "3" and events[2].progress["value"] == 2


async def test_wait_wakes_on_event_without_polling(store):
    await store.create(Job(id="a"))
    waiter = asyncio.create_task(store.wait("a", 1, queue_change=False, timeout=30))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    started = time.monotonic()
    await store.update("a", message="news")
    await asyncio.wait_for(waiter, 2)
    assert time.monotonic() - started < 1


async def test_wait_wakes_on_queue_change_when_asked(store):
    await store.create(Job(id="a"))
    await store.create(Job(id="b"))
    waiter = asyncio.create_task(store.wait("b", 1, queue_change=True, timeout=30))
    await asyncio.sleep(0.01)
    assert await store.dequeue("preprocess") == "a"
    await asyncio.wait_for(waiter, 2)
    assert await store.position("preprocess", "b") == 0


async def test_positions_and_removal_from_the_middle(store):
    for i in range(5):
        await store.create(Job(id=f"j{i}"))
    assert [await store.position("preprocess", f"j{i}") for i in range(5)] == [0, 1, 2, 3, 4]
    assert await store.remove_from_queue("preprocess", "j2")
    assert not await store.remove_from_queue("preprocess", "j2")
    assert await store.position("preprocess", "j3") == 2
    assert await store.position("preprocess", "j2") is None


async def test_blocked_consumer_gets_the_next_job(store):
    getter = asyncio.create_task(store.dequeue("generation"))
    await asyncio.sleep(0.01)
    await store.enqueue("generation", "x")
    assert await asyncio.wait_for(getter, 2) == "x"


async def test_cancelled_consumer_does_not_swallow_a_job(store):
    a = asyncio.create_task(store.dequeue("generation"))
    b = asyncio.create_task(store.dequeue("generation"))
    await asyncio.sleep(0.01)
    await store.enqueue("generation", "x")
    a.cancel()  # a was chosen to wake, but is cancelled before it runs
    assert await asyncio.wait_for(b, 2) == "x"
    assert a.cancelled()


async def test_expire_forgets_only_old_ended_jobs(store):
    await store.create(Job(id="old"))
    await store.update("old", status=JobStatus.failed, message="x")
    await store.create(Job(id="live"))
    assert await store.expire(time.time() + 1) == 1
    assert await store.get("old") is None and await store.get("live") is not None


def test_durations_come_from_marks():
    job = Job(id="a", created_at=100.0)
    job.marks.update(created=100.0, preprocess_started=101.0, preprocess_finished=101.5,
                     generation_started=103.0, generation_finished=106.0)
    d = job.durations()
    assert d["queue_wait"] == 1.0 and d["preprocess"] == 0.5 and d["generation_wait"] == 1.5
    assert d["generation"] == 3.0 and d["postprocess"] is None and d["total"] is None


async def test_recent_is_newest_first_and_bounded(store):
    for i in range(5):
        await store.create(Job(id=f"r{i}", created_at=1000.0 + i))
    assert [j.id for j in await store.recent(3)] == ["r4", "r3", "r2"]
    assert [j.id for j in await store.recent(50)] == ["r4", "r3", "r2", "r1", "r0"]


async def test_status_counts_follow_transitions_and_expiry(store):
    await store.create(Job(id="a"))
    await store.create(Job(id="b"))
    await store.update("a", status=JobStatus.preprocessing)
    await store.update("b", status=JobStatus.cancelled)
    counts = await store.status_counts()
    assert counts["queued"] == 0 and counts["preprocessing"] == 1 and counts["cancelled"] == 1
    assert set(counts) == {s.value for s in JobStatus}
    await store.update("b", status=JobStatus.failed)  # terminal is final: no change, no count
    assert (await store.status_counts())["failed"] == 0
    await store.expire(time.time() + 1)
    assert (await store.status_counts())["cancelled"] == 0


async def test_listeners_hear_each_change_once_and_cannot_break_it(store):
    heard = []
    store.add_listener(lambda job, prev: heard.append((job.id, prev and prev.value, job.status.value)))
    store.add_listener(lambda job, prev: 1 / 0)  # a broken observer is logged, never raised
    await store.create(Job(id="a"))
    await store.update("a", message="still queued")  # no status change: nothing to hear
    await store.update("a", status=JobStatus.preprocessing)
    await store.update("a", status=JobStatus.timed_out)
    await store.update("a", status=JobStatus.failed)  # dropped: the job already ended
    assert heard == [("a", None, "queued"), ("a", "queued", "preprocessing"), ("a", "preprocessing", "timed_out")]
    assert (await store.get("a")).status is JobStatus.timed_out
