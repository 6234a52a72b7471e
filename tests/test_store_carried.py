"""A generation's hand-over to an idle postprocess taker of its own process is kept unwritten
and written with the job's next change (redis_carried.py): the job's events, listeners and
lease come out as if it had been written at once, other processes see the job as it stood a
moment before, and a kept hand-over is written alone after CARRY_FOR."""

from __future__ import annotations

import asyncio

from comfy_gateway.jobs.model import Job, JobStatus
from comfy_gateway.jobs.redis_carried import CARRY_FOR

from .support.stores import long_leases as pair  # noqa: F401 - a fixture
from .test_store_local_handoff import _idle_taker, _lease_holder

PROMPTLY = 5.0
OUTPUTS = [{"node_id": "9", "filename": "a.png"}]


async def _generating(a, job_id: str) -> None:
    """Job `job_id` created by a, taken through preprocess, generating under a's lease."""
    await a.create(Job(id=job_id, request={"w": 1}))
    assert await asyncio.wait_for(a.dequeue("preprocess"), PROMPTLY) == job_id
    await a.update(job_id, status=JobStatus.preprocessing)
    await a.advance(job_id, "generation", status=JobStatus.generating, message="running", backend="gpu0")
    assert await asyncio.wait_for(a.dequeue("generation"), PROMPTLY) == job_id


async def _hand_to_postprocess(a, job_id: str) -> Job:
    return await a.advance(job_id, "postprocess", status=JobStatus.postprocessing, message="fetching 1 output(s)",
                           comfy_outputs=OUTPUTS)


async def _carried(a, job_id: str) -> None:
    """Job `job_id` generating under a's lease, handed to an idle postprocess taker of a's."""
    await _generating(a, job_id)
    taker = await _idle_taker(a, "postprocess")
    await _hand_to_postprocess(a, job_id)
    assert await asyncio.wait_for(taker, PROMPTLY) == job_id


def _statuses(events) -> list[str]:
    return [e.status for e in events if e.type != "progress"]


async def test_a_hand_over_to_an_idle_postprocess_taker_here_is_written_with_the_end(pair):
    a, b = pair
    seen: list[tuple[str, str | None]] = []
    a.add_listener(lambda job, previous: seen.append((job.status.value, previous.value if previous else None)))
    await _carried(a, "j")
    # Here the job has moved on; in Redis it has not yet, and no process was told.
    job = await a.get("j")
    assert job.status is JobStatus.postprocessing and job.comfy_outputs == OUTPUTS
    assert job.request == {"w": 1} and job.backend == "gpu0"
    assert await a.status("j") is JobStatus.postprocessing
    assert (await b.get("j")).status is JobStatus.generating
    assert await a.redis.zcard(a.keys.waiting("postprocess")) == 0
    assert await _lease_holder(a, "postprocess", "j") is None
    # The generation's lease stands for the postprocess taker's hold, under either name.
    assert await _lease_holder(a, "generation", "j") == a.consumer
    assert await a.renew("postprocess", "j")
    await a.ack("generation", "j")  # the generation worker is done: the lease goes on
    assert await _lease_holder(a, "generation", "j") == a.consumer
    await a.update("j", status=JobStatus.completed, message="completed with 1 output(s)")
    # One write: both states with their events in order, and the lease acked.
    job = await b.get("j")
    assert job.status is JobStatus.completed and job.comfy_outputs == OUTPUTS
    events = await b.events_after("j", 0)
    assert _statuses(events) == ["queued", "preprocessing", "generating", "postprocessing", "completed"]
    assert [e.message for e in events if e.status == "postprocessing"] == ["fetching 1 output(s)"]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert await _lease_holder(a, "generation", "j") is None
    await a.ack("postprocess", "j")
    assert seen[-2:] == [("postprocessing", "generating"), ("completed", "postprocessing")]


async def test_a_kept_hand_over_is_written_alone_after_a_moment_and_keeps_its_lease(pair):
    a, b = pair
    await _carried(a, "j")
    assert (await b.get("j")).status is JobStatus.generating
    for _ in range(int(PROMPTLY / CARRY_FOR)):
        if (await b.get("j")).status is JobStatus.postprocessing:
            break
        await asyncio.sleep(CARRY_FOR)
    job = await b.get("j")
    assert job.status is JobStatus.postprocessing and job.comfy_outputs == OUTPUTS
    assert _statuses(await b.events_after("j", 0)) == ["queued", "preprocessing", "generating", "postprocessing"]
    # Still held by a (under the generation's lease), and acked with its end.
    assert await _lease_holder(a, "generation", "j") == a.consumer
    assert await a.redis.zcard(a.keys.waiting("postprocess")) == 0
    await a.update("j", status=JobStatus.failed, message="the bucket refused it")
    assert await _lease_holder(a, "generation", "j") is None
    assert _statuses(await b.events_after("j", 0))[-1] == "failed"


