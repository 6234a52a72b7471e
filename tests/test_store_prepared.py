"""create(..., prepared=...): a job whose preparation had nothing slow to do is created past it,
straight into the generation queue, in both stores: every state it passed through has its
event, marks and listeners, as if the preprocess stage had moved it; in Redis all in one write."""

from __future__ import annotations

import asyncio

from comfy_gateway.jobs.model import Job, JobStatus
from comfy_gateway.jobs.store import Passing, Prepared, QueueFull

from .support.stores import store, two_processes  # noqa: F401  (the fixtures)

WORKFLOW = {"1": {"class_type": "EmptyImage", "inputs": {}}}


def prepared() -> Prepared:
    return Prepared(steps=(Passing(JobStatus.preprocessing, "preparing the workflow", {"preprocess_started": 5.0}),
                           Passing(JobStatus.generating, "waiting for a free backend", {"preprocess_finished": 6.0})),
                    fields={"workflow": WORKFLOW, "inputs": []}, stage="generation")


async def test_a_prepared_job_is_created_past_its_preparation(store):
    seen = []
    store.add_listener(lambda job, previous: seen.append((previous, job.status, job.message)))
    job = await store.create(Job(id="j", message="accepted"), prepared=prepared())
    assert job.status is JobStatus.generating and job.workflow == WORKFLOW
    events = await store.events_after("j", 0)
    assert [(e.seq, e.type, e.status, e.message) for e in events] == [
        (1, "status", "queued", "accepted"), (2, "status", "preprocessing", "preparing the workflow"),
        (3, "status", "generating", "waiting for a free backend")]
    assert seen == [(None, JobStatus.queued, "accepted"),
                    (JobStatus.queued, JobStatus.preprocessing, "preparing the workflow"),
                    (JobStatus.preprocessing, JobStatus.generating, "waiting for a free backend")]
    stored = await store.get("j")
    assert stored.status is JobStatus.generating and stored.workflow == WORKFLOW
    assert stored.marks["preprocess_started"] == 5.0 and stored.marks["preprocess_finished"] == 6.0
    assert "created" in stored.marks
    counts = await store.status_counts()
    assert counts.get("generating") == 1 and not counts.get("queued")
    assert (await store.queue_sizes())["preprocess"] == 0
    assert await asyncio.wait_for(store.dequeue("generation"), 5) == "j"


async def test_a_prepared_job_counts_against_the_queue_limit(store):
    await store.create(Job(id="a"), max_waiting=1, prepared=prepared())
    try:
        await store.create(Job(id="b"), max_waiting=1, prepared=prepared())
    except QueueFull:
        pass
    else:
        raise AssertionError("a second job passed a limit of one waiting job")


async def test_in_redis_a_prepared_job_is_one_write_another_process_sees_whole(two_processes):
    a, b = two_processes
    await a.create(Job(id="j"), prepared=prepared())
    assert await a.redis.hget(a.keys.job("j"), "v") == "1"  # created, nothing written since
    job = await b.get("j")
    assert job.status is JobStatus.generating and job.workflow == WORKFLOW
    assert [e.status for e in await b.events_after("j", 0)] == ["queued", "preprocessing", "generating"]
    # The other process can take it from the generation queue (nothing in this one waits to).
    assert await asyncio.wait_for(b.dequeue("generation"), 5) == "j"
