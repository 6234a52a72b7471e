"""A sync call follows its job from before the job exists (Runtime.submit_followed): its wait for
the end makes no first read of the store, and still cannot miss an end that comes while the job
is being created. Both stores, a real runtime in front of the fake ComfyUI; the store ends the
job the moment it is written (by this process, or by another process on the same Redis), a
timing no real store can be asked for."""

from __future__ import annotations

import contextlib
import time
from typing import AsyncIterator

import pytest

from comfy_gateway.access.keys import ANONYMOUS
from comfy_gateway.jobs.memory import MemoryJobStore
from comfy_gateway.jobs.model import JobStatus
from comfy_gateway.jobs.redis import RedisJobStore, connect
from comfy_gateway.jobs.store import QueueFull
from comfy_gateway.pipeline.runtime import Runtime

from .conftest import Fake
from .support.redis import REDIS_URL, new_prefix, redis_store, wipe_prefix
from .support.runtimes import runtime_over
from .support.settling import eventually, holds, quick
from .support.stores import watchers_of


class EndedAsCreated:
    """A store whose next create is followed at once by a cancel (`ender`: the store that
    writes it, this one or another process's), or refused as full ("full")."""

    outcome: str | None = None
    ender = None

    async def create(self, job, **kw):
        outcome, self.outcome = self.outcome, None
        if outcome == "full":
            raise QueueFull(0, 0)
        created = (await super().create(job, **kw)).snapshot()  # type: ignore[misc]  (as it was then)
        if outcome == "cancel":
            await (self.ender or self).update(job.id, status=JobStatus.cancelled,  # type: ignore[misc]
                                              message="cancelled as it was created")
        return created


class EndedMemoryStore(EndedAsCreated, MemoryJobStore):
    pass


class EndedRedisStore(EndedAsCreated, RedisJobStore):
    pass


@contextlib.asynccontextmanager
async def ending_runtime(kind: str, fake: Fake, tmp_path) -> AsyncIterator[tuple[Runtime, EndedAsCreated]]:
    """A runtime in front of `fake` over a store of `kind` that ends or refuses jobs on demand;
    "redis-other-process": the ends are written by a second store on the same Redis prefix."""
    prefix = new_prefix()
    store = EndedMemoryStore() if kind == "memory" else EndedRedisStore(connect(REDIS_URL), prefix=prefix)
    store.ender = await redis_store(prefix) if kind == "redis-other-process" else None
    try:
        async with runtime_over(store, fake.url, tmp_path) as runtime:
            yield runtime, store
    finally:
        if store.ender is not None:
            await store.ender.close()
        if kind != "memory":
            await wipe_prefix(prefix)


def lasting(prefix: str, seconds: float = 2.0) -> dict:
    """A job that runs for `seconds` on the fake. The cancel written right after its create then
    always lands first: a quick job, taken by this process's idle worker in the create's own
    step, could run to its end before another process's cancel landed on a loaded machine (seen
    once in a clean-clone run), and a cancel of an ended job changes nothing."""
    workflow = quick(prefix)
    workflow["3"] = {"class_type": "FakeSlow", "inputs": {"images": ["1", 0], "seconds": seconds, "steps": 4}}
    workflow["2"]["inputs"]["images"] = ["3", 0]
    return workflow


@pytest.mark.parametrize("kind", ["memory", "redis", "redis-other-process"])
async def test_a_sync_wait_sees_an_end_written_while_the_job_was_created(kind: str, fake_factory, tmp_path):
    async with ending_runtime(kind, fake_factory(), tmp_path) as (runtime, store):
        store.outcome = "cancel"
        job, created, events = await runtime.submit_followed({"workflow_json": lasting("ended")}, ANONYMOUS, "end")
        assert created and events is not None
        assert not job.status.terminal, job  # as the create returned it: the cancel came after
        started = time.monotonic()
        done = await runtime.wait_until_done(job.id, 20, known=job, events=events)
        # Woken by the cancel's event (a wait registered after the create, with no first look,
        # would sleep until its timeout and answer the job as created).
        assert done is not None and done.status is JobStatus.cancelled, done
        assert done.message == "cancelled as it was created"
        assert time.monotonic() - started < 10
        # The wait closed its registration (the workers' own follows of the job end soon too).
        await eventually(lambda: holds(watchers_of(store) == 0), 10, "no follower of the job left")

        # A job of the same runtime that runs to its end is answered with its result.
        job, _, events = await runtime.submit_followed({"workflow_json": quick("runs")}, ANONYMOUS, "end")
        done = await runtime.wait_until_done(job.id, 20, known=job, events=events)
        assert done is not None and done.status is JobStatus.completed, done
        await eventually(lambda: holds(watchers_of(store) == 0), 10, "no follower of the job left")


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_a_refused_job_leaves_no_follower_behind(kind: str, fake_factory, tmp_path):
    async with ending_runtime(kind, fake_factory(), tmp_path) as (runtime, store):
        store.outcome = "full"
        with pytest.raises(QueueFull):
            await runtime.submit_followed({"workflow_json": quick("full")}, ANONYMOUS, "end")
        assert watchers_of(store) == 0
