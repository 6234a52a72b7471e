"""Job facts kept in the store rather than in a process's memory, so whichever process is
alive enforces them: schedules (time limits, owed webhooks) and delivery counts.

A schedule maps job ids to due times. `claim_due` hands each due id to one caller only, for
`hold` seconds: it is pushed back by that much in the same atomic step, so two processes
sweeping at once never both act on it, and a process that dies while acting on it loses it to
the next sweep after `hold` (claimed, not removed: nothing is lost with a dead process).

This module has the protocol and the memory store's side; redis_facts.py the Redis side.
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol


class Schedule(Protocol):
    async def put(self, job_id: str, due: float, only_new: bool = False) -> None:
        """Set (or move) the job's due time, epoch seconds; `only_new`: unless it has one."""

    async def drop(self, job_id: str) -> None: ...

    async def due(self, job_id: str) -> float | None: ...

    async def claim_due(self, now: float, hold: float, limit: int = 100) -> list[str]:
        """Ids due by `now`, each given to this caller only: their due time becomes now + hold."""

    async def next_due(self) -> float | None:
        """The nearest due time, None when empty."""


class MemorySchedule:
    def __init__(self) -> None:
        self._due: dict[str, float] = {}

    async def put(self, job_id: str, due: float, only_new: bool = False) -> None:
        self.put_now(job_id, due, only_new)

    def put_now(self, job_id: str, due: float, only_new: bool = False) -> None:
        if only_new:
            self._due.setdefault(job_id, due)
        else:
            self._due[job_id] = due

    async def drop(self, job_id: str) -> None:
        self.forget(job_id)

    def forget(self, job_id: str) -> None:
        self._due.pop(job_id, None)

    async def due(self, job_id: str) -> float | None:
        return self._due.get(job_id)

    async def claim_due(self, now: float, hold: float, limit: int = 100) -> list[str]:
        ids = sorted((d, j) for j, d in self._due.items() if d <= now)[:limit]
        for _, job_id in ids:
            self._due[job_id] = now + hold
        return [j for _, j in ids]

    async def next_due(self) -> float | None:
        return min(self._due.values(), default=None)


class MemoryFacts:
    """The memory store's facts (mixed into MemoryJobStore)."""

    _schedules: dict[str, MemorySchedule]
    _deliveries: Counter[tuple[str, str]]

    def _init_facts(self) -> None:
        self._schedules = {}
        self._deliveries = Counter()

    def schedule(self, name: str) -> Schedule:
        """The named schedule ("deadlines", "outbox"), shared by every process of the store."""
        return self._schedule(name)

    def _schedule(self, name: str) -> MemorySchedule:
        if name not in self._schedules:
            self._schedules[name] = MemorySchedule()
        return self._schedules[name]

    @property
    def _deadlines(self) -> MemorySchedule:
        """Jobs join it when created and leave it when they end (memory.py), as in Redis."""
        return self._schedule("deadlines")

    async def count_delivery(self, stage: str, job_id: str) -> int:
        """Count one more taking of the job by the stage; how many there have been."""
        self._deliveries[(stage, job_id)] += 1
        return self._deliveries[(stage, job_id)]

    def _forget_facts(self, job_id: str) -> None:
        for stage in ("preprocess", "generation", "postprocess"):
            self._deliveries.pop((stage, job_id), None)
