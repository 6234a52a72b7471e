"""The Redis store tells other processes of its changes over pub/sub, and tells nobody when no
other process listens: a lone gateway then spends no Redis publish, and no read of its own echo,
on any change. A job's events go to the processes it has to do with only (test_redis_told.py),
its queue changes to every process. Observed with a pattern subscriber, which sees every message
on the store's channels without counting as one of their listeners."""

from __future__ import annotations

import asyncio

from comfy_gateway.jobs.model import Job, JobStatus, Progress
from comfy_gateway.jobs.redis import connect
from comfy_gateway.jobs.redis_keys import RedisKeys

from .support.redis import REDIS_URL, new_prefix, redis_store, wipe_prefix


class Observer:
    def __init__(self, prefix: str):
        self._redis = connect(REDIS_URL)
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        self._base = RedisKeys(prefix).base  # every channel's name starts with it
        self._pattern = RedisKeys(prefix).pattern
        self.seen: list[tuple[str, str]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "Observer":
        await self._pubsub.psubscribe(self._pattern)
        self._task = asyncio.create_task(self._listen())
        return self

    async def _listen(self) -> None:
        async for msg in self._pubsub.listen():
            if msg["type"] == "pmessage":
                self.seen.append((msg["channel"][len(self._base):], msg["data"]))

    async def __aexit__(self, *exc) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._pubsub.aclose()
        await self._redis.aclose()


async def one_job_through(store, job_id: str) -> None:
    await store.create(Job(id=job_id))
    assert await asyncio.wait_for(store.dequeue("preprocess"), 5) == job_id
    await store.update(job_id, status=JobStatus.preprocessing)
    await store.advance(job_id, "generation", status=JobStatus.generating)
    assert await asyncio.wait_for(store.dequeue("generation"), 5) == job_id
    await store.set_progress(job_id, Progress(value=1, max=2))
    await store.update(job_id, status=JobStatus.failed, message="done")


async def test_a_lone_process_publishes_nothing_and_a_second_one_hears_its_part():
    prefix = new_prefix()
    a = await redis_store(prefix)
    try:
        async with Observer(prefix) as seen:
            await one_job_through(a, "alone")
            await a.enqueue("postprocess", "alone")
            assert await a.remove_from_queue("postprocess", "alone")
            await asyncio.sleep(0.2)  # a message published would have arrived by now
            assert seen.seen == []

            b = await redis_store(prefix)  # a second process, listening
            told_b = "events" + b._notify.tag
            try:
                taker = asyncio.create_task(b.dequeue("preprocess"))
                await asyncio.sleep(0.1)  # b's taker waits for an announcement
                await a.create(Job(id="shared"))
                # Its lease would only be looked at again after 15 s: the announcement woke it.
                assert await asyncio.wait_for(taker, 5) == "shared"
                # b took the job: it is told of a's changes of it from now on, on its channel.
                await a.update("shared", status=JobStatus.preprocessing)
                await a.set_progress("shared", Progress(value=1, max=2))
                for _ in range(100):  # until what is asserted below came (or 5 s passed)
                    channels = [channel for channel, _ in seen.seen]
                    if channels.count("queues") >= 2 and channels.count(told_b) >= 2:
                        break
                    await asyncio.sleep(0.05)
            finally:
                await b.close()
        channels = [channel for channel, _ in seen.seen]
        assert channels.count("queues") >= 2 and channels.count(told_b) == 2, seen.seen
        assert [data for channel, data in seen.seen if channel == told_b] == [
            f"{a._notify.tag}shared", f"{a._notify.tag}~shared"]  # a change, then a progress frame
        assert set(channels) == {"queues", told_b}  # nothing told to a, nor to anybody else
    finally:
        await wipe_prefix(prefix)
        await a.close()
