"""A task cancelled while it talks to Redis is cancelled: the Redis client (redis_connect.py) never
lets a command swallow the cancel and return normally, as redis-py's send does on Python 3.11
(asyncio.wait_for, CPython gh-86296). Swallowed, a loop's stop never ended: a store sweeper
stopped right after its start ran on, about one stop in four. A real Redis; the cancel lands at
every point of a call in turn (a timing no test can choose otherwise)."""

from __future__ import annotations

import asyncio
import collections

from comfy_gateway.jobs.redis import connect
from comfy_gateway.pipeline.sweeper import Sweeper

from .support.redis import REDIS_URL, redis_store, wipe_prefix


async def test_a_task_cancelled_during_redis_calls_is_cancelled():
    redis = connect(REDIS_URL)
    outcomes: collections.Counter[str] = collections.Counter()
    try:
        for i in range(300):
            async def calls() -> str:
                await redis.get("cg-test:nothing")
                await redis.hget("cg-test:nothing", "field")
                return "returned"

            task = asyncio.ensure_future(calls())
            for _ in range(i % 20):  # the cancel comes after 0..19 steps of the loop: every phase
                await asyncio.sleep(0)
            if not task.cancel():
                outcomes["done before the cancel"] += 1
                continue
            try:
                outcomes[await task] += 1  # a swallowed cancel: the calls returned as if never told
            except asyncio.CancelledError:
                outcomes["cancelled"] += 1
        assert set(outcomes) <= {"cancelled", "done before the cancel"}, dict(outcomes)
        assert outcomes["cancelled"] >= 150, dict(outcomes)
        assert await redis.ping()  # and the client still answers (cancelled calls left no reply behind)
        assert await redis.set("cg-test:cancel-probe", "v", ex=5) and await redis.get("cg-test:cancel-probe") == "v"
    finally:
        await redis.aclose()


async def test_a_sweeper_on_redis_stops_however_soon_after_it_starts():
    store = await redis_store()
    try:
        async def act(job_id: str) -> bool:
            return True

        for i in range(80):
            sweeper = Sweeper("probe", store.facts.schedule("probe"), act, interval=30.0, hold=60.0)
            sweeper.start()
            for _ in range(i % 16):
                await asyncio.sleep(0)
            # A swallowed cancel leaves the loop asleep for its 30 s interval, then running on.
            await asyncio.wait_for(sweeper.stop(), 5)
    finally:
        await store.close()
        await wipe_prefix(store.prefix)
