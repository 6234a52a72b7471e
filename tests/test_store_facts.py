"""Job facts in the store (issue 10): schedules of due times (time limits, owed webhooks) that
hand each due job to one claimer, delivery counts, and an expiry sweep that counts each job once
however many processes sweep. Both stores; two Redis store instances stand for two processes."""

from __future__ import annotations

import asyncio
import time

import pytest

from comfy_gateway.jobs.model import Job, JobStatus
from comfy_gateway.jobs.store import QueueFull

from .support.redis import new_prefix, redis_store, wipe_prefix
from .support.settling import eventually
from .support.stores import store  # noqa: F401  (the fixture: both stores)




@pytest.fixture
async def two_processes():
    prefix = new_prefix()
    a, b = await redis_store(prefix), await redis_store(prefix)
    yield a, b
    await wipe_prefix(prefix)
    await a.close()
    await b.close()


async def test_a_due_entry_is_claimed_once_and_comes_back_if_not_dropped(store):
    deadlines = store.schedule("deadlines")
    now = time.time()
    await deadlines.put("late", now - 1)
    await deadlines.put("later", now + 100)
    assert await deadlines.next_due() == pytest.approx(now - 1)
    assert await deadlines.claim_due(time.time(), hold=0.3) == ["late"]
    assert await deadlines.claim_due(time.time(), hold=0.3) == []  # held by the first claimer
    # The claimer "died" without dropping it: after the hold it is due again for anyone.
    await eventually(lambda: deadlines.claim_due(time.time(), hold=0.3), 5, "the entry came back")
    await deadlines.drop("late")
    assert await deadlines.due("late") is None
    assert await deadlines.due("later") == pytest.approx(now + 100)
    await deadlines.put("later", 1.0, only_new=True)  # an existing entry keeps its time
    assert await deadlines.due("later") == pytest.approx(now + 100)
    assert await store.schedule("outbox").next_due() is None  # schedules are separate


async def test_delivery_counts_per_stage(store):
    assert [await store.count_delivery("generation", "j") for _ in range(3)] == [1, 2, 3]
    assert await store.count_delivery("postprocess", "j") == 1


async def test_two_processes_claim_each_due_entry_once(two_processes):
    a, b = two_processes
    for i in range(50):
        await a.schedule("deadlines").put(f"j{i}", time.time() - 1)
    got_a, got_b = await asyncio.gather(a.schedule("deadlines").claim_due(time.time(), 30, 30),
                                        b.schedule("deadlines").claim_due(time.time(), 30, 30))
    assert len(got_a) + len(got_b) == 50 and not set(got_a) & set(got_b)
    assert await b.count_delivery("generation", "x") == 1 and await a.count_delivery("generation", "x") == 2


async def test_concurrent_expiry_sweeps_count_each_job_once(two_processes):
    a, b = two_processes
    old = [f"old{i}" for i in range(40)]
    for job_id in old + ["c"]:
        await a.create(Job(id=job_id))
    for job_id in old:
        await a.update(job_id, status=JobStatus.cancelled)
    cutoff = time.time() + 0.001
    await asyncio.sleep(0.01)
    await a.update("c", status=JobStatus.cancelled)
    # Connections ready in both pools, so the sweeps really run side by side.
    await asyncio.gather(*(s.redis.ping() for s in (a, b) * 4))
    gone = await asyncio.gather(*(s.expire(cutoff) for s in (a, b) * 4))
    assert sum(gone) == len(old)
    assert (await b.status_counts())["cancelled"] == 1  # c is still kept
    assert await a.get("old0") is None and await a.get("c") is not None


async def test_a_job_is_in_the_deadlines_schedule_from_creation_to_its_end(store):
    """The job and its time limit are stored in one step, and the limit goes with its end."""
    due = time.time() + 60
    await store.create(Job(id="limited", deadline=due))
    await store.create(Job(id="unlimited"))
    deadlines = store.schedule("deadlines")
    assert await deadlines.due("limited") == pytest.approx(due)
    assert await deadlines.due("unlimited") is None
    with pytest.raises(KeyError):  # the same id again: the first job keeps its limit
        await store.create(Job(id="limited", deadline=due + 100))
    assert await deadlines.due("limited") == pytest.approx(due)
    with pytest.raises(QueueFull):
        await store.create(Job(id="refused", deadline=due), max_waiting=1)
    assert await deadlines.due("refused") is None
    await store.update("limited", status=JobStatus.preprocessing)
    assert await deadlines.due("limited") == pytest.approx(due)
    await store.update("limited", status=JobStatus.cancelled, message="cancelled")
    assert await deadlines.due("limited") is None
