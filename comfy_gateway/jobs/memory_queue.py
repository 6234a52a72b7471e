"""A queue of job ids by priority (higher first, first come first served within one) that can
tell a job's place and drop one from the middle (cancel)."""

from __future__ import annotations

import asyncio
from collections import deque


class StageQueue:
    def __init__(self) -> None:
        # priority -> ids in arrival order (dicts keep insertion order: O(1) push, pop-first
        # and removal by id). Few distinct priorities are in use at once, so scanning them is cheap.
        self._levels: dict[int, dict[str, None]] = {}
        self._priority: dict[str, int] = {}
        self._getters: deque[asyncio.Future[None]] = deque()

    def __len__(self) -> int:
        return len(self._priority)

    def put(self, job_id: str, priority: int = 0) -> None:
        self._levels.setdefault(priority, {})[job_id] = None
        self._priority[job_id] = priority
        self._wake_next()

    async def get(self) -> str:
        while not self._priority:
            fut = asyncio.get_running_loop().create_future()
            self._getters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                # Pass the wake-up on, or a put() that chose us would be lost.
                if fut.done() and not fut.cancelled() and self._priority:
                    self._wake_next()
                raise
        top = max(self._levels)
        level = self._levels[top]
        job_id = next(iter(level))
        self._drop(job_id)
        return job_id

    def has_idle_taker(self) -> bool:
        """Whether a get() is waiting: the next job put is taken at once."""
        return any(not fut.done() for fut in self._getters)

    def _wake_next(self) -> None:
        while self._getters:
            fut = self._getters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def _drop(self, job_id: str) -> None:
        priority = self._priority.pop(job_id)
        level = self._levels[priority]
        del level[job_id]
        if not level:
            del self._levels[priority]

    def remove(self, job_id: str) -> bool:
        if job_id not in self._priority:
            return False
        self._drop(job_id)
        return True

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._priority

    def ahead_of(self, priority: int) -> int:
        """How many waiting jobs a job of this priority arriving now would wait behind."""
        return sum(len(level) for p, level in self._levels.items() if p >= priority)

    def position(self, job_id: str) -> int | None:
        priority = self._priority.get(job_id)
        if priority is None:
            return None
        ahead = sum(len(level) for p, level in self._levels.items() if p > priority)
        for i, key in enumerate(self._levels[priority]):
            if key == job_id:
                return ahead + i
        return None
