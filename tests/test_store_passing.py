"""advance(..., passing=...): a state the job passes through on its way to the change (a
preprocessing with nothing slow to do), recorded as a change of its own, just before, in both
stores: its event, its marks, its listeners; in Redis in the same write as the change."""

from __future__ import annotations

from comfy_gateway.jobs.model import Job, JobStatus
from comfy_gateway.jobs.store import Passing

from .support.stores import store, two_processes  # noqa: F401  (the fixtures)

STARTED = Passing(JobStatus.preprocessing, "preparing the workflow", {"preprocess_started": 5.0})


async def test_the_state_passed_through_has_its_event_marks_and_listeners(store):
    seen = []
    store.add_listener(lambda job, previous: seen.append((previous, job.status, job.message)))
    await store.create(Job(id="j"))
    job = await store.advance("j", "generation", status=JobStatus.generating, message="waiting for a free backend",
                              marks={"preprocess_finished": 6.0}, workflow={"1": {}}, passing=STARTED)
    assert job.status is JobStatus.generating and job.workflow == {"1": {}}
    assert job.marks["preprocess_started"] == 5.0 and job.marks["preprocess_finished"] == 6.0
    events = await store.events_after("j", 0)
    assert [(e.type, e.status) for e in events] == [("status", "queued"), ("status", "preprocessing"),
                                                     ("status", "generating")]
    assert [e.message for e in events][1:] == ["preparing the workflow", "waiting for a free backend"]
    assert [e.seq for e in events] == [1, 2, 3]
    assert seen[1:] == [(JobStatus.queued, JobStatus.preprocessing, "preparing the workflow"),
                        (JobStatus.preprocessing, JobStatus.generating, "waiting for a free backend")]
    assert (await store.get("j")).status is JobStatus.generating
    assert await store.dequeue("generation") == "j"


async def test_a_job_already_in_that_state_does_not_pass_through_it_again(store):
    await store.create(Job(id="j"))
    await store.update("j", status=JobStatus.preprocessing, message="fetching 1 input(s)")
    await store.advance("j", "generation", status=JobStatus.generating, passing=STARTED)
    statuses = [e.status for e in await store.events_after("j", 0)]
    assert statuses == ["queued", "preprocessing", "generating"]


async def test_in_redis_the_passing_and_the_change_are_one_write(two_processes):
    a, b = two_processes
    await a.create(Job(id="j"))
    await a.advance("j", "generation", status=JobStatus.generating, passing=STARTED)
    assert await a.redis.hget(a.keys.job("j"), "v") == "2"  # created at 1, one write since
    assert (await b.get("j")).status is JobStatus.generating
    times = {e.time for e in (await b.events_after("j", 1))}
    assert len(times) == 1  # written together


async def test_a_job_ended_meanwhile_passes_through_nothing(two_processes):
    a, b = two_processes
    await a.create(Job(id="j"))
    await a.get("j")  # a keeps the job as it reads it: queued
    await b.update("j", status=JobStatus.cancelled, message="cancelled by the client")
    job = await a.advance("j", "generation", status=JobStatus.generating, passing=STARTED)
    assert job.status is JobStatus.cancelled
    assert [e.status for e in await b.events_after("j", 0)] == ["queued", "cancelled"]
