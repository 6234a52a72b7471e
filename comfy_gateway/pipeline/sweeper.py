"""Acting on a store schedule (facts.py) from whichever process is alive.

Each process runs one sweeper per schedule: it claims what is due (one claimer per entry across
all processes), acts on it, and sleeps until the nearest due time it knows of, at most
SWEEP_INTERVAL (another process may have added a nearer one), or until this process adds one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

from ..jobs.facts import Schedule
from ..logs import job_context

log = logging.getLogger(__name__)

BATCH = 100

# Acts on one due job id: True when the entry is done with (it is dropped), False when the
# action moved it itself (a retry later) or still works on it in the background.
Act = Callable[[str], Awaitable[bool]]


class Sweeper:
    def __init__(self, name: str, schedule: Schedule, act: Act, *, interval: float, hold: float):
        self.name, self.schedule = name, schedule
        self._act, self._interval, self._hold = act, interval, hold
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # When the loop wakes next on its own (0 while it sweeps): a new member due later
        # than that needs no kick, it is claimed then (a kick costs a claim and a look).
        self._wake_at = 0.0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"sweep:{self.name}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def add(self, job_id: str, due: float, only_new: bool = False) -> None:
        await self.schedule.put(job_id, due, only_new=only_new)
        self.expect(due)

    def expect(self, due: float | None) -> None:
        """Something is due then (put in the schedule by someone else, e.g. the store)."""
        if due is not None and (due < self._wake_at or self._wake_at == 0.0):
            self._kick.set()  # nearer than what the loop sleeps towards

    def kick(self) -> None:
        self._kick.set()

    async def _loop(self) -> None:
        while True:
            self._kick.clear()
            self._wake_at = 0.0
            delay = self._interval
            try:
                ids = await self.schedule.claim_due(time.time(), self._hold, BATCH)
                if ids:
                    await asyncio.gather(*(self._one(job_id) for job_id in ids))
                if len(ids) == BATCH:
                    delay = 0.0
                else:
                    nearest = await self.schedule.next_due()
                    if nearest is not None:
                        delay = min(delay, max(nearest - time.time(), 0.0))
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a store hiccup: try again next round
                log.warning("%s sweep failed; trying again", self.name, exc_info=True)
            self._wake_at = time.time() + delay
            # asyncio.timeout, not wait_for: before Python 3.12, wait_for swallows a stop's cancel
            # that comes as a kick wakes it, and the loop would run on.
            try:
                async with asyncio.timeout(delay):
                    await self._kick.wait()
            except TimeoutError:
                pass

    async def _one(self, job_id: str) -> None:
        with job_context(job_id):
            try:
                if await self._act(job_id):
                    await self.schedule.drop(job_id)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - stays claimed: the next sweep after `hold` retries
                log.exception("%s: acting on job %s failed", self.name, job_id)
