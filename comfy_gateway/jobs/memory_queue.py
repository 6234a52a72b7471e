"""A FIFO of job ids that can tell a job's place and drop one from the middle (cancel)."""

from __future__ import annotations

import asyncio
from collections import deque


class StageQueue:
    def __init__(self) -> None:
        # dict keeps insertion order: O(1) push, pop-first and removal by id.
        self._items: dict[str, None] = {}
        self._getters: deque[asyncio.Future[None]] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, job_id: str) -> None:
        self._items[job_id] = None
        while self._getters:
            fut = self._getters.popleft()
            if not fut.done():
                fut.set_result(None)
                break

    async def get(self) -> str:
        while not self._items:
            fut = asyncio.get_running_loop().create_future()
            self._getters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                # Pass the wake-up on, or a put() that chose us would be lost.
                if fut.done() and not fut.cancelled() and self._items:
                    self._wake_next()
                raise
        job_id = next(iter(self._items))
        del self._items[job_id]
        return job_id

    def _wake_next(self) -> None:
        while self._getters:
            fut = self._getters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def remove(self, job_id: str) -> bool:
        if job_id not in self._items:
            return False
        del self._items[job_id]
        return True

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._items

    def position(self, job_id: str) -> int | None:
        if job_id not in self._items:
            return None
        for i, key in enumerate(self._items):
            if key == job_id:
                return i
        return None
