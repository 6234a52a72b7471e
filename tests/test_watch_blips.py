"""While a generation runs, it watches its job for an end that came from elsewhere (a cancel, a
time limit) to withdraw the prompt. A store error while reading that watch (a Redis blip) is
followed again, never read as the end: a healthy prompt is left to finish, and an end that came
meanwhile still withdraws it. A real runtime over a memory store whose event reads fail on
demand, in front of the fake ComfyUI."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from comfy_gateway.jobs.memory import MemoryJobStore
from comfy_gateway.jobs.model import JobStatus

from .conftest import Fake
from .support.runtimes import runtime_over
from .support.settling import eventually, holds, quick


class BlippingStore(MemoryJobStore):
    """Event reads fail while `blips` is above 0, one per read."""

    def __init__(self) -> None:
        super().__init__()
        self.blips = 0
        self.failed_reads = 0

    async def _read_events(self, job_id: str, after: int):
        if self.blips > 0:
            self.blips -= 1
            self.failed_reads += 1
            raise ConnectionError("the store did not answer")
        return await super()._read_events(job_id, after)


async def _history(fake: Fake, prompt_id: str) -> dict:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{fake.url}/history/{prompt_id}", timeout=10)).json().get(prompt_id, {})


async def _running(store: BlippingStore, job_id: str) -> bool:
    job = await store.get(job_id)
    return job is not None and job.status is JobStatus.generating and job.backend is not None


async def test_a_failed_read_of_the_watch_leaves_the_prompt_running(fake_factory, tmp_path, caplog):
    fake: Fake = fake_factory()
    await asyncio.to_thread(fake.control, node_delay=0.4)
    store = BlippingStore()
    caplog.set_level(logging.WARNING, logger="comfy_gateway.pipeline.generation")
    async with runtime_over(store, fake.url, tmp_path) as runtime:
        job, _ = await runtime.submit({"workflow_json": quick("blip")})
        await eventually(lambda: _running(store, job.id), 20, "the job running on the fake")
        await asyncio.sleep(0.1)  # its prompt posted, its watch waiting
        # Two failed reads in a row, as a watch woken during a Redis blip would make: the
        # first follow's and tenacity's first attempt's.
        store.blips = 2
        store._watchers.event(job.id, "end")  # woken as if by an end, which it then cannot read
        await eventually(lambda: holds(store.failed_reads == 2), 10, "both reads failed")

        done = await runtime.wait_until_done(job.id, 20)
        assert done is not None and done.status is JobStatus.completed, done
        assert done.attempts == 1, done
        statuses = [m[0] for m in (await _history(fake, job.id))["status"]["messages"]]
        assert "execution_interrupted" not in statuses and "execution_success" in statuses, statuses
        followed_again = [r for r in caplog.records if "following its events failed" in r.getMessage()]
        assert len(followed_again) == 2, [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("blips", [1, 3])
async def test_an_end_read_after_failed_reads_still_withdraws_the_prompt(blips: int, fake_factory, tmp_path):
    fake: Fake = fake_factory()
    await asyncio.to_thread(fake.control, node_delay=2.0)
    store = BlippingStore()
    async with runtime_over(store, fake.url, tmp_path) as runtime:
        job, _ = await runtime.submit({"workflow_json": quick("ended")})
        await eventually(lambda: _running(store, job.id), 20, "the job running on the fake")
        await asyncio.sleep(0.1)
        store.blips = blips
        # Ended by a write this process's canceller did not make (another process's cancel):
        # only the watch tells the generation, once a read gets through.
        await store.update(job.id, status=JobStatus.cancelled, message="cancelled elsewhere")
        history = await eventually(lambda: _history(fake, job.id), 15, "the prompt's history")
        # Withdrawn, well before its 4 s of nodes ended.
        assert "execution_interrupted" in [m[0] for m in history["status"]["messages"]], history
        assert store.failed_reads == blips
        done = await store.get(job.id)
        assert done is not None and done.status is JobStatus.cancelled, done
