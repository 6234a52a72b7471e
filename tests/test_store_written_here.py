"""The follower of a job that just ended in the process that wrote all of it reads its events
and record from what that process wrote (jobs/redis_written.py), not from Redis; they are what
Redis holds. A job another process also wrote is read from Redis."""

from __future__ import annotations

from comfy_gateway.jobs.model import Job, JobStatus, Progress
from comfy_gateway.jobs.store import Passing

from .support.stores import two_processes as pair  # noqa: F401  (the fixture: two processes)


async def _run_until_generating(store, job_id: str) -> None:
    await store.create(Job(id=job_id, request={"input": {"seed": 1}}, priority=2))
    await store.advance(job_id, "generation", status=JobStatus.generating, message="waiting",
                        workflow={"1": {"class_type": "EmptyImage"}}, marks={"preprocess_finished": 1.0},
                        passing=Passing(JobStatus.preprocessing, "preparing", {"preprocess_started": 0.5}))
    for i in range(3):
        await store.set_progress(job_id, Progress(node="1", value=i, max=3, nodes_done=0, nodes_total=1))


async def _finish(store, job_id: str) -> None:
    await store.advance(job_id, "postprocess", status=JobStatus.postprocessing, message="fetching",
                        progress=Progress(value=1, max=1, nodes_done=1, nodes_total=1))
    await store.update(job_id, status=JobStatus.completed, message="done")


def _as_seen(read) -> tuple[list[dict], dict]:
    events, job = read
    return [e.to_dict() for e in events], job.model_dump(mode="json")


def _no_pipeline(*a, **kw):
    raise AssertionError("read Redis for a job this process wrote all of")


async def test_the_end_of_a_job_written_here_is_read_from_what_was_written(pair, monkeypatch):
    a, b = pair
    await _run_until_generating(a, "j")
    await _finish(a, "j")
    in_redis = [_as_seen(await b.events_and_job("j", after)) for after in (0, 4, 8)]
    assert len(in_redis[0][0]) == 8 and in_redis[0][0][-1]["type"] == "final_result"
    monkeypatch.setattr(a.redis, "pipeline", _no_pipeline)
    assert [_as_seen(await a.events_and_job("j", after)) for after in (0, 4, 8)] == in_redis


async def test_a_job_another_process_wrote_to_is_read_from_redis(pair):
    a, b = pair
    await _run_until_generating(a, "j")
    await b.set_progress("j", Progress(node="1", value=3, max=3, nodes_done=1, nodes_total=1))
    await _finish(a, "j")
    seen = _as_seen(await a.events_and_job("j", 0))
    assert seen == _as_seen(await b.events_and_job("j", 0))
    assert [e["progress"]["value"] for e in seen[0] if e["type"] == "progress"] == [0, 1, 2, 3]


async def test_a_job_ended_by_another_process_is_read_from_redis(pair):
    a, b = pair
    await _run_until_generating(a, "j")
    await b.update("j", status=JobStatus.cancelled, message="cancelled by the client")
    seen = _as_seen(await a.events_and_job("j", 0))
    assert seen[1]["status"] == "cancelled" and seen[0][-1]["message"] == "cancelled by the client"
    assert seen == _as_seen(await b.events_and_job("j", 0))


async def test_a_change_without_event_from_another_process_is_noticed(pair):
    from comfy_gateway.jobs.model import WebhookState

    a, b = pair
    await _run_until_generating(a, "j")
    await b.set_webhook("j", WebhookState(attempts=1))  # a change with no event: a new version
    await _finish(a, "j")
    seen = _as_seen(await a.events_and_job("j", 0))
    assert seen == _as_seen(await b.events_and_job("j", 0))
    assert seen[1]["webhook"]["attempts"] == 1
    # ...and what a then writes is computed from the version Redis holds.
    await a.set_webhook("j", WebhookState(attempts=2))
    assert (await b.get("j")).webhook.attempts == 2
