"""A job prepared on arrival that goes at once to an idle generation taker is created "running on"
its backend (pipeline/claims.py): the generation's first write goes with the create, and the taker
posts the prompt without writing again. When another job waits in the queue the claim is dropped
and the job is created as before, behind it. Real runtimes in front of the fake ComfyUI, both
stores; real Redis with two stores on one prefix for the dropped claim."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

import pytest

from comfy_gateway.jobs.memory import MemoryJobStore
from comfy_gateway.jobs.model import Job, JobStatus
from comfy_gateway.jobs.redis import RedisJobStore, connect
from comfy_gateway.jobs.store import Claim, Passing, Prepared
from comfy_gateway.pipeline.runtime import Runtime

from .conftest import Fake
from .support.redis import REDIS_URL, new_prefix, redis_store, wipe_prefix
from .support.runtimes import runtime_over
from .support.script_calls import on_script_calls
from .support.settling import eventually, holds, quick
from .support.stores import watchers_of


class Writes:
    """The store writes that carry a "running on" message, by kind: the create's, the updates'."""

    def __init__(self) -> None:
        self.create: list[str] = []
        self.update: list[str] = []

    def saw(self, kind: str, values: Any) -> None:
        found = [v for v in values if isinstance(v, str) and v.startswith("running on")]
        getattr(self, kind).extend(found)


class CountedMemoryStore(MemoryJobStore):
    def __init__(self) -> None:
        super().__init__()
        self.writes = Writes()
        self._creating = False

    async def create(self, job: Job, **kw: Any) -> Job:
        self._creating = True  # (it moves the job along with updates of its own)
        try:
            return await super().create(job, **kw)
        finally:
            self._creating = False

    async def update(self, job_id: str, **change: Any) -> Job:
        self.writes.saw("create" if self._creating else "update", [change.get("message")])
        return await super().update(job_id, **change)


def _count_scripts(store: RedisJobStore) -> Writes:
    """Counts the "running on" arguments of each CREATE and UPDATE script call (the Redis
    writes), whichever part of the store makes them."""
    writes = Writes()

    def counted(name: str, keys: list[Any], args: list[Any]) -> None:
        if name in ("CREATE", "UPDATE"):
            writes.saw(name.lower(), args)
    on_script_calls(store, counted)
    return writes


def _taker_idle(store) -> bool:
    if isinstance(store, MemoryJobStore):
        return store._queues["generation"].has_idle_taker()
    return store.queues._handoffs.free("generation")


@contextlib.asynccontextmanager
async def counted_runtime(kind: str, fake: Fake, tmp_path) -> AsyncIterator[tuple[Runtime, Writes]]:
    prefix = new_prefix()
    store = CountedMemoryStore() if kind == "memory" else RedisJobStore(connect(REDIS_URL), prefix=prefix)
    writes = store.writes if isinstance(store, CountedMemoryStore) else _count_scripts(store)
    try:
        async with runtime_over(store, fake.url, tmp_path) as runtime:
            yield runtime, writes
    finally:
        if kind == "redis":
            await wipe_prefix(prefix)


async def _ended(runtime: Runtime, job_id: str) -> Job | None:
    job = await runtime.store.get(job_id)
    return job if job is not None and job.status.terminal else None


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_a_job_taken_at_once_is_created_running_on_its_backend(kind: str, fake_factory, tmp_path):
    fake: Fake = fake_factory()
    async with counted_runtime(kind, fake, tmp_path) as (runtime, writes):
        router, store = runtime.router, runtime.store
        assert router is not None
        await eventually(lambda: holds(router.peek() is not None and _taker_idle(store)), 20,
                         "a backend in rotation and a generation taker waiting")
        backend = router.peek()
        assert backend is not None

        job, created = await runtime.submit({"workflow_json": quick("claimed")})
        # As created: already running on the backend, its first attempt.
        assert created and job.status is JobStatus.generating, job
        assert (job.backend, job.message, job.attempts) == (backend.name, f"running on {backend.name}", 1)
        assert "generation_started" in job.marks

        done = await eventually(lambda: _ended(runtime, job.id), 20, "the job ended")
        assert done.status is JobStatus.completed and done.attempts == 1, done
        # One "running on" write, the create's; the taker posted the prompt without its own.
        assert writes.create == [f"running on {backend.name}"] and writes.update == [], vars(writes)
        messages = [e.message for e in await store.events_after(job.id, 0)]
        assert messages[messages.index("waiting for a free backend") + 1] == f"running on {backend.name}", messages
        stats = await asyncio.to_thread(fake.stats)
        assert stats["prompts_received"] == 1 and stats["prompts_executed"] == 1, stats
        assert router.in_use == {b.name: 0 for b in runtime.pool.backends}
        assert not runtime.generation.claims._held  # type: ignore[union-attr]  (nothing kept)


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_a_taker_given_another_backend_than_the_claim_names_writes_that_one(kind: str, fake_factory, tmp_path):
    fakes = [fake_factory(), fake_factory()]
    prefix = new_prefix()
    store = CountedMemoryStore() if kind == "memory" else RedisJobStore(connect(REDIS_URL), prefix=prefix)
    writes = store.writes if isinstance(store, CountedMemoryStore) else _count_scripts(store)
    try:
        async with runtime_over(store, ",".join(f.url for f in fakes), tmp_path) as runtime:
            router = runtime.router
            assert router is not None
            await eventually(lambda: holds(all(b.in_rotation for b in router.backends) and _taker_idle(store)), 20,
                             "both backends in rotation and a generation taker waiting")
            # The router names one backend ahead, and its taker gets the other (as when another
            # job takes the named one's last slot in between).
            picked = router.peek()
            assert picked is not None
            named = next(b for b in router.backends if b is not picked)
            router.peek = lambda: named  # type: ignore[method-assign]
            job, _ = await runtime.submit({"workflow_json": quick("moved")})
            assert (job.backend, job.message) == (named.name, f"running on {named.name}"), job

            done = await eventually(lambda: _ended(runtime, job.id), 20, "the job ended")
            assert done.status is JobStatus.completed and done.backend == picked.name, done
            assert done.attempts == 1, done  # one run, although two "running on" writes
            assert writes.create == [f"running on {named.name}"] and writes.update == [f"running on {picked.name}"]
            messages = [e.message for e in await store.events_after(job.id, 0)]
            at = messages.index(f"running on {named.name}")
            assert messages[at + 1] == f"running on {picked.name}", messages
            ran = [(await asyncio.to_thread(f.stats))["prompts_received"] for f in fakes]
            assert sorted(ran) == [0, 1], ran
            assert not runtime.generation.claims._held  # type: ignore[union-attr]
            await eventually(lambda: holds(watchers_of(store) == 0), 10, "no watch of the job left")
    finally:
        if kind == "redis":
            await wipe_prefix(prefix)


def _prepared(workflow: dict, claim: Claim | None) -> Prepared:
    return Prepared(steps=(Passing(JobStatus.preprocessing, "preparing the workflow"),
                           Passing(JobStatus.generating, "waiting for a free backend")),
                    fields={"workflow": workflow, "inputs": []}, stage="generation", claim=claim)


async def test_a_claim_is_dropped_when_another_job_waits_in_the_queue():
    prefix = new_prefix()
    here, other = await redis_store(prefix), await redis_store(prefix)
    claim = Claim(Passing(JobStatus.generating, "running on b1", {"generation_started": 1.0}),
                  {"backend": "b1", "attempts": 1})
    try:
        # Another process's job waits in the generation queue (it has no taker).
        first = await other.create(Job(id="first"), prepared=_prepared(quick("first"), None))
        assert first.status is JobStatus.generating
        with here.queues.idle_taker("generation"):  # a taker of ours waits idle
            made = await here.create(Job(id="second"), prepared=_prepared(quick("second"), claim))
            # Not handed (it would have overtaken the first job): created without its claim.
            assert (made.backend, made.message, made.attempts) == (None, "waiting for a free backend", 0), made
            assert here.queues._handoffs.free("generation")  # the hand-over asked for was given back
        seen = await other.get("second")
        assert seen is not None and seen.backend is None and seen.message == "waiting for a free backend", seen
        assert [e.message for e in await other.events_after("second", 0)] == [
            "queued", "preparing the workflow", "waiting for a free backend"]
        assert await other.position("generation", "second") == 1  # behind the first

        # With nobody waiting, the same claim is written with the job, handed to our taker.
        await other.remove_from_queue("generation", "first")
        await other.remove_from_queue("generation", "second")
        with here.queues.idle_taker("generation"):
            made = await here.create(Job(id="third"), prepared=_prepared(quick("third"), claim))
        assert (made.backend, made.message, made.attempts) == ("b1", "running on b1", 1), made
        seen = await other.get("third")
        assert seen is not None and (seen.backend, seen.message) == ("b1", "running on b1"), seen
        assert await other.position("generation", "third") is None  # taken, not waiting
    finally:
        await wipe_prefix(prefix)
        await here.close()
        await other.close()
