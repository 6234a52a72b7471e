"""The running gateway: store, backends, the three worker pools, and what the API asks of them."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
import uuid
from typing import Any

import orjson

from ..comfy.pool import BackendPool
from ..jobs.factory import make_store
from ..jobs.model import Job
from ..jobs.store import STAGES, JobStore
from ..outputs.local import LocalStorage
from ..settings import Settings
from .estimates import StageStats, estimate_wait
from .generation import Generation
from .postprocess import Postprocess
from .preprocess import Preprocess
from .router import BackendRouter
from .workers import WorkerPool

log = logging.getLogger(__name__)


class DuplicateRequest(Exception):
    def __init__(self, job_id: str):
        super().__init__(f"request_id {job_id} is already used by a different request")
        self.job_id = job_id


def request_hash(payload: dict[str, Any]) -> str:
    body = {k: v for k, v in payload.items() if k != "request_id"}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


class Runtime:
    def __init__(self, settings: Settings, store: JobStore | None = None):
        self.settings = settings
        self.store: JobStore = store or make_store(settings)
        self.pool = BackendPool(settings.backend_urls, timeout=settings.backend_timeout,
                                lost_after=settings.backend_lost_after)
        self.storage = LocalStorage(settings.output_dir)
        self.stats = StageStats()
        self.pools: dict[str, list[WorkerPool]] = {}
        self.router: BackendRouter | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.settings.output_dir.mkdir(parents=True, exist_ok=True)
        await self.store.start()
        await self.pool.start()
        s, store, record = self.settings, self.store, self.stats.record

        def pool(stage: str, size: int, handler, take=None, **kw) -> WorkerPool:
            return WorkerPool(stage, size, take or (lambda: store.dequeue(stage)), handler, record,
                              release=lambda job_id: store.ack(stage, job_id),
                              renew=lambda job_id: store.renew(stage, job_id),
                              renew_every=s.lease_seconds / 3, **kw)

        self.pools["preprocess"] = [pool("preprocess", s.preprocess_workers, Preprocess(store))]
        # One generation pool, GENERATION_WORKERS slots per backend; the router sends each job
        # to the least-loaded backend in rotation (see router.py).
        router = self.router = BackendRouter(self.pool.backends, s.generation_workers)
        self.pools["generation"] = [pool(
            "generation", router.total_slots, Generation(store, router, s.backend_lost_after),
            take=lambda: router.gated_take(lambda: store.dequeue("generation")))]
        self.pools["postprocess"] = [pool("postprocess", s.postprocess_workers,
                                          Postprocess(store, self.pool, self.storage))]
        for pools in self.pools.values():
            for p in pools:
                p.start()
        self._sweeper = asyncio.create_task(self._sweep())

    async def stop(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
        for pools in self.pools.values():
            for p in pools:
                await p.stop()
        await self.pool.stop()
        await self.store.close()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(min(60.0, self.settings.result_ttl))
            try:
                await self.store.expire(time.time() - self.settings.result_ttl)
            except Exception:  # noqa: BLE001
                log.exception("expiring old results failed")

    # -- what the API asks ------------------------------------------------------------------
    async def submit(self, payload: dict[str, Any]) -> tuple[Job, bool]:
        """Create and queue a job; (job, created). The same request_id with the same payload
        gives back the existing job; with another payload it is a DuplicateRequest."""
        digest = request_hash(payload)
        job_id = payload.get("request_id") or str(uuid.uuid4())
        existing = await self.store.get(job_id)
        if existing is not None:
            if existing.request_hash == digest:
                return existing, False
            raise DuplicateRequest(job_id)
        job = Job(id=job_id, request=payload, request_hash=digest)
        try:
            return await self.store.create(job, max_waiting=self.settings.max_queue_size), True
        except KeyError:  # lost a race with the same id
            return await self.submit(payload)

    async def wait_until_done(self, job_id: str, timeout: float) -> Job | None:
        """Wait, woken by the job's events, until it ends or the timeout passes."""
        deadline = time.monotonic() + timeout
        seq = 0
        job = await self.store.get(job_id)
        while True:
            if job is None or job.status.terminal:
                return job
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return job
            await self.store.wait(job_id, seq, queue_change=False, timeout=remaining)
            events = await self.store.events_after(job_id, seq)
            seq += len(events)
            # The record is read again only when it ended (its last event is written in the
            # same step as its final state), or when nothing came (timeout, or it expired).
            if not events or events[-1].type == "final_result":
                job = await self.store.get(job_id)

    def workers(self) -> dict[str, int]:
        connected = sum(1 for b in self.pool.backends if b.connected.is_set())
        return {
            "preprocess": self.settings.preprocess_workers,
            "generation": self.settings.generation_workers * max(connected, 1),
            "postprocess": self.settings.postprocess_workers,
        }

    async def queue_info(self) -> dict[str, Any]:
        sizes = await self.store.queue_sizes()
        workers = self.workers()
        stages = {}
        for stage in STAGES:
            busy = sum(p.busy for p in self.pools.get(stage, []))
            mean = self.stats.mean(stage)
            stages[stage] = {
                "waiting": sizes[stage], "workers": workers[stage], "busy": busy,
                "mean_duration": round(mean, 6) if mean is not None else None,
                "measured_jobs": self.stats.count[stage],
            }
        waiting = sum(sizes.values())
        return {
            "queues": stages, "waiting": waiting, "max_queue_size": self.settings.max_queue_size,
            "estimated_wait_time": estimate_wait("preprocess", sizes["preprocess"], sizes, workers, self.stats),
            "backends": self.backends_info(),
        }

    def backends_info(self) -> list[dict[str, Any]]:
        """Each backend as this process sees it: in rotation or not, and its load."""
        router = self.router
        return [
            {"name": b.name, "connected": b.connected.is_set(), "in_rotation": b.connected.is_set(),
             "in_flight": b.in_flight, "slots": self.settings.generation_workers,
             "slots_in_use": router.in_use[b.name] if router else 0,
             "queue_remaining": b.queue_remaining, "down_since": b.down_since, "last_error": b.last_error}
            for b in self.pool.backends
        ]

    async def queue_position(self, job: Job) -> dict[str, Any]:
        """Where the job waits now: its stage queue, its place there and the wait ahead."""
        sizes = await self.store.queue_sizes()
        stage = _stage_of(job)
        position = await self.store.position(stage, job.id) if stage else None
        return {
            "current_queue": stage,
            "position": position,
            "queue_size": sizes.get(stage, 0) if stage else 0,
            "estimated_wait_time": (
                estimate_wait(stage, position, sizes, self.workers(), self.stats) if stage else 0.0
            ),
        }, sizes

    def retry_after(self) -> int:
        """Seconds until a slot in the queue should free up, from measured durations."""
        means = [self.stats.mean(s) or 0.0 for s in STAGES]
        workers = self.workers()
        per_slot = max(m / max(workers[s], 1) for m, s in zip(means, STAGES))
        return max(1, math.ceil(per_slot))


def _stage_of(job: Job) -> str | None:
    """The stage a job is in (waiting or worked on); None once it has ended."""
    return {
        "queued": "preprocess", "preprocessing": "preprocess", "generating": "generation",
        "postprocessing": "postprocess",
    }.get(job.status.value)
