"""Per-job time limits: a heap of deadlines and one task that sleeps until the nearest."""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from typing import Awaitable, Callable

log = logging.getLogger(__name__)


class DeadlineWatcher:
    def __init__(self, on_expire: Callable[[str], Awaitable[None]]):
        self._on_expire = on_expire
        self._heap: list[tuple[float, str]] = []
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="deadlines")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def add(self, job_id: str, deadline: float) -> None:
        heapq.heappush(self._heap, (deadline, job_id))
        if self._heap[0][1] == job_id:
            self._changed.set()  # a nearer deadline than the one being slept on

    async def _run(self) -> None:
        while True:
            self._changed.clear()
            if not self._heap:
                await self._changed.wait()
                continue
            delay = self._heap[0][0] - time.time()
            if delay > 0:
                try:
                    await asyncio.wait_for(self._changed.wait(), delay)
                except asyncio.TimeoutError:
                    pass
                continue
            _, job_id = heapq.heappop(self._heap)
            try:
                await self._on_expire(job_id)
            except Exception:  # noqa: BLE001 - one job's timeout must not stop the others'
                log.exception("timing out job %s failed", job_id, extra={"job_id": job_id})
