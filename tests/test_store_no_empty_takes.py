"""A taker looks in the queue (a TAKE script call) only when a job may be waiting there: one was
announced since the last look found none, or half a lease passed (a lease running out is only
found by looking). A job handed to this process's box (redis_handoff.py) never waited in the
queue, so it sends no taker there, whether it is picked up by an idle taker or by one coming
back from work. Real Redis, the store's own takers."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

from comfy_gateway.jobs.model import Job, JobStatus
from comfy_gateway.jobs.redis import RedisJobStore
from comfy_gateway.jobs.store import Passing, Prepared

from .support.redis import new_prefix, redis_store, wipe_prefix
from .support.script_calls import on_script_calls
from .support.settling import eventually

PROMPTLY = 5.0


def _count_takes(store: RedisJobStore) -> list[str]:
    """The stage of every TAKE script call the store makes, in order."""
    stages: list[str] = []

    def counted(name: str, keys: list[Any], args: list[Any]) -> None:
        if name == "TAKE":
            stages.append(args[4])  # ARGV: group, consumer, lease, channel, stage
    on_script_calls(store, counted)
    return stages


def _prepared(n: int) -> Prepared:
    return Prepared(steps=(Passing(JobStatus.preprocessing, "preparing"), Passing(JobStatus.generating, "ready")),
                    fields={"workflow": {"1": {"class_type": "X", "inputs": {"n": n}}}}, stage="generation")


@contextlib.asynccontextmanager
async def _takers(store: RedisJobStore, n: int, done: list[str]) -> AsyncIterator[None]:
    """n generation takers of the store at work while in the block; each job they get is ended
    at once and listed in `done`."""
    async def work() -> None:
        while True:
            job_id = await store.dequeue("generation")
            await asyncio.sleep(0.01)  # at work: the other taker gets the next hand-over
            await store.update(job_id, status=JobStatus.cancelled, message="done here")
            await store.ack("generation", job_id)
            done.append(job_id)
    workers = [asyncio.create_task(work()) for _ in range(n)]
    try:
        yield
    finally:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


async def _both_idle(store: RedisJobStore) -> bool:
    return store.queues._handoffs.free("generation") and store.queues._handoffs._idle["generation"] == 2


async def test_jobs_handed_to_idle_takers_send_nobody_to_the_queue():
    prefix = new_prefix()
    store = await redis_store(prefix)
    takes = _count_takes(store)
    done: list[str] = []
    try:
        async with _takers(store, 2, done):
            await eventually(lambda: _both_idle(store), PROMPTLY, "both takers waiting")
            first_looks = len(takes)  # each looked once and found the queue empty
            ids = []
            for n in range(12):
                await eventually(lambda: _both_idle(store) if n % 2 == 0 else _free(store), PROMPTLY,
                                 "a taker waiting")
                job = await store.create(Job(id=f"h{n}"), prepared=_prepared(n))
                ids.append(job.id)
            await eventually(lambda: _all(done, ids), PROMPTLY, "every job worked on")
            await eventually(lambda: _both_idle(store), PROMPTLY, "both takers back")
            # Twelve jobs, each handed over in its create: no look at the queue for any of them,
            # neither by the taker woken for it nor by one coming back from work.
            assert len(takes) == first_looks, takes

            # A job announced in the queue (created by another process) is looked for, once.
            other = await redis_store(prefix)
            try:
                await other.create(Job(id="queued"), prepared=_prepared(99))
                await eventually(lambda: _all(done, ["queued"]), PROMPTLY, "the queued job worked on")
                assert takes[first_looks:] == ["generation"], takes
            finally:
                await other.close()
    finally:
        await wipe_prefix(prefix)
        await store.close()


async def test_a_lease_that_runs_out_is_found_by_takers_kept_busy_with_hand_overs():
    prefix = new_prefix()
    store = await redis_store(prefix, lease_seconds=1.0)
    gone = await redis_store(prefix, lease_seconds=1.0)
    done: list[str] = []
    try:
        # A process takes a job and stops without a word: its lease runs out in 1 s.
        await gone.create(Job(id="orphan"), prepared=_prepared(0))
        assert await asyncio.wait_for(gone.dequeue("generation"), PROMPTLY) == "orphan"
        await gone.close()
        async with _takers(store, 2, done):
            # Meanwhile this process's takers only ever get jobs handed to them (no announcement):
            # half a lease after a look, one of them looks again, and finds the lease run out.
            n = 0
            while "orphan" not in done:
                assert n < 400, "the job whose lease ran out was never taken over"
                await eventually(lambda: _free(store), PROMPTLY, "a taker waiting")
                await store.create(Job(id=f"b{n}"), prepared=_prepared(n))
                n += 1
                await asyncio.sleep(0.02)
    finally:
        await wipe_prefix(prefix)
        await store.close()


async def _free(store: RedisJobStore) -> bool:
    return store.queues._handoffs.free("generation")


async def _all(done: list[str], ids: list[str]) -> bool:
    return set(ids) <= set(done)
