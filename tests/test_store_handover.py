"""Taking jobs right after a queue ran empty, from the same process and from another one: the
Redis store wakes its own takers without the pub/sub round trip, skips the echo of its own
messages, and spares the take that would come back empty, none of which may delay a job."""

from __future__ import annotations

import asyncio

from comfy_gateway.jobs.model import Job

from .support.redis import new_prefix, redis_store, wipe_prefix
from .support.stores import store  # noqa: F401  (the fixture: both stores)

# Far below the Redis store's fallback look (every LEASE_SECONDS / 2 = 15 s): a job found only
# by that look fails these tests.
PROMPTLY = 5.0


async def test_a_job_after_the_queue_ran_empty_is_taken_at_once(store):
    await store.enqueue("generation", "a")
    assert await asyncio.wait_for(store.dequeue("generation"), PROMPTLY) == "a"  # nothing left waiting
    taker = asyncio.create_task(store.dequeue("generation"))
    await asyncio.sleep(0.05)  # the taker is waiting by now (not needed for correctness)
    await store.enqueue("generation", "b")
    assert await asyncio.wait_for(taker, PROMPTLY) == "b"
    await store.enqueue("generation", "c")  # no taker waiting: the next one finds it
    assert await asyncio.wait_for(store.dequeue("generation"), PROMPTLY) == "c"
    await store.enqueue("generation", "d")
    await store.enqueue("generation", "e")  # still waiting after "d" is taken
    assert await asyncio.wait_for(store.dequeue("generation"), PROMPTLY) == "d"
    assert await asyncio.wait_for(store.dequeue("generation"), PROMPTLY) == "e"


async def test_a_job_from_another_process_reaches_an_idle_taker():
    prefix = new_prefix()
    a, b = await redis_store(prefix), await redis_store(prefix)
    try:
        await b.create(Job(id="first"))
        assert await asyncio.wait_for(a.dequeue("preprocess"), PROMPTLY) == "first"
        taker = asyncio.create_task(a.dequeue("preprocess"))
        follower = a.events("second")
        await b.create(Job(id="second"))
        assert await asyncio.wait_for(taker, PROMPTLY) == "second"
        event = await asyncio.wait_for(anext(follower), PROMPTLY)
        assert event.type == "status"  # b's event woke a's follower
        follower.close()
    finally:
        await wipe_prefix(prefix)
        await a.close()
        await b.close()


async def test_a_hand_over_ends_the_lease_of_the_stage_that_made_it():
    """Once preprocess handed the job to generation, no other process can take it over from
    preprocess (its lease ended with the hand-over), even one that reclaims any idle lease."""
    from comfy_gateway.jobs.model import JobStatus

    prefix = new_prefix()
    a = await redis_store(prefix)
    b = await redis_store(prefix, lease_seconds=0.0)  # takes over any lease at once
    try:
        await a.create(Job(id="j"))
        assert await asyncio.wait_for(a.dequeue("preprocess"), PROMPTLY) == "j"
        await a.update("j", status=JobStatus.preprocessing)
        await a.advance("j", "generation", status=JobStatus.generating)
        assert await b.queues.take_once("preprocess") is None  # nothing left to take over
        assert await a.renew("preprocess", "j")  # the worker finishing up is not told it lost it
        await a.ack("preprocess", "j")
        assert await asyncio.wait_for(b.dequeue("generation"), PROMPTLY) == "j"
        assert await b.count_delivery("generation", "j") == 1
    finally:
        await wipe_prefix(prefix)
        await a.close()
        await b.close()


async def test_a_job_that_ends_while_taken_leaves_no_lease_behind():
    """A job that ends while this process holds it (cancelled, failed, completed) is acked in
    the same step: no other process takes it over when the worker stops before its own ack."""
    from comfy_gateway.jobs.model import JobStatus

    prefix = new_prefix()
    a = await redis_store(prefix)
    b = await redis_store(prefix, lease_seconds=0.0)  # takes over any lease at once
    try:
        await a.create(Job(id="j"))
        assert await asyncio.wait_for(a.dequeue("preprocess"), PROMPTLY) == "j"
        await a.update("j", status=JobStatus.cancelled, message="cancelled by the client")
        assert await b.queues.take_once("preprocess") is None  # nothing left to take over
        assert await a.renew("preprocess", "j")  # the worker finishing up is not told it lost it
        await a.ack("preprocess", "j")
    finally:
        await wipe_prefix(prefix)
        await a.close()
        await b.close()
