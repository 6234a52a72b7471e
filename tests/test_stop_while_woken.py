"""A loop that sleeps until it is woken stops when told to, even when the wake-up and the stop come
together: before Python 3.12, asyncio.wait_for returns the wake-up and swallows the cancel, and
the loop ran on (its stop never ended). The wake-up lands at every point of the stop in turn."""

from __future__ import annotations

import asyncio

from comfy_gateway.jobs.memory import MemoryJobStore
from comfy_gateway.pipeline.sweeper import Sweeper


async def test_a_sweeper_woken_as_it_is_stopped_stops():
    store = MemoryJobStore()

    async def act(job_id: str) -> bool:
        return True

    for i in range(60):
        sweeper = Sweeper("probe", store.schedule("probe"), act, interval=30.0, hold=60.0)
        sweeper.start()
        for _ in range(3):  # asleep, waiting for a kick or its 30 s interval
            await asyncio.sleep(0)
        sweeper.kick()
        for _ in range(i % 6):
            await asyncio.sleep(0)
        await asyncio.wait_for(sweeper.stop(), 5)