async def test_without_an_idle_postprocess_taker_the_hand_over_is_written_at_once(pair):
    a, b = pair
    await _generating(a, "j")
    await _hand_to_postprocess(a, "j")
    assert (await b.get("j")).status is JobStatus.postprocessing
    assert await asyncio.wait_for(b.dequeue("postprocess"), PROMPTLY) == "j"


async def test_a_cancel_by_another_process_wins_over_a_kept_hand_over(pair):
    a, b = pair
    await _carried(a, "j")
    await b.update("j", status=JobStatus.cancelled, message="cancelled by the client")
    job = await a.update("j", status=JobStatus.completed, message="completed with 1 output(s)")
    assert job.status is JobStatus.cancelled
    assert _statuses(await b.events_after("j", 0)) == ["queued", "preprocessing", "generating", "cancelled"]
    await a.ack("postprocess", "j")  # the taker's ack releases the generation's lease
    assert await _lease_holder(a, "generation", "j") is None


async def test_readers_here_see_an_end_another_process_wrote_over_a_kept_hand_over(pair):
    a, b = pair
    await _carried(a, "j")
    a._changes._carried._kept["j"].timer.cancel()  # kept unwritten as long as the test needs
    written = len(await b.events_after("j", 0))
    async with a.events("j", after=written, wake="end") as events:
        await b.update("j", status=JobStatus.cancelled, message="cancelled by the client")
        # A sync call's wait here: woken by the cancel's event, it reads the job at once.
        event = await asyncio.wait_for(anext(events), PROMPTLY)
        assert event.status == "cancelled"
        job = await a.get("j")
        assert job is not None and job.status is JobStatus.cancelled, job
        assert await a.status("j") is JobStatus.cancelled
    # The kept hand-over, written with the taker's end, yields to the cancel.
    assert (await a.update("j", status=JobStatus.completed, message="done")).status is JobStatus.cancelled
    assert _statuses(await b.events_after("j", 0)) == ["queued", "preprocessing", "generating", "cancelled"]
    await a.ack("postprocess", "j")


async def test_no_hand_over_is_carried_from_a_job_another_process_ended(pair):
    a, b = pair
    await _generating(a, "j")  # a remembers the job as it wrote it
    written = len(await b.events_after("j", 0))
    async with a.events("j", after=written, wake="end") as events:
        await b.update("j", status=JobStatus.cancelled, message="cancelled by the client")
        assert (await asyncio.wait_for(anext(events), PROMPTLY)).status == "cancelled"  # a heard it
    taker = await _idle_taker(a, "postprocess")
    try:
        # The generation ends a moment later: its hand-over is not computed from what a remembers.
        assert (await _hand_to_postprocess(a, "j")).status is JobStatus.cancelled
        assert (await a.get("j")).status is JobStatus.cancelled
        assert _statuses(await b.events_after("j", 0)) == ["queued", "preprocessing", "generating", "cancelled"]
        assert not taker.done()  # nothing was handed to the idle taker
    finally:
        taker.cancel()


async def test_a_job_whose_holder_stopped_after_its_hand_over_was_written_is_taken_over(pair):
    a, b = pair
    await _carried(a, "j")
    await a.hand_back_all()  # a stops: the kept hand-over is written, the job given back
    assert (await b.get("j")).status is JobStatus.postprocessing
    # Its holder is the generation stage, which sends a postprocessing job on to postprocess.
    assert await asyncio.wait_for(b.dequeue("generation"), PROMPTLY) == "j"
    assert _statuses(await b.events_after("j", 0)) == ["queued", "preprocessing", "generating", "postprocessing"]


async def test_a_kept_hand_over_whose_write_fails_is_kept_and_written_later(pair):
    a, b = pair
    await _carried(a, "j")
    script, failures = a._changes._script, []

    async def unreachable_once(**kw):
        if not failures:
            failures.append(kw)
            raise ConnectionError("Redis went away (injected)")
        return await script(**kw)

    a._changes._script = unreachable_once
    for _ in range(int(PROMPTLY / CARRY_FOR)):
        if (await b.get("j")).status is JobStatus.postprocessing:
            break
        assert (await a.get("j")).status is JobStatus.postprocessing  # still kept here meanwhile
        await asyncio.sleep(CARRY_FOR)
    assert failures and (await b.get("j")).status is JobStatus.postprocessing
    assert _statuses(await b.events_after("j", 0)) == ["queued", "preprocessing", "generating", "postprocessing"]
    assert await _lease_holder(a, "generation", "j") == a.consumer
