"""Writing a job's progress frames to the Redis store: a part of RedisJobStore (redis.py).

Frames are held back LINGER seconds, then written together: one script (redis_lua.py PROGRESS)
writes the progress field and one event per frame; the job record is neither read nor encoded,
and its version does not move (a progress frame never conflicts with a change of state). A
change of the job made meanwhile takes the waiting frames along in its own script instead
(redis_changes.py, UPDATE), before its own event: a short job's frames then cost no call of
their own, and a long one's at most one call per LINGER. Either way in order per job (both hold
the job's lock), and `write` returns once its frame is stored.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from .job_locks import JobLocks
from .model import Progress
from .redis_keys import RedisKeys
from .redis_notify import Notifier
from .redis_taken import JustTaken
from .redis_written import WrittenHere

LINGER = 0.05  # seconds a frame may wait for others (or for a change of the job) to go with


@dataclass(slots=True)
class Frames:
    """The frames (JSON) waiting for a job's writer, and who waits for them to be stored."""
    frames: list[str] = field(default_factory=list)
    stored: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    due: asyncio.TimerHandle | None = None  # when they are written alone, if no change takes them

    def done(self) -> None:
        """Written (or dropped with a job that ended or is gone): their senders go on."""
        if self.due is not None:
            self.due.cancel()
        if not self.stored.done():
            self.stored.set_result(None)


class ProgressWriter:
    def __init__(self, script: Any, keys: RedisKeys, notify: Notifier, locks: JobLocks, taken: JustTaken,
                 written: WrittenHere):
        self._script, self._keys, self._notify, self._locks = script, keys, notify, locks
        self._taken, self._written = taken, written
        self._waiting: dict[str, Frames] = {}
        self._flushers: set[asyncio.Task[None]] = set()

    async def write(self, job_id: str, progress: Progress) -> None:
        batch = self._waiting.get(job_id)
        if batch is None:
            batch = self._waiting[job_id] = Frames()
            # A timer, not a task sleeping LINGER: most batches are taken by a change before it
            # is due, and a task of their own would cost every job one (~20 µs of CPU).
            batch.due = asyncio.get_running_loop().call_later(LINGER, self._due, job_id, batch)
        batch.frames.append(progress.model_dump_json())
        await asyncio.shield(batch.stored)

    def take(self, job_id: str) -> Frames | None:
        """The job's waiting frames, for a change to write them in its own script (its caller
        holds the job's lock, and calls `done()` once they are written)."""
        batch = self._waiting.pop(job_id, None)
        if batch is not None and batch.due is not None:
            batch.due.cancel()
        return batch

    def _due(self, job_id: str, batch: Frames) -> None:
        if self._waiting.get(job_id) is batch:
            task = asyncio.create_task(self._flush(job_id, batch), name=f"progress:{job_id}")
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)

    async def _flush(self, job_id: str, batch: Frames) -> None:
        try:
            async with self._locks.hold(job_id):
                if self._waiting.get(job_id) is not batch:
                    return  # a change of the job took them along
                del self._waiting[job_id]
                self._taken.drop(job_id)
                now = repr(time.time())
                seq = await self._script(
                    keys=[self._keys.job(job_id), self._keys.events(job_id)],
                    args=[now, self._keys.events_channel, job_id, self._notify.tag, *batch.frames])
                if seq and int(seq) > 0:
                    self._written.progressed(job_id, int(seq), batch.frames, float(now))
                    self._notify.local_event(job_id, "progress")
        finally:
            if self._waiting.get(job_id) is batch:
                del self._waiting[job_id]
            batch.done()

    async def close(self) -> None:
        for task in list(self._flushers):
            task.cancel()
        await asyncio.gather(*self._flushers, return_exceptions=True)
        waiting, self._waiting = self._waiting, {}
        for batch in waiting.values():  # not due yet: dropped with the store, their senders freed
            batch.done()
