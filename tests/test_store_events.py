"""Following a job (`store.events()`), the same on both stores: its events past `after` in
order, a Tick when nothing came, when a queue moved, or when the job is gone, the end of the
iteration with the job's end, no wake-up lost to a write racing a read, and the `wake` economy
(a follower waiting for the end is not woken by progress)."""

from __future__ import annotations

import asyncio

from comfy_gateway.jobs.following import Tick
from comfy_gateway.jobs.model import Job, JobStatus, Progress

from .support.stores import store  # noqa: F401  (the fixture: both stores)

PROMPTLY = 5.0  # far below a follower's idle tick in these tests (30 s): a lost wake-up fails


async def _items(events, n: int) -> list:
    return [await asyncio.wait_for(anext(events), PROMPTLY) for _ in range(n)]


async def test_events_past_after_in_order_then_the_end_stops_it(store):
    await store.create(Job(id="a"))
    await store.update("a", status=JobStatus.preprocessing, message="p")
    async with store.events("a", after=1) as events:
        first = await _items(events, 1)
        await store.set_progress("a", Progress(node="3", value=1, max=2))
        await store.update("a", status=JobStatus.generating)
        await store.update("a", status=JobStatus.cancelled, message="stopped")
        rest = await asyncio.wait_for(_all(events), PROMPTLY)  # ends by itself after the end
    assert [(e.seq, e.type) for e in first + rest] == [
        (2, "status"), (3, "progress"), (4, "status"), (5, "final_result")]
    assert rest[-1].message == "stopped"
    # An ended job: every event from the start, then the iteration stops.
    assert [e.seq for e in await asyncio.wait_for(_all(store.events("a")), PROMPTLY)] == [1, 2, 3, 4, 5]


async def _all(events) -> list:
    return [item async for item in events]


async def test_a_gone_job_gives_one_gone_tick(store):
    assert await asyncio.wait_for(_all(store.events("never-made")), PROMPTLY) == [Tick("gone")]


async def test_idle_tick_when_nothing_comes(store):
    await store.create(Job(id="a"))
    async with store.events("a", after=1, idle=0.2) as events:
        assert await _items(events, 1) == [Tick("idle")]
        await store.update("a", message="later")
        assert [e.message for e in await _items(events, 1)] == ["later"]  # still following


async def test_queue_moves_tick_only_while_asked(store):
    await store.create(Job(id="a"))
    await store.create(Job(id="b"))
    await store.create(Job(id="c"))
    async with store.events("c", after=1, idle=0.5) as events:
        assert await store.dequeue("preprocess") == "a"
        assert await _items(events, 1) == [Tick("idle")]  # not listening to queues: not told
        events.queue_changes = True
        reading = asyncio.create_task(anext(events))
        await asyncio.sleep(0.05)
        assert await store.dequeue("preprocess") == "b"
        assert await asyncio.wait_for(reading, PROMPTLY) == Tick("queue_moved")
        assert await store.position("preprocess", "c") == 0


async def test_a_write_during_a_read_is_not_lost(store):
    """An event written while the follower reads (after the read's look, before it returns)
    must wake the follower's next wait: it may not be cleared by the read that missed it."""
    await store.create(Job(id="a"))
    real, raced = store._read_events, []

    async def racing_read(job_id: str, after: int):
        got = await real(job_id, after)
        if not raced:
            raced.append(True)
            await store.update(job_id, message="during the read")
        return got

    store._read_events = racing_read
    async with store.events("a") as events:
        first, second = await _items(events, 2)
    assert (first.seq, second.seq, second.message) == (1, 2, "during the read")


async def test_an_end_watcher_is_not_woken_by_progress(store):
    await store.create(Job(id="a"))
    await store.update("a", status=JobStatus.preprocessing)
    reads = {"end": 0, "all": 0}
    real = store._read_events
    async with store.events("a", after=2, wake="end") as end, store.events("a", after=2) as every:
        for follower, wake in ((end, "end"), (every, "all")):
            async def counted(job_id: str, after: int, wake: str = wake):
                reads[wake] += 1
                return await real(job_id, after)
            follower._read = counted
        end_items = asyncio.create_task(_all(end))
        every_items = asyncio.create_task(_all(every))
        for step in range(3):
            await asyncio.sleep(0.05)  # the followers wait again
            await store.set_progress("a", Progress(node="1", value=step, max=3))
        await asyncio.sleep(0.05)
        await store.update("a", status=JobStatus.failed, message="over")
        got_end, got_every = await asyncio.wait_for(asyncio.gather(end_items, every_items), PROMPTLY)
    # Either way every event is given; the end watcher looked twice (at first, at the end).
    assert [e.type for e in got_end] == [e.type for e in got_every] == ["progress"] * 3 + ["final_result"]
    assert reads["end"] == 2, reads
    assert reads["all"] >= 4, reads


async def test_a_follower_that_does_not_look_first_reads_nothing_until_it_is_woken(store, monkeypatch):
    await store.create(Job(id="a"))
    await store.update("a", status=JobStatus.preprocessing, message="p")
    reads = []
    real = store._read_events

    async def counted(job_id, after):
        reads.append(after)
        return await real(job_id, after)

    monkeypatch.setattr(store, "_read_events", counted)
    async with store.events("a", wake="end", look_first=False, idle=0.2) as events:
        assert await asyncio.wait_for(anext(events), PROMPTLY) == Tick("idle")  # nothing read
        assert reads == []
        await store.update("a", status=JobStatus.generating)  # not the end: still nothing read
        await store.update("a", status=JobStatus.cancelled, message="stopped")
        items = await asyncio.wait_for(_all(events), PROMPTLY)
    # Woken by the end, it gives every event from the first, the end last.
    events_seen = [i for i in items if not isinstance(i, Tick)]
    assert [e.status for e in events_seen] == ["queued", "preprocessing", "generating", "cancelled"]
    assert reads == [0]
