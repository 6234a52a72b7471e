"""Priorities in both stores: a higher priority is taken first, first come first served within
one, in every stage, and across processes sharing a Redis (positions agree, leases still hold)."""

from __future__ import annotations

import asyncio

from comfy_gateway.jobs.model import Job, JobStatus

from .support.stores import store, two_processes  # noqa: F401  (fixtures: both stores)


async def test_higher_priority_is_taken_first_and_fifo_within_one(store):
    order = [("low0", 0), ("high0", 5), ("low1", 0), ("mid0", 2), ("high1", 5), ("mid1", 2)]
    for job_id, priority in order:
        await store.create(Job(id=job_id, priority=priority))
    expected = ["high0", "high1", "mid0", "mid1", "low0", "low1"]
    assert [await store.position("preprocess", j) for j in expected] == list(range(6))
    assert await store.queue_sizes(2) == {"preprocess": 4, "generation": 0, "postprocess": 0}
    assert await store.queue_sizes(6) == {"preprocess": 0, "generation": 0, "postprocess": 0}
    assert await store.remove_from_queue("preprocess", "mid0")
    assert await store.position("preprocess", "mid1") == 2
    taken = [await store.dequeue("preprocess") for _ in range(5)]
    assert taken == ["high0", "high1", "mid1", "low0", "low1"]
    # The next stages order by the job's priority too, whatever order the jobs arrive in.
    for job_id in taken:
        await store.advance(job_id, "generation", status=JobStatus.preprocessing)
        await store.ack("preprocess", job_id)
    for job_id in reversed(taken):
        await store.enqueue("postprocess", job_id)
    assert [await store.dequeue("generation") for _ in range(5)] == taken
    assert [await store.dequeue("postprocess") for _ in range(5)] == ["high1", "high0", "mid1", "low1", "low0"]


async def test_fifo_holds_at_the_highest_priority_too(store):
    # Redis scores reach -1000 * 2^40: they must keep every digit of the arrival number.
    for i in range(3):
        await store.create(Job(id=f"top{i}", priority=1000))
    await store.create(Job(id="next", priority=999))
    assert [await store.dequeue("preprocess") for _ in range(4)] == ["top0", "top1", "top2", "next"]


async def test_a_late_high_priority_job_overtakes_in_every_process(two_processes):
    a, b = two_processes
    for i in range(3):
        await a.create(Job(id=f"low{i}"))
    await b.create(Job(id="urgent", priority=3))
    for s in (a, b):
        assert await s.position("preprocess", "urgent") == 0
        assert await s.position("preprocess", "low0") == 1
    assert await b.dequeue("preprocess") == "urgent"
    assert [await a.dequeue("preprocess") for _ in range(3)] == ["low0", "low1", "low2"]
    for job_id in ("low0", "low1", "low2"):
        await a.ack("preprocess", job_id)
    # A job taken in priority order keeps its lease: b "dies", a takes it over.
    assert await asyncio.wait_for(a.dequeue("preprocess"), 30) == "urgent"
    assert await b.renew("preprocess", "urgent") is False
    await a.ack("preprocess", "urgent")
