"""Jobs handed from one stage to the next inside this process, without a take's round trip.

When a stage hands a job over (or a job is created) while a taker of the next stage waits idle
in this process and nobody waits in that stage's queue, the queueing script takes the job for
this process in the same step (redis_lua_parts.py enqueue, `hand`): its lease starts there, counted
as a take, exactly as a TAKE would have left it. The job then goes from the script's answer to
the idle taker through a local box instead of a second script call. Other processes are not
told: it never waited where they could have taken it, and taking it first would have needed a
round trip they did not save.

Which takers are idle, and how many of them jobs already in flight to the box will occupy,
is this module's bookkeeping; the StageQueues (redis_queues.py) use it.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from contextlib import contextmanager
from typing import Iterator


class Handoffs:
    def __init__(self) -> None:
        self._idle: dict[str, int] = defaultdict(int)  # takers waiting for a job, per stage
        self._promised: dict[str, int] = defaultdict(int)  # hand-overs asked for, in flight
        self._box: dict[str, deque[tuple[str, float]]] = defaultdict(deque)  # (job id, handed at)
        self._looked: dict[str, float] = {}  # stage -> when a taker last came for a job (monotonic)

    @contextmanager
    def idle(self, stage: str) -> Iterator[None]:
        """A taker of the stage waits for a job while in this block."""
        self._idle[stage] += 1
        try:
            yield
        finally:
            self._idle[stage] -= 1

    def free(self, stage: str) -> bool:
        """An idle taker of the stage is free for one more hand-over."""
        return self._spare(stage) > 0

    def _spare(self, stage: str) -> int:
        """Idle takers of the stage not yet spoken for; below zero, jobs waiting for a taker."""
        return self._idle[stage] - self._promised[stage] - len(self._box[stage])

    def may_wait(self, stage: str, backlog: int, fresh: float) -> bool:
        """May one more job wait in the stage's box, though every taker here is busy? Only while
        the takers come back for jobs within `fresh` seconds, behind fewer than `backlog` jobs
        that all came in the last `fresh` seconds: elsewhere, where every process's takers can
        have it, it would wait no less."""
        spare = self._spare(stage)
        if spare > 0:
            return True
        now, box = time.monotonic(), self._box[stage]
        return (-spare < backlog and now - self._looked.get(stage, float("-inf")) < fresh
                and (not box or now - box[0][1] < fresh))

    def put(self, stage: str, job_id: str) -> None:
        """The job waits in the stage's box for the next taker here (a hand-over `reserve`d and
        `settle`d, or one `may_wait` allowed)."""
        self._box[stage].append((job_id, time.monotonic()))

    def reserve(self, stage: str) -> bool:
        """Ask for a hand-over into the stage: True if an idle taker is free for it (then
        `settle` must follow, whatever the script did)."""
        if not self.free(stage):
            return False
        self._promised[stage] += 1
        return True

    def settle(self, stage: str) -> None:
        """The script asked for a hand-over returned (a job it took for us then goes in `put`)."""
        self._promised[stage] -= 1

    def next(self, stage: str) -> tuple[str, float] | None:
        """The oldest job handed to the stage and not yet picked up, and how long it waited (a
        taker of the stage comes for a job)."""
        self._looked[stage] = time.monotonic()
        box = self._box.get(stage)
        if not box:
            return None
        job_id, since = box.popleft()
        return job_id, time.monotonic() - since

    def drop(self, job_id: str) -> None:
        """The job was handed back (shutdown): no taker here may pick it up any more."""
        for box in self._box.values():
            for item in [i for i in box if i[0] == job_id]:
                box.remove(item)
