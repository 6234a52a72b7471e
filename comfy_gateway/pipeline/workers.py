"""Supervised worker pools: N loops per stage that take a job id, run the stage on it, and
survive anything a job throws at them. While a job runs its lease is renewed; a worker that
finds its lease taken over (another process now owns the job) stops working on it."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

from ..logs import job_context

log = logging.getLogger(__name__)

Handler = Callable[[str], Awaitable[None]]


class WorkerPool:
    def __init__(self, stage: str, size: int, take: Callable[[], Awaitable[str]], handle: Handler,
                 on_done: Callable[[str, float], None], ready: Callable[[], Awaitable[None]] | None = None,
                 label: str = "", release: Callable[[str], Awaitable[None]] | None = None,
                 renew: Callable[[str], Awaitable[bool]] | None = None, renew_every: float = 10.0):
        self.stage = stage
        self.size = size
        self.busy = 0
        self._take, self._handle, self._on_done, self._ready = take, handle, on_done, ready
        self._release, self._renew, self._renew_every = release, renew, renew_every
        self._label = label or stage
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._supervise(i), name=f"{self._label}-{i}") for i in range(self.size)
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _supervise(self, index: int) -> None:
        # The handlers catch job errors themselves; this restarts a loop that broke anyway.
        while True:
            try:
                await self._loop()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                log.exception("%s worker %d crashed; restarting it", self._label, index)
                await asyncio.sleep(0.5)

    async def _loop(self) -> None:
        while True:
            if self._ready is not None:
                await self._ready()
            job_id = await self._take()
            self.busy += 1
            started = time.perf_counter()
            try:
                # Every line logged while this stage works on the job carries its id.
                with job_context(job_id):
                    owned = await self._run(job_id)
            finally:
                self.busy -= 1
                self._on_done(self.stage, time.perf_counter() - started)
            if owned and self._release is not None:
                await self._release(job_id)

    async def _run(self, job_id: str) -> bool:
        """Run the handler while renewing the job's lease; False if the lease was lost."""
        if self._renew is None:
            await self._handle(job_id)
            return True
        work = asyncio.create_task(self._handle(job_id), name=f"{self._label}:{job_id}")
        keeper = asyncio.create_task(self._keep_lease(job_id, work))
        try:
            await asyncio.wait({work})
        except asyncio.CancelledError:  # the pool is stopping
            work.cancel()
            raise
        finally:
            keeper.cancel()
        if work.cancelled():  # only the keeper cancels it: the lease is gone
            return False
        work.result()  # a handler error reaches the supervisor, as without leases
        return True

    async def _keep_lease(self, job_id: str, work: asyncio.Task[None]) -> None:
        while True:
            await asyncio.sleep(self._renew_every)
            try:
                still_ours = await self._renew(job_id)
            except Exception:  # noqa: BLE001 - Redis hiccup: try again next round
                log.warning("%s: could not renew the lease of job %s", self._label, job_id, exc_info=True)
                continue
            if not still_ours:
                log.warning("%s: job %s was taken over by another process; stopping here", self._label, job_id)
                work.cancel()
                return
