"""The Redis store decodes a job's request and workflow once per version it meets, not at every
change: the records it remembers (redis_records.py _Known) keep them decoded, and every Job made
from such a record shares them, as the memory store's readers share its one Job (the rest of the
job is a copy of the one the record was made from, not a decode either). A job with a
20 KB workflow was decoded 8 times on its way through one process (~4 ms of CPU per job on 2
cores). What another process writes, or a change of the workflow itself, is decoded afresh."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from comfy_gateway.jobs import redis_records
from comfy_gateway.jobs.model import Job, JobStatus, WebhookState
from comfy_gateway.jobs.store import Passing, Prepared

from .support.stores import long_leases as pair  # noqa: F401 - a fixture
from .test_store_local_handoff import _idle_taker

WORKFLOW = {f"n{i}": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "color": i}}
            for i in range(60)}
BIG = len(orjson.dumps(WORKFLOW))


@pytest.fixture
def big_decodes(monkeypatch) -> list[int]:
    """The sizes of the JSON texts as big as the workflow that the store decodes."""
    sizes: list[int] = []

    class Counting:
        dumps = staticmethod(orjson.dumps)

        @staticmethod
        def loads(text):
            if len(text) >= BIG:
                sizes.append(len(text))
            return orjson.loads(text)

    monkeypatch.setattr(redis_records, "orjson", Counting)
    return sizes


def _prepared() -> Prepared:
    return Prepared(steps=(Passing(JobStatus.preprocessing, "preparing", {}),
                           Passing(JobStatus.generating, "waiting", {})),
                    fields={"workflow": WORKFLOW, "inputs": []}, stage="generation")


async def test_a_job_that_runs_through_one_process_is_never_decoded_again(pair, big_decodes):
    a, _ = pair
    taker = await _idle_taker(a, "generation")
    await a.create(Job(id="j", request={"workflow_json": WORKFLOW}), prepared=_prepared())
    assert await asyncio.wait_for(taker, 5) == "j"
    job = await a.get("j")
    job = await a.update("j", message="running on gpu0", backend="gpu0", attempts=1)
    assert job.workflow == WORKFLOW
    post = await _idle_taker(a, "postprocess")
    await a.advance("j", "postprocess", status=JobStatus.postprocessing, message="fetching")
    assert await asyncio.wait_for(post, 5) == "j"
    assert (await a.get("j")).request == {"workflow_json": WORKFLOW}
    await a.update("j", status=JobStatus.completed, message="done")
    assert big_decodes == []  # it was 8: a get and each change, request and workflow each


async def test_the_jobs_of_a_remembered_record_are_copies_not_decodes(pair, monkeypatch):
    # Not even the small core is decoded on the way: a remembered record hands out copies of
    # the job it was made from (_Known.decoded), each a reader's own.
    a, _ = pair
    decoded: list[str] = []
    validate = Job.model_validate_json.__func__  # type: ignore[attr-defined]

    def counting(cls, text, **kw):
        decoded.append(text)
        return validate(cls, text, **kw)
    monkeypatch.setattr(Job, "model_validate_json", classmethod(counting))
    taker = await _idle_taker(a, "generation")
    await a.create(Job(id="j", request={"workflow_json": WORKFLOW}), prepared=_prepared())
    assert await asyncio.wait_for(taker, 5) == "j"
    first, second = await a.get("j"), await a.get("j")
    assert first is not second and first.status is JobStatus.generating and first.workflow == WORKFLOW
    first.marks["mine"] = 1.0  # a reader's own copy: what it does to it stays with it
    assert "mine" not in second.marks and "mine" not in (await a.get("j")).marks
    await a.update("j", message="running on gpu0", backend="gpu0", attempts=1)
    post = await _idle_taker(a, "postprocess")
    await a.advance("j", "postprocess", status=JobStatus.postprocessing, message="fetching")
    assert await asyncio.wait_for(post, 5) == "j"
    job = await a.get("j")
    assert (job.status, job.backend, job.attempts) == (JobStatus.postprocessing, "gpu0", 1)
    await a.update("j", status=JobStatus.completed, message="done")
    done = await a.get("j")  # as a sync call's answer reads the job its end woke it for
    assert (done.status, done.message, done.backend) == (JobStatus.completed, "done", "gpu0")
    assert decoded == []  # it was 8 here: each read and each change decoded the core


async def test_what_changes_the_workflow_or_comes_from_elsewhere_is_read_anew(pair, big_decodes):
    a, b = pair
    await a.create(Job(id="j", request={"workflow_json": WORKFLOW}), prepared=_prepared())
    # A change of the workflow here: the next reader here gets the new one.
    smaller = {"1": {"class_type": "EmptyImage", "inputs": {}}}
    await a.update("j", workflow=smaller)
    assert (await a.get("j")).workflow == smaller
    # Another process's change: read and decoded from what it wrote.
    other = {**WORKFLOW, "extra": {"class_type": "SaveImage", "inputs": {}}}
    await b.update("j", workflow=other, message="changed elsewhere")
    job = await a.get("j")
    assert job.workflow == other and job.message == "changed elsewhere"
    assert len(big_decodes) >= 1
    # A change computed here after that is made from b's version, not from a stale copy.
    job = await a.update("j", message="running on gpu0", backend="gpu0")
    assert job.workflow == other and job.request == {"workflow_json": WORKFLOW}
    assert (await b.get("j")).workflow == other


def test_what_is_kept_decoded_is_bounded_in_count_and_size(monkeypatch):
    # What a process remembers decoded stays small whatever it reads: the newest few records,
    # and never one whose texts would be held twice at a large size (an inline input).
    monkeypatch.setattr(redis_records, "_DECODED_MAX", 3)
    monkeypatch.setattr(redis_records, "_DECODED_BYTES", 10_000)
    known = redis_records.KnownRecords()
    text = orjson.dumps({"w": "x" * 1000}).decode()

    def remember(job_id: str, request: str) -> None:
        job = Job(id=job_id, request=orjson.loads(request))
        known.remember(job, "1", "born", job.model_dump_json(), request, None, True)

    for i in range(5):
        remember(f"j{i}", text)
    decoded = [i for i in range(5) if known.get(f"j{i}").parsed is not None]
    assert decoded == [2, 3, 4]
    assert all(known.get(f"j{i}") is not None for i in range(5))  # still remembered, as texts
    remember("big", orjson.dumps({"w": "x" * 20_000}).decode())
    assert known.get("big").parsed is None
    remember("j5", text)
    remember("j6", text)
    assert [i for i in range(7) if known.get(f"j{i}").parsed is not None] == [4, 5, 6]
    known.forget("j6")
    remember("j7", text)  # the room j6 left is taken without dropping another
    assert [i for i in range(8) if known.get(f"j{i}") and known.get(f"j{i}").parsed is not None] == [4, 5, 7]


async def test_an_ended_job_written_again_elsewhere_is_read_as_written(pair):
    # The job an end left is kept for the reads that follow it, and only for the same record:
    # another process's later write (its webhook's delivery) is what a read here then shows.
    a, b = pair
    await a.create(Job(id="j", request={"workflow_json": WORKFLOW}), prepared=_prepared())
    await a.update("j", status=JobStatus.failed, message="done")
    assert (await a.get("j")).webhook is None
    await b.set_webhook("j", WebhookState(state="delivered", attempts=1, last_status=200))
    job = await a.get("j")
    assert job.status is JobStatus.failed and job.webhook is not None and job.webhook.state == "delivered"
    await a.set_webhook("j", WebhookState(state="delivered", attempts=2, last_status=204))
    assert (await b.get("j")).webhook.attempts == 2 and (await a.get("j")).webhook.last_status == 204
