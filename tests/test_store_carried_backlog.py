"""A generation's hand-over to postprocess is carried (kept unwritten, redis_carried.py) not
only to an idle taker of its process but also into a short backlog for takers that are all
busy yet come back quickly: under load the takers are rarely idle, and each job carried saves
the shared queue's write and take. The backlog is bounded in length and in age, and takers
that stopped coming back get none of it: then the job goes through the shared queue, where
every process's takers can have it."""

from __future__ import annotations

import asyncio

from comfy_gateway.jobs.model import JobStatus

from .support.stores import long_leases as pair  # noqa: F401 - a fixture
from .test_store_carried import PROMPTLY, _carried, _generating, _hand_to_postprocess, _statuses
from .test_store_local_handoff import _lease_holder


async def _busy(a, *waiting: str) -> None:
    """Jobs `waiting` generating under a's leases, and a's one postprocess taker busy with job
    "k", which it just took: it came for a job a moment ago."""
    for job_id in waiting:
        await _generating(a, job_id)
    await _carried(a, "k")


async def _written(a, b, job_id: str) -> None:
    """The hand-over of job `job_id` went through the shared queue: another process takes it."""
    assert (await b.get(job_id)).status is JobStatus.postprocessing
    assert await asyncio.wait_for(b.dequeue("postprocess"), PROMPTLY) == job_id


async def test_a_hand_over_waits_here_for_a_busy_taker_that_comes_back(pair):
    a, b = pair
    a.queues.carry_fresh = PROMPTLY  # however slow this machine: the takers count as quick
    await _busy(a, "j")
    await _hand_to_postprocess(a, "j")
    # Not in the shared queue, not leased by postprocess: no other process can take it.
    assert await a.redis.zcard(a.keys.waiting("postprocess")) == 0
    assert await b.queues.take_once("postprocess") is None
    assert await _lease_holder(a, "postprocess", "j") is None
    assert await _lease_holder(a, "generation", "j") == a.consumer
    # The taker, done with "k", comes back and gets "j" from its box.
    await a.update("k", status=JobStatus.completed, message="completed with 1 output(s)")
    await a.ack("postprocess", "k")
    assert await asyncio.wait_for(a.dequeue("postprocess"), PROMPTLY) == "j"
    await a.update("j", status=JobStatus.completed, message="completed with 1 output(s)")
    await a.ack("postprocess", "j")
    assert _statuses(await b.events_after("j", 0)) == [
        "queued", "preprocessing", "generating", "postprocessing", "completed"]
    assert await _lease_holder(a, "generation", "j") is None


async def test_takers_that_have_not_come_back_lately_get_no_backlog(pair):
    a, b = pair
    await _busy(a, "j")
    await asyncio.sleep(3 * a.queues.carry_fresh)  # "k" keeps its taker busy meanwhile
    await _hand_to_postprocess(a, "j")
    await _written(a, b, "j")


async def test_the_backlog_is_bounded_in_length(pair):
    a, b = pair
    a.queues.carry_fresh, a.queues.carry_backlog = PROMPTLY, 1
    await _busy(a, "j1", "j2")
    await _hand_to_postprocess(a, "j1")  # waits here
    await _hand_to_postprocess(a, "j2")  # one too many
    await _written(a, b, "j2")
    assert await asyncio.wait_for(a.dequeue("postprocess"), PROMPTLY) == "j1"


async def test_the_backlog_is_bounded_in_age(pair):
    a, b = pair
    a.queues.carry_fresh = PROMPTLY
    await _busy(a, "j1", "j2", "j3")
    await _hand_to_postprocess(a, "j1")
    await _hand_to_postprocess(a, "j2")
    await asyncio.sleep(0.4)
    # A taker comes back and takes "j1"; "j2" has waited 0.4 s, more than the takers may keep
    # a job from the other processes now.
    assert await asyncio.wait_for(a.dequeue("postprocess"), PROMPTLY) == "j1"
    a.queues.carry_fresh = 0.2
    await _hand_to_postprocess(a, "j3")
    await _written(a, b, "j3")
    assert await asyncio.wait_for(a.dequeue("postprocess"), PROMPTLY) == "j2"
