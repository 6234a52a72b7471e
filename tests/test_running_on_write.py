"""A job's "running on" write, made just before its prompt is posted (pipeline/generation.py),
tells whether the job still runs: when it finds the job ended meanwhile (cancelled or timed out
by another process as it was being taken), or fails, no prompt is posted and the job ends with
a message; the worker's slot is free for the next job. Both stores, a real runtime in front of
the fake ComfyUI; the store ends the job just before that write lands, a timing no real store
can be asked for."""

from __future__ import annotations

import asyncio

import pytest

from comfy_gateway.jobs.memory import MemoryJobStore
from comfy_gateway.jobs.model import JobStatus
from comfy_gateway.jobs.redis import RedisJobStore, connect

from .conftest import Fake
from .support.redis import REDIS_URL, new_prefix, wipe_prefix
from .support.runtimes import runtime_over
from .support.settling import eventually, quick


class EndedBeforeRunningOn:
    """A store whose first "running on" write finds the job cancelled by someone else
    ("cancelled"), or fails ("fails")."""

    outcome: str | None = None

    async def update(self, job_id: str, **change):
        if self.outcome and str(change.get("message", "")).startswith("running on"):
            outcome, self.outcome = self.outcome, None
            if outcome == "fails":
                raise ConnectionError("the store went away (injected)")
            await super().update(job_id, status=JobStatus.cancelled,  # type: ignore[misc]
                                 message="cancelled by another process")
        return await super().update(job_id, **change)  # type: ignore[misc]


class EndedMemoryStore(EndedBeforeRunningOn, MemoryJobStore):
    pass


class EndedRedisStore(EndedBeforeRunningOn, RedisJobStore):
    pass


@pytest.mark.parametrize("outcome", ["cancelled", "fails"])
@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_a_running_on_write_that_finds_the_job_ended_or_fails_posts_no_prompt(
        kind: str, outcome: str, fake_factory, tmp_path):
    fake: Fake = fake_factory()
    prefix = new_prefix()
    store = EndedMemoryStore() if kind == "memory" else EndedRedisStore(connect(REDIS_URL), prefix=prefix)
    store.outcome = outcome
    try:
        async with runtime_over(store, fake.url, tmp_path) as runtime:
            assert runtime.generation is not None
            # The taker's own write: no job is created "running on" its backend (claims.py), whether
            # or not the backend is in rotation by the time the first one arrives.
            runtime.generation.claims.offer = lambda job_id: None  # type: ignore[method-assign]
            job, _ = await runtime.submit({"workflow_json": quick("first")})

            async def ended(job_id: str):
                now = await store.get(job_id)
                return now if now.status.terminal else None

            done = await eventually(lambda: ended(job.id), 20, "the job ended")
            if outcome == "cancelled":
                assert done.status is JobStatus.cancelled and done.message == "cancelled by another process", done
            else:
                assert done.status is JobStatus.failed and "the store went away" in done.message, done
            # Never sent to ComfyUI: the next job runs alone, in the slot the first one left.
            again, _ = await runtime.submit({"workflow_json": quick("after")})
            finished = await eventually(lambda: ended(again.id), 20, "the next job ended")
            assert finished.status is JobStatus.completed, finished
            stats = await asyncio.to_thread(fake.stats)
            assert stats["prompts_received"] == 1 and stats["prompts_executed"] == 1, stats
            assert runtime.router.in_use == {b.name: 0 for b in runtime.pool.backends}
    finally:
        if kind == "redis":
            await wipe_prefix(prefix)
