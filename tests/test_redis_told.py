"""A job's events are told only to the processes that have to do with it (redis_heard.py): those
that created, changed or took it, and those with a follower waiting on it, which ask to be
listed before they wait. Three Redis stores on one prefix stand for three gateway processes."""

from __future__ import annotations

import asyncio
import time

import pytest

from comfy_gateway.jobs.following import IDLE
from comfy_gateway.jobs.model import Job, JobStatus

from .support.redis import new_prefix, redis_store, wipe_prefix

PROMPTLY = 5.0  # a follower told of an event wakes at once; its idle tick comes after 60 s


@pytest.fixture
async def three():
    prefix = new_prefix()
    stores = [await redis_store(prefix, lease_seconds=2.0) for _ in range(3)]
    yield stores
    await wipe_prefix(prefix)
    for s in stores:
        await s.close()


def told_of(store) -> list[str]:
    """The job events this store's subscription receives from now on (their payloads)."""
    notify = store._notify
    got: list[str] = []
    dispatch = notify._dispatch

    def counting(channel: str, data: str) -> None:
        if channel == notify._told:
            got.append(data)
        dispatch(channel, data)

    notify._dispatch = counting
    return got


async def _next_status(events) -> str:
    """The status of the follower's next event that is not progress, as soon as it is told."""
    while True:
        item = await asyncio.wait_for(events.__anext__(), PROMPTLY)
        if getattr(item, "type", None) not in (None, "progress"):
            return item.status


async def _end_of(follower):
    """The event that ends the job, as soon as the follower is told of it."""
    async with asyncio.timeout(PROMPTLY):
        async for item in follower:
            if getattr(item, "type", None) == "final_result":
                return item


async def _origins(store, job_id: str) -> set[str]:
    """The processes the job's record lists, each listed once."""
    listed = (await store.redis.hget(store.keys.job(job_id), "heard") or "").split()
    assert len(listed) == len(set(listed)), listed
    return set(listed)


async def test_only_the_processes_of_a_job_are_told_of_its_events(three):
    a, b, c = three
    told = {name: told_of(s) for name, s in zip("abc", three)}
    await a.create(Job(id="j", request={"w": 1}))
    follower = b.events("j", idle=60)  # b follows the job a runs, as a stream in b would
    assert (await _next_status(follower)) == "queued"  # read on its first look
    waiting = asyncio.create_task(_next_status(follower))  # b lists itself, then waits
    await asyncio.sleep(0.2)
    assert await _origins(a, "j") == {a._notify.origin, b._notify.origin}
    await a.update("j", status=JobStatus.preprocessing)
    assert await waiting == "preprocessing"
    await a.update("j", status=JobStatus.failed, message="done")
    assert await _next_status(follower) == "failed"
    assert await _origins(a, "j") == {a._notify.origin, b._notify.origin}  # a wrote again: once
    await asyncio.sleep(0.2)  # anything else published has arrived by now
    assert [d.rpartition(" ")[2] for d in told["b"]] == ["j", "!j"]  # each change once, from a
    assert told["c"] == []  # c has nothing to do with the job: told nothing
    assert told["a"] == []  # the writer wakes its own followers itself


async def test_the_taker_is_told_of_a_cancel_written_elsewhere(three):
    a, b, _ = three
    await a.create(Job(id="j", request={"w": 1}))
    # b took it, and has written nothing of it yet: listed by its take.
    assert await asyncio.wait_for(b.dequeue("preprocess"), PROMPTLY) == "j"
    watch = b.events("j", after=1, wake="end", idle=60)  # as a worker watches for the end
    assert b._notify.heard.knows("j")
    ended = asyncio.create_task(asyncio.wait_for(watch.__anext__(), PROMPTLY))
    await asyncio.sleep(0.2)
    await a.update("j", status=JobStatus.cancelled, message="cancelled by the client")
    event = await ended
    assert event.status == "cancelled"


