"""A job queued while a taker of its stage waits idle in the same process goes to that taker
in the queueing step itself (redis_handoff.py): leased and counted as a take, never shown to
the other processes, and never ahead of a job already waiting."""

from __future__ import annotations

import asyncio

import pytest

from comfy_gateway.jobs.model import Job, JobStatus
from comfy_gateway.jobs.redis_queues import GROUP
from comfy_gateway.jobs.store import Passing, Prepared

from .support.redis import new_prefix, redis_store, wipe_prefix

PROMPTLY = 5.0


async def _pair(lease_seconds: float = 30.0):
    prefix = new_prefix()
    return prefix, await redis_store(prefix, lease_seconds=lease_seconds), await redis_store(prefix)


async def _close(prefix, *stores) -> None:
    await wipe_prefix(prefix)
    for s in stores:
        await s.close()


async def _lease_holder(store, stage: str, job_id: str) -> str | None:
    entry = await store.redis.hget(store.keys.entries(stage), job_id)
    if entry is None:
        return None
    pending = await store.redis.xpending_range(store.keys.stream(stage), GROUP, entry, entry, 1)
    return pending[0]["consumer"] if pending else None


async def _idle_taker(store, stage: str) -> asyncio.Task[str]:
    taker = asyncio.create_task(store.dequeue(stage))
    for _ in range(500):  # until it waits (its first look found nothing)
        mark = store.queues.reserve(stage)
        if mark is not None:
            store.queues.settle(stage, "", mark, False, None)  # only looked: give it back
            return taker
        await asyncio.sleep(0.01)
    raise AssertionError(f"no {stage} taker went idle")


async def _queue_messages(store, until_stage: str) -> tuple[list[str], asyncio.Task[None]]:
    """Subscribe to the deployment's queue channel; the list fills as messages come."""
    got: list[str] = []
    pubsub = store.redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(store.keys.queues_channel)

    async def read() -> None:
        async for msg in pubsub.listen():
            got.append(msg["data"].split(" ", 1)[1])  # after the writer's tag
            if got[-1].startswith(until_stage):
                break
        await pubsub.aclose()

    return got, asyncio.create_task(read())


async def test_a_hand_over_goes_to_the_idle_taker_of_its_process_in_the_same_step():
    prefix, a, b = await _pair()
    taker = b_taker = None
    try:
        await a.create(Job(id="j", request={"w": 1}))
        assert await asyncio.wait_for(a.dequeue("preprocess"), PROMPTLY) == "j"
        await a.update("j", status=JobStatus.preprocessing)
        taker = await _idle_taker(a, "generation")
        b_taker = await _idle_taker(b, "generation")
        got, reader = await _queue_messages(b, "preprocess")
        await a.advance("j", "generation", status=JobStatus.generating, workflow={"1": {"class_type": "X"}})
        assert await asyncio.wait_for(taker, PROMPTLY) == "j"
        # Leased to this process, counted once, waiting nowhere; the other process was not told.
        assert await _lease_holder(a, "generation", "j") == a.consumer
        assert await a.count_delivery("generation", "j") == 1
        assert await a.redis.zcard(a.keys.waiting("generation")) == 0
        await b.enqueue("preprocess", "marker")  # a message after any the hand-over sent
        await asyncio.wait_for(reader, PROMPTLY)
        assert not any(m.startswith("generation +") for m in got), got
        assert not b_taker.done()
        job = await a.get("j")
        assert job.status is JobStatus.generating and job.workflow == {"1": {"class_type": "X"}}
        assert job.request == {"w": 1}
        # The stage then works as after a take: renewed, and acked with the next hand-over.
        assert await a.renew("generation", "j")
        await a.advance("j", "postprocess", status=JobStatus.postprocessing)
        assert await _lease_holder(a, "generation", "j") is None
        # No postprocess taker of a's waits: the job waits there for anyone's.
        assert await asyncio.wait_for(b.dequeue("postprocess"), PROMPTLY) == "j"
    finally:
        for t in (taker, b_taker):
            if t is not None:
                t.cancel()
        await _close(prefix, a, b)


@pytest.mark.parametrize("stage", ["preprocess", "generation"])
async def test_a_job_created_with_an_idle_taker_of_its_stage_goes_to_it(stage: str):
    # A job created into the generation queue: one prepared as it arrived (store.Prepared).
    prepared = Prepared(steps=(Passing(JobStatus.preprocessing, "preparing"), Passing(JobStatus.generating, "ready")),
                        fields={"workflow": {"1": {"class_type": "X"}}}, stage=stage) if stage == "generation" else None
    other = "generation" if stage == "preprocess" else "preprocess"
    prefix, a, b = await _pair()
    try:
        taker = await _idle_taker(a, stage)
        got, reader = await _queue_messages(b, other)
        await a.create(Job(id="c", request={"prompt": "x"}, priority=0), prepared=prepared)
        assert await asyncio.wait_for(taker, PROMPTLY) == "c"
        await b.enqueue(other, "marker")
        await asyncio.wait_for(reader, PROMPTLY)
        assert not any(m.startswith(stage) for m in got), got
        assert await _lease_holder(a, stage, "c") == a.consumer
        assert await a.count_delivery(stage, "c") == 1
        job = await a.get("c")  # what the taker reads: the record handed over with it
        assert job.request == {"prompt": "x"}
        if prepared is not None:
            assert job.status is JobStatus.generating and job.workflow == {"1": {"class_type": "X"}}
            assert (await b.get("c")).workflow == {"1": {"class_type": "X"}}
        assert await b.queues.take_once(stage) is None
    finally:
        await _close(prefix, a, b)


async def test_a_hand_over_never_overtakes_a_job_already_waiting():
    prefix, a, b = await _pair()
    try:
        await b.enqueue("generation", "older")  # b has no taker: it waits
        await a.create(Job(id="j"))
        assert await asyncio.wait_for(a.dequeue("preprocess"), PROMPTLY) == "j"
        await a.update("j", status=JobStatus.preprocessing)
        with a.queues.idle_taker("generation"):  # a taker of a's counted idle, as in its wait
            await a.advance("j", "generation", status=JobStatus.generating)
        assert await a.redis.zrange(a.keys.waiting("generation"), 0, -1) == ["older", "j"]
        assert await _lease_holder(a, "generation", "j") is None
        assert await asyncio.wait_for(a.dequeue("generation"), PROMPTLY) == "older"
        assert await asyncio.wait_for(a.dequeue("generation"), PROMPTLY) == "j"
    finally:
        await _close(prefix, a, b)


async def test_a_handed_job_nobody_picked_up_before_its_lease_ran_out_is_left_to_its_new_taker():
    prefix, a, b = await _pair(lease_seconds=0.6)
    try:
        await a.create(Job(id="j"))
        assert await asyncio.wait_for(a.dequeue("preprocess"), PROMPTLY) == "j"
        await a.update("j", status=JobStatus.preprocessing)
        with a.queues.idle_taker("generation"):  # the taker turns busy before picking it up
            await a.advance("j", "generation", status=JobStatus.generating)
        assert await _lease_holder(a, "generation", "j") == a.consumer
        await asyncio.sleep(0.8)
        b.queues.lease_seconds = 0.6
        assert await b.queues.take_once("generation") == "j"  # the lease ran out: b took it over
        await b.enqueue("generation", "next")
        assert await asyncio.wait_for(a.dequeue("generation"), PROMPTLY) == "next"
        assert await _lease_holder(a, "generation", "j") == b.consumer
    finally:
        await _close(prefix, a, b)
