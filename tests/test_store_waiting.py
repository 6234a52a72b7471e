"""A job waiting in a stage queue, with nobody taking it, reads back whole from every read of
the store protocol, and a change made to it while it waits sticks (the memory store keeps it
packed meanwhile: jobs/memory_packed.py). Both stores."""

from __future__ import annotations

from comfy_gateway.jobs.history import HistoryQuery
from comfy_gateway.jobs.model import Job, JobStatus, WebhookState

from .support.stores import store  # noqa: F401  (fixture)


def _workflow(prefix: str) -> dict:
    wf = {str(i): {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": i}}
          for i in range(50)}
    wf["save"] = {"class_type": "SaveImage", "inputs": {"images": ["0", 0], "filename_prefix": prefix}}
    return wf


async def test_a_waiting_job_reads_back_whole_and_keeps_changes(store):
    request = {"workflow_json": _workflow("q"), "timeout": 30.5, "note": "ünïcode \n and a newline"}
    workflow = _workflow("w/q")
    inputs = [{"path": ["3", "inputs", "image"], "source": "https://example.com/a.png", "sha256": "ab" * 32,
               "filename": "a.png", "mime": "image/png"}]
    await store.create(Job(id="w", request=request, request_hash="h1", owner="k", priority=2,
                           request_id="r1", deadline=1e10, created_at=100.0))
    await store.create(Job(id="other", owner="k2", created_at=101.0))
    assert await store.dequeue("preprocess") == "w"
    assert (await store.get("w")).request == request  # a worker reads what it took first
    await store.update("w", status=JobStatus.preprocessing, message="preparing the workflow")
    await store.advance("w", "generation", status=JobStatus.generating, message="waiting for a free backend",
                        marks={"preprocess_finished": 105.0}, workflow=workflow, inputs=inputs)
    await store.ack("preprocess", "w")

    def whole(job: Job, light: bool = False) -> None:
        if not light:  # a history page may leave out the two big fields (the Redis store does)
            assert (job.request, job.workflow) == (request, workflow)
        assert job.inputs == inputs
        assert (job.request_hash, job.owner, job.priority, job.request_id) == ("h1", "k", 2, "r1")
        assert (job.status, job.message, job.deadline, job.created_at) == (
            JobStatus.generating, "waiting for a free backend", 1e10, 100.0)
        assert job.marks == {"created": 100.0, "preprocess_finished": 105.0}

    whole(await store.get("w"))
    page = await store.history(HistoryQuery(owner="k", statuses=frozenset({"generating"})))
    assert [j.id for j in page.jobs] == ["w"]
    whole(page.jobs[0], light=True)
    assert (await store.history(HistoryQuery(statuses=frozenset({"queued"})))).jobs[0].id == "other"
    assert [j.id for j in await store.recent(5)] == ["other", "w"]
    whole((await store.recent(5))[1])
    assert sorted(await store.unfinished()) == ["other", "w"]
    assert await store.position("generation", "w") == 0

    await store.update("w", message="still waiting")
    assert (await store.get("w")).message == "still waiting"
    await store.set_webhook("w", WebhookState(state="retrying", attempts=1))
    job = await store.get("w")
    assert (job.webhook.attempts, job.message, job.workflow) == (1, "still waiting", workflow)
    assert await store.position("generation", "w") == 0
    assert await store.dequeue("generation") == "w"
    job = await store.get("w")
    assert (job.webhook.attempts, job.message, job.request, job.workflow) == (1, "still waiting", request, workflow)


async def test_a_taker_reads_back_its_own_change(store):
    """What a take (or a follower's read) brought along never hides a change made after it."""
    await store.create(Job(id="t"))
    assert await store.dequeue("preprocess") == "t"
    await store.update("t", status=JobStatus.preprocessing, message="mine")
    got = await store.get("t")
    assert got.status is JobStatus.preprocessing and got.message == "mine"
    async with store.events("t", after=0, idle=0.0) as events:
        assert (await anext(events)).seq == 1  # a read of its events (and, in Redis, its record)
    await store.update("t", message="changed since")
    assert (await store.get("t")).message == "changed since"


async def test_events_and_job_in_one_look(store):
    assert await store.events_and_job("nobody", 0) == ([], None)
    await store.create(Job(id="e"))
    await store.update("e", status=JobStatus.preprocessing, message="p")
    events, job = await store.events_and_job("e", 1)
    assert [e.seq for e in events] == [2] and events[0].status == "preprocessing"
    assert job.status is JobStatus.preprocessing and job.message == "p"