async def test_the_creator_is_told_of_the_end_its_taker_wrote_elsewhere(three):
    """The way of every sync call: followed from before its creation, created here, run by
    another process."""
    a, b, _ = three
    wait = a.events("j", wake="end", look_first=False, idle=60)
    await a.create(Job(id="j", request={"w": 1}))
    assert a._notify.heard.knows("j")  # listed by its creation: no HEAR before the wait
    end = asyncio.create_task(_end_of(wait))
    assert await asyncio.wait_for(b.dequeue("preprocess"), PROMPTLY) == "j"
    await b.update("j", status=JobStatus.preprocessing)
    await b.update("j", status=JobStatus.failed, message="went wrong")
    assert (await end).message == "went wrong"


async def test_a_process_that_changed_a_job_is_told_of_the_next_change(three):
    a, b, c = three
    await a.create(Job(id="j", request={"w": 1}))
    await c.update("j", status=JobStatus.preprocessing)  # c wrote it: listed by that change
    follower = c.events("j", after=2, wake="end", idle=60)
    assert c._notify.heard.knows("j")
    end = asyncio.create_task(asyncio.wait_for(follower.__anext__(), PROMPTLY))
    await asyncio.sleep(0.2)
    await a.update("j", status=JobStatus.cancelled, message="cancelled")
    assert (await end).status == "cancelled"


async def test_a_follower_that_read_the_job_another_way_is_told_too(three):
    """A follower made without a first look (it read the job's status itself, as a request
    naming an existing job does): its process is listed before it waits, then it looks."""
    a, b, _ = three
    await a.create(Job(id="j", request={"w": 1}))
    follower = b.events("j", after=1, wake="end", look_first=False, idle=60)
    assert await b.status("j") is JobStatus.queued
    await a.update("j", status=JobStatus.failed, message="went wrong")  # before b's follower waits
    end = asyncio.create_task(asyncio.wait_for(follower.__anext__(), PROMPTLY))
    assert (await end).status == "failed"  # the look after listing read it


async def test_only_live_jobs_are_counted_on_as_listed(three):
    """A listing kept here stands for a HEAR only for a job that was live when this process was
    listed: an ended job expires RESULT_TTL after its end, and a request_id then names its id
    again, for a new job whose record lists nobody yet."""
    a, b, _ = three
    await b.create(Job(id="ended-here", request={"w": 1}))
    assert b._notify.heard.knows("ended-here")
    await b.update("ended-here", status=JobStatus.failed, message="done")
    assert not b._notify.heard.knows("ended-here")
    await a.create(Job(id="ended-there", request={"w": 1}))
    await a.update("ended-there", status=JobStatus.cancelled, message="done")
    follower = b.events("ended-there", after=2, idle=0.3)  # past its end, as a stream resumed there
    assert await asyncio.wait_for(follower.__anext__(), PROMPTLY) is IDLE
    follower.close()
    assert await _origins(a, "ended-there") == {a._notify.origin, b._notify.origin}  # listed...
    assert not b._notify.heard.knows("ended-there")  # ...but not counted on


async def test_a_listing_is_trusted_for_a_while_only():
    """A listing older than RESULT_TTL (here 1 s) may belong to a job that expired since and
    whose id a new job took: a follower then asks again."""
    prefix = new_prefix()
    a = await redis_store(prefix, result_ttl=1)
    b = await redis_store(prefix, result_ttl=1)
    try:
        await b.create(Job(id="j", request={"w": 1}))  # b listed, the job live
        assert b._notify.heard.knows("j")
        await a.update("j", status=JobStatus.failed, message="done")  # ended elsewhere
        await asyncio.sleep(1.2)
        assert await a.expire(time.time() - 1) == 1  # the sweep, RESULT_TTL after its end
        await a.create(Job(id="j", request={"w": 2}))
        follower = b.events("j", after=1, wake="end", idle=60)
        end = asyncio.create_task(asyncio.wait_for(follower.__anext__(), PROMPTLY))
        await asyncio.sleep(0.2)
        await a.update("j", status=JobStatus.cancelled, message="done again")
        assert (await end).message == "done again"
    finally:
        await wipe_prefix(prefix)
        await a.close()
        await b.close()

