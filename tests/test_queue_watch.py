"""The process's one watch of the queues (api/queue_watch.py) places every followed waiting job
after each queue change. A change that comes while it reads the queues must not be lost: the
streams would show a place one behind until the next change, which may be minutes away. A real
runtime (memory store) in front of the hung fake ComfyUI; the store moves the queue in the
middle of the watch's reading, a timing no real store can be asked for."""

from __future__ import annotations

import asyncio

from comfy_gateway.api.queue_watch import IDLE_WAIT, queue_watch
from comfy_gateway.jobs.memory import MemoryJobStore

from .conftest import Fake
from .support.runtimes import runtime_over
from .support.settling import eventually, quick


class MovesWhileRead(MemoryJobStore):
    """While armed, reading the place of job `watched` takes job `ahead` out of the queue right
    after the place was read: the reader holds a place that a queue change already changed."""

    watched: str | None = None
    ahead: str | None = None

    async def position(self, stage: str, job_id: str) -> int | None:
        place = await super().position(stage, job_id)
        if job_id == self.watched and self.ahead is not None:
            ahead, self.ahead = self.ahead, None
            assert await self.remove_from_queue(stage, ahead)
        return place


async def test_a_queue_change_while_the_places_are_read_is_shown_at_once(fake_factory, tmp_path):
    fake: Fake = fake_factory()
    fake.control(hang=True)
    store = MovesWhileRead()
    try:
        async with runtime_over(store, fake.url, tmp_path, generation_workers=1) as runtime:
            ids = [(await runtime.submit({"workflow_json": quick(f"j{n}")}))[0].id for n in range(3)]

            async def waiting_places():
                places = [await store.position("generation", i) for i in ids]
                return places if places == [None, 0, 1] else None  # the first at the backend

            await eventually(waiting_places, 10, "one job at the backend, two waiting")
            watch = queue_watch(runtime)
            with watch.follow(ids[2]) as follower:
                place, _ = await watch.place(follower, await store.get(ids[2]))
                assert place["position"] == 1
                store.watched, store.ahead = ids[2], ids[1]
                await runtime.submit({"workflow_json": quick("later")})  # a queue change: the watch reads
                job = await store.get(ids[2])

                async def at_the_head() -> None:
                    while True:
                        await asyncio.shield(follower.changed)
                        if (await watch.place(follower, job))[0]["position"] == 0:
                            return

                # The job ahead left during that reading: the place shown must follow without
                # waiting for another change (the watch's idle wait is IDLE_WAIT).
                await asyncio.wait_for(at_the_head(), IDLE_WAIT / 3)
                assert store.ahead is None
    finally:
        fake.control(hang=False)
