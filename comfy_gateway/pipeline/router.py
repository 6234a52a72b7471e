"""Which backend runs the next prompt: the least-loaded one in rotation.

Before this, each backend had its own workers pulling from the shared generation queue, and a
job went to whichever free worker asked first: not the least-loaded backend, and blind to the
prompts other gateway processes put on it. Now one generation pool has GENERATION_WORKERS slots
per backend; a worker takes a job only while some backend in rotation has a free slot, then
picks, at that moment, the backend with the lowest load (ComfyUI's own queue_remaining, which
counts every process's prompts, or our own prompts in flight there if that is higher).

In rotation = its websocket is connected, its warm-up ran, its circuit breaker is closed and no
GPU fault is latched (comfy/rotation.py). A backend that stops answering drops its socket and
leaves; it rejoins when the socket is back and its warm-up ran again.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Awaitable, Callable

from ..comfy.backend import Backend


class BackendRouter:
    def __init__(self, backends: list[Backend], slots_per_backend: int):
        self.backends = backends
        self.slots = slots_per_backend
        self.in_use: dict[str, int] = {b.name: 0 for b in backends}
        self._reserved = 0  # workers that passed the gate and are taking a job
        self._changed = asyncio.Condition()
        self._turn = itertools.count()
        self._last_pick: dict[str, int] = {b.name: -1 for b in backends}
        for backend in backends:
            backend.on_change(self.notify)

    @property
    def total_slots(self) -> int:
        return self.slots * len(self.backends)

    def in_rotation(self, backend: Backend) -> bool:
        return backend.in_rotation  # connected, warmed up, breaker closed, no GPU fault latched

    def load(self, backend: Backend) -> int:
        return max(self.in_use[backend.name], backend.queue_remaining or 0)

    def _free(self) -> int:
        return sum(max(0, self.slots - self.in_use[b.name]) for b in self.backends if self.in_rotation(b))

    def notify(self) -> None:
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def gated_take(self, take: Callable[[], Awaitable[str]]) -> str:
        """Take a job only while a backend in rotation has a slot left for it, so a job never
        waits in this process for capacity that another process may have."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._free() > self._reserved)
            self._reserved += 1
        try:
            return await take()
        except BaseException:
            self.unreserve()
            raise
        # On success the reservation stays until the handler turns it into a slot (acquire)
        # or gives it up (unreserve): in between, no other worker may count on that slot.

    def unreserve(self) -> None:
        self._reserved -= 1
        self.notify()

    def _pick(self, prefer: Callable[[Backend], bool] | None = None) -> Backend | None:
        free = [b for b in self.backends if self.in_rotation(b) and self.in_use[b.name] < self.slots]
        if not free:
            return None
        # One that already holds what the job needs (its models: no transfer), then the least
        # loaded; among equals, the one picked longest ago, so equal backends alternate.
        return min(free, key=lambda b: (not (prefer and prefer(b)), self.load(b), self._last_pick[b.name]))

    def peek(self) -> Backend | None:
        """The backend an acquire without preference would get now, if one has a free slot
        (nothing is taken: pipeline/claims.py names it ahead)."""
        return self._pick()

    async def acquire(self, reserved: bool = True, prefer: Callable[[Backend], bool] | None = None) -> Backend:
        """A slot on the least-loaded backend in rotation (waiting, if the backends left the
        rotation since the job was taken), one that `prefer`s first; with `reserved`, the
        caller's reservation from gated_take becomes that slot."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._pick() is not None)
            backend = self._pick(prefer)
            assert backend is not None
            if reserved:
                self._reserved -= 1
            self.in_use[backend.name] += 1
            self._last_pick[backend.name] = next(self._turn)
            return backend

    def release(self, backend: Backend) -> None:
        self.in_use[backend.name] -= 1
        self.notify()

    def by_name(self, name: str | None) -> Backend | None:
        return next((b for b in self.backends if b.name == name), None)
